#!/usr/bin/env bash
# The test suite on emulated ARM (qemu user emulation in a Debian chroot): aarch64 (arm64, a
# 64-bit Raspberry Pi OS) or armv7 (armhf, the 32-bit one).
#
#   deploy/arm/test-arm.sh [--arch arm64|armhf] [--subset ci|full|none | --tests "PATHS"]
#                          [--no-uvloop] [--install-check] [--build-only]
#
# 1. base rootfs: debootstrap bookworm ARCH (minbase) with python3-venv, mosquitto, socat,
#    systemd; cached as $ARM_CACHE/rootfs-base.tar.zst (~6.5 min from nothing for arm64, once).
# 2. test rootfs: the base plus /opt/edge-test/venv holding the project's dependencies and its
#    test extra, all wheels from the package index (armhf: PyYAML's sdist, which builds its
#    pure-Python fallback; no uvloop, httptools, gpiod or asyncpg there: pyproject's markers);
#    cached as $ARM_CACHE/rootfs-test-<hash of pyproject.toml>.tar.zst.
# 3. run: a fresh copy of the test rootfs, this tree's wheel installed (no network), the tests
#    run in the chroot (`ci`: state, pub/sub end to end against mosquitto, sd_notify and
#    systemd checks; `full`: the whole suite but the JavaScript SDK check; --tests: pytest's
#    arguments as given).
#    --no-uvloop uninstalls uvloop first (what armv7 Raspberry Pi OS gets: no uvloop wheel).
#    --install-check runs deploy/systemd/install.sh in the chroot, starts the installed unit's
#    ExecStart as its user, checks health, runs install.sh again (idempotent) and --uninstall.
#
# Exit codes: 0 passed, 1 failed, 77 skipped (printed why: not root, no binfmt_misc, no tools).
# Environment: ARM_CACHE (default .cache/ARCH in the repo), DEBIAN_MIRROR, ARM_KEEP=1 keeps
# the run's rootfs for a look afterwards.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
ARCH=arm64
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
SUBSET=ci
CUSTOM=""
NO_UVLOOP=0
INSTALL_CHECK=0
BUILD_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) ARCH="$2"; shift 2 ;;
    --subset) SUBSET="$2"; shift 2 ;;
    --tests) SUBSET=custom; CUSTOM="$2"; shift 2 ;;
    --no-uvloop) NO_UVLOOP=1; shift ;;
    --install-check) INSTALL_CHECK=1; shift ;;
    --build-only) BUILD_ONLY=1; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

case "$ARCH" in
  arm64) QEMU=aarch64; MACHINE=aarch64 ;;
  armhf) QEMU=arm; MACHINE=armv7l ;;
  *) echo "unknown architecture $ARCH (arm64 or armhf)" >&2; exit 2 ;;
esac
CACHE="${ARM_CACHE:-$REPO/.cache/$ARCH}"

skip() { echo "test-arm: SKIPPED: $*"; exit 77; }
say() { echo "test-arm: $(date +%H:%M:%S) $*"; }

[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, chroot and mounts); run it with sudo"
[ "$(uname -m)" = x86_64 ] || [ "$(uname -m)" = aarch64 ] || skip "host $(uname -m) not supported"

# --------------------------------------------------------------------------- tools and binfmt
need_pkgs=""
command -v debootstrap >/dev/null || need_pkgs="$need_pkgs debootstrap"
[ -x "/usr/bin/qemu-$QEMU-static" ] || need_pkgs="$need_pkgs qemu-user-static"
command -v update-binfmts >/dev/null || need_pkgs="$need_pkgs binfmt-support"
command -v zstd >/dev/null || need_pkgs="$need_pkgs zstd"
if [ -n "$need_pkgs" ]; then
  command -v apt-get >/dev/null || skip "missing$need_pkgs and no apt-get to install them"
  say "installing$need_pkgs"
  # shellcheck disable=SC2086 # a list of package names
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need_pkgs; } \
    >/dev/null || skip "could not install$need_pkgs"
fi
if [ "$(uname -m)" = x86_64 ]; then
  if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null ||
      skip "binfmt_misc is not mounted and cannot be (a container without that privilege?):" \
           "without it the chroot's child processes escape the emulation"
  fi
  [ -e "/proc/sys/fs/binfmt_misc/qemu-$QEMU" ] || update-binfmts --enable "qemu-$QEMU" >/dev/null 2>&1 || true
  grep -qx enabled "/proc/sys/fs/binfmt_misc/qemu-$QEMU" 2>/dev/null ||
    skip "binfmt for qemu-$QEMU cannot be enabled (update-binfmts --enable qemu-$QEMU failed)"
fi

mkdir -p "$CACHE"
ROOT="$CACHE/root"
MOUNTED=0

mount_root() {
  mount -t proc proc "$ROOT/proc"
  mount -t sysfs sys "$ROOT/sys"
  mount --rbind /dev "$ROOT/dev"
  mount --make-rslave "$ROOT/dev"   # so unmounting ours never touches the host's /dev mounts
  MOUNTED=1
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
}

umount_root() {
  if [ "$MOUNTED" = 1 ]; then
    umount -R "$ROOT/dev" 2>/dev/null || umount -lR "$ROOT/dev" || true
    umount "$ROOT/sys" 2>/dev/null || umount -l "$ROOT/sys" || true
    umount "$ROOT/proc" 2>/dev/null || umount -l "$ROOT/proc" || true
    MOUNTED=0
  fi
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  # Kill what the chroot left running (a broker, a sidecar), then unmount.
  if [ -d "$ROOT/proc" ]; then
    for p in /proc/[0-9]*; do
      if [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ]; then kill -9 "${p#/proc/}" 2>/dev/null || true; fi
    done
  fi
  umount_root
}
trap cleanup EXIT

in_root() {
  chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive PIP_DEFAULT_TIMEOUT=180 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$@"
}

fresh_root() {  # $1: tarball
  umount_root
  rm -rf "$ROOT"
  mkdir -p "$ROOT"
  tar -C "$ROOT" --zstd -xf "$1"
}

save_root() {  # $1: tarball
  umount_root
  tar -C "$ROOT" --zstd -cf "$1.tmp" . && mv "$1.tmp" "$1"
}

# --------------------------------------------------------------------------- 1. base rootfs
BASE="$CACHE/rootfs-base.tar.zst"
if [ ! -f "$BASE" ]; then
  say "building the $ARCH base rootfs ($SUITE from $MIRROR; ~6.5 min on 2 cores)"
  rm -rf "$ROOT"; mkdir -p "$ROOT"
  debootstrap --arch="$ARCH" --variant=minbase --foreign "$SUITE" "$ROOT" "$MIRROR" >/dev/null
  # binfmt may be registered without the F flag: the interpreter must exist inside too.
  mkdir -p "$ROOT/usr/libexec/qemu-binfmt"
  cp "/usr/bin/qemu-$QEMU-static" "$ROOT/usr/bin/"
  ln -sf "../../bin/qemu-$QEMU-static" "$ROOT/usr/libexec/qemu-binfmt/$QEMU-binfmt-P"
  in_root /debootstrap/debootstrap --second-stage >/dev/null
  mount_root
  # The host's CA certificates (a TLS-inspecting proxy's included) so pip inside trusts the index.
  in_root apt-get update -qq
  in_root apt-get install -y -qq --no-install-recommends ca-certificates python3 python3-venv \
    mosquitto socat systemd procps >/dev/null
  cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/" 2>/dev/null || true
  in_root update-ca-certificates >/dev/null
  in_root apt-get clean
  save_root "$BASE"
  say "base rootfs cached: $BASE ($(du -h "$BASE" | cut -f1))"
fi

# --------------------------------------------------------------------------- 2. test rootfs
# Wheels only: nothing compiles in the rootfs (it has no compiler). armhf (armv7l): PyYAML has
# no armv7l wheel, so its sdist builds its pure-Python fallback; cbor2's newest releases need
# Rust to build, and pip takes the newest with a py3-none-any wheel (pure Python); uvloop,
# httptools, gpiod and asyncpg are left out by pyproject.toml's markers.
PIP_FORMATS="--only-binary=:all:"
[ "$ARCH" = armhf ] && PIP_FORMATS="--only-binary=:all: --no-binary=pyyaml"
HASH="$( (cat "$REPO/pyproject.toml"; echo "layout 1 $ARCH $PIP_FORMATS") | sha256sum | cut -c1-12)"
TESTROOT="$CACHE/rootfs-test-$HASH.tar.zst"
WHEELS="$CACHE/wheels"
rm -rf "$WHEELS"; mkdir -p "$WHEELS"
# Our own wheel, built on the host (pure Python); dependencies come as $MACHINE wheels.
python3 -m pip wheel -q --no-deps --no-build-isolation -w "$WHEELS" "$REPO" >/dev/null 2>&1 ||
  python3 -m pip wheel -q --no-deps -w "$WHEELS" "$REPO" >/dev/null
WHEEL="$(ls "$WHEELS"/edge_runtime-*.whl)"
if [ ! -f "$TESTROOT" ]; then
  say "installing the project's dependencies into an $ARCH venv ($PIP_FORMATS)"
  fresh_root "$BASE"
  mount_root
  cp "$WHEEL" "$ROOT/tmp/"
  in_root python3 -m venv /opt/edge-test/venv
  # shellcheck disable=SC2086 # pip's options, word-split on purpose
  in_root /opt/edge-test/venv/bin/pip install -q $PIP_FORMATS "/tmp/$(basename "$WHEEL")[test]"
  in_root /opt/edge-test/venv/bin/pip uninstall -q -y edge-runtime
  rm -f "$ROOT"/tmp/*.whl
  rm -f "$CACHE"/rootfs-test-*.tar.zst
  save_root "$TESTROOT"
  say "test rootfs cached: $TESTROOT ($(du -h "$TESTROOT" | cut -f1))"
fi
[ "$BUILD_ONLY" = 1 ] && { say "built"; exit 0; }

# --------------------------------------------------------------------------- 3. run
fresh_root "$TESTROOT"
mount_root
mkdir -p "$ROOT/src"
tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./.cache --exclude='*.egg-info' \
  --exclude=__pycache__ --exclude=./.mypy_cache --exclude=./.ruff_cache --exclude=./tests/js/node_modules \
  -cf - . | tar -C "$ROOT/src" -xf -
cp "$WHEEL" "$ROOT/tmp/"
in_root /opt/edge-test/venv/bin/pip install -q --no-deps --no-index "/tmp/$(basename "$WHEEL")"
if [ "$NO_UVLOOP" = 1 ]; then
  in_root /opt/edge-test/venv/bin/pip uninstall -q -y uvloop
  in_root /opt/edge-test/venv/bin/python -c 'import uvloop' 2>/dev/null &&
    { echo "uvloop is still importable"; exit 1; }
  say "uvloop removed: the runtime runs on asyncio's own loop (as on armv7)"
fi
in_root /opt/edge-test/venv/bin/python -c '
import importlib.metadata as md, importlib.util as u, platform, sys
print("test-arm: python", sys.version.split()[0], "on", platform.machine(),
      "(%d-bit)" % (64 if sys.maxsize > 2**32 else 32))
have = lambda m: "yes" if u.find_spec(m) else "no"
print("test-arm: cbor2", md.version("cbor2"), "C extension:", have("_cbor2"),
      "| uvloop:", have("uvloop"), "| httptools:", have("httptools"),
      "| PyYAML", md.version("PyYAML"), "libyaml:", have("yaml._yaml"))'

case "$SUBSET" in
  ci)
    TESTS=(tests/state tests/conformance/test_state.py tests/e2e/test_mqtt_e2e.py
           tests/deploy/test_sdnotify.py tests/deploy/test_journald.py
           tests/cloudsync/test_cbor_pure.py)
    if [ -f "$REPO/tests/bindings/test_serial.py" ]; then
      TESTS+=(tests/bindings/test_serial.py tests/bindings/test_serial_framing.py)
    else
      echo "test-arm: note: no serial binding in this tree yet: the serial-over-pty part is skipped"
    fi
    ;;
  full) TESTS=(tests --ignore=tests/js) ;;
  none) TESTS=() ;;
  custom) read -r -a TESTS <<< "$CUSTOM" ;;
  *) echo "unknown subset $SUBSET" >&2; exit 2 ;;
esac
status=0
if [ "${#TESTS[@]}" -gt 0 ]; then
  start=$(date +%s)
  say "running pytest (${TESTS[*]}) on emulated $MACHINE"
  # Emulation is 4-10x slower (more on a busy host): the limits after which tests give up
  # waiting scale by EDGE_TEST_SLOWDOWN (tests/support/slowdown.py; no asserted timings).
  in_root /bin/sh -c "cd /src && PYTHONPATH=/src PATH=/opt/edge-test/venv/bin:\$PATH \
    EDGE_TEST_SLOWDOWN=${EDGE_TEST_SLOWDOWN:-4} /opt/edge-test/venv/bin/pytest -q \
    -p no:cacheprovider -p tests.support.slowdown ${TESTS[*]}" || status=$?
  say "pytest exited $status after $(( $(date +%s) - start )) s"
fi

if [ "$INSTALL_CHECK" = 1 ] && [ "$status" = 0 ]; then
  say "install.sh inside the rootfs"
  in_root /bin/sh /src/deploy/arm/install-check.sh "/tmp/$(basename "$WHEEL")" || status=$?
fi
[ "${ARM_KEEP:-0}" = 1 ] && say "rootfs kept at $ROOT"
exit "$status"
