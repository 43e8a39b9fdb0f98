#!/usr/bin/env bash
# The README's "Under systemd" walk-through under a real systemd as PID 1: a Debian bookworm
# amd64 root filesystem booted with systemd-nspawn, install.sh run in it, the unit started,
# checked (READY, health, watchdog restart after a SIGSTOP, clean stop): walkthrough.sh.
#
#   deploy/systemd/test-systemd.sh [--build-only]
#
# 1. rootfs: debootstrap bookworm (minbase + systemd, dbus, python3-venv, mosquitto); cached as
#    $SYSTEMD_CACHE/rootfs-amd64.tar.zst (~3 min from nothing, once).
# 2. wheelhouse: this tree's wheel and its dependencies' wheels for the host's Python (bookworm's
#    3.11, as in the rootfs), cached per pyproject.toml; pip in the container uses no index.
# 3. run: a fresh copy of the rootfs with a unit that runs walkthrough.sh once booted and then
#    powers off; `systemd-nspawn --boot --private-network` (its own loopback: the sidecar's
#    ports cannot collide with the host's); the verdict is walkthrough.sh's last line.
#
# Exit codes: 0 passed, 1 failed, 77 skipped (printed why: not root, no systemd-nspawn, no
# debootstrap). Environment: SYSTEMD_CACHE (default /var/cache/edge-runtime/systemd),
# DEBIAN_MIRROR, SYSTEMD_KEEP=1 keeps the run's rootfs.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
CACHE="${SYSTEMD_CACHE:-/var/cache/edge-runtime/systemd}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BUILD_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build-only) BUILD_ONLY=1; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

skip() { echo "test-systemd: SKIPPED: $*"; exit 77; }
say() { echo "test-systemd: $(date +%H:%M:%S) $*"; }

[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, systemd-nspawn)"
[ "$(uname -m)" = x86_64 ] || skip "the rootfs is amd64; this host is $(uname -m)"
command -v systemd-nspawn >/dev/null || skip "no systemd-nspawn (apt-get install systemd-container)"
command -v debootstrap >/dev/null || skip "no debootstrap (apt-get install debootstrap)"
command -v zstd >/dev/null || skip "no zstd (apt-get install zstd)"
PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
  skip "the wheelhouse needs the rootfs's Python (3.11) on the host; $PY is another"

mkdir -p "$CACHE"
RUN="$CACHE/run"
rm -rf "$RUN"
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() { [ "${SYSTEMD_KEEP:-0}" = 1 ] || rm -rf "$RUN"; }
trap cleanup EXIT

# --------------------------------------------------------------------------- 1. rootfs
BASE="$CACHE/rootfs-amd64.tar.zst"
if [ ! -f "$BASE" ]; then
  say "building the amd64 rootfs (bookworm minbase + systemd from $MIRROR)"
  start=$(date +%s)
  rm -rf "$CACHE/build"; mkdir -p "$CACHE/build"
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,python3,python3-venv,procps,mosquitto \
    bookworm "$CACHE/build" "$MIRROR" >/dev/null
  # Nothing to log in on; the container's console is the run's log.
  rm -f "$CACHE/build/etc/systemd/system/getty.target.wants/"*
  echo edge-test > "$CACHE/build/etc/hostname"
  tar -C "$CACHE/build" --zstd -cf "$BASE.tmp" . && mv "$BASE.tmp" "$BASE"
  rm -rf "$CACHE/build"
  say "rootfs cached: $BASE ($(du -h "$BASE" | cut -f1), $(( $(date +%s) - start )) s)"
fi

# --------------------------------------------------------------------------- 2. wheelhouse
HASH="$(sha256sum < "$REPO/pyproject.toml" | cut -c1-12)"
HOUSE="$CACHE/wheels-$HASH"
if [ ! -d "$HOUSE" ]; then
  say "wheelhouse for the dependencies"
  rm -rf "$CACHE"/wheels-*
  "$PY" -m pip wheel -q --only-binary=:all: -w "$HOUSE.tmp" "$REPO" >/dev/null 2>&1 ||
    { rm -rf "$HOUSE.tmp"; "$PY" -m pip wheel -q -w "$HOUSE.tmp" "$REPO"; }
  rm -f "$HOUSE.tmp"/edge_runtime-*.whl
  mv "$HOUSE.tmp" "$HOUSE"
fi
[ "$BUILD_ONLY" = 1 ] && { say "built"; exit 0; }

# --------------------------------------------------------------------------- 3. run
mkdir -p "$RUN/root"
tar -C "$RUN/root" --zstd -xf "$BASE"
ROOT="$RUN/root"
mkdir -p "$ROOT/src" "$ROOT/wheels"
tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./.cache --exclude='*.egg-info' \
  --exclude=__pycache__ --exclude=./.mypy_cache --exclude=./.ruff_cache --exclude=./tests \
  --exclude=./build -cf - . | tar -C "$ROOT/src" -xf -
cp "$HOUSE"/*.whl "$ROOT/wheels/"
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$ROOT/wheels" "$REPO" >/dev/null 2>&1 ||
  "$PY" -m pip wheel -q --no-deps -w "$ROOT/wheels" "$REPO" >/dev/null
WHEEL="$(cd "$ROOT/wheels" && ls edge_runtime-*.whl)"
cat > "$ROOT/etc/systemd/system/edge-walkthrough.service" <<EOF
[Unit]
Description=edge-runtime walk-through under systemd (test-systemd.sh)
After=multi-user.target
[Service]
Type=oneshot
Environment=PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels PIP_DISABLE_PIP_VERSION_CHECK=1
ExecStart=/bin/sh -c 'sh /src/deploy/systemd/walkthrough.sh /wheels/$WHEEL > /walkthrough.log 2>&1; echo \$? > /walkthrough.rc'
ExecStartPost=/bin/sh -c 'cat /walkthrough.log > /dev/console'
ExecStopPost=/bin/systemctl --no-block poweroff
StandardOutput=journal+console
[Install]
WantedBy=multi-user.target
EOF
ln -s /etc/systemd/system/edge-walkthrough.service \
  "$ROOT/etc/systemd/system/multi-user.target.wants/edge-walkthrough.service"

say "booting the rootfs with systemd-nspawn (systemd as PID 1)"
start=$(date +%s)
status=0
timeout 900 systemd-nspawn --quiet --boot --register=no --private-network --keep-unit \
  --machine "edge-walkthrough-$$" -D "$ROOT" > "$RUN/console.log" 2>&1 || status=$?
boot_s=$(( $(date +%s) - start ))
if [ -f "$ROOT/walkthrough.log" ]; then
  cat "$ROOT/walkthrough.log"
else
  echo "test-systemd: no walk-through log; the container's console:"
  tail -n 60 "$RUN/console.log"
fi
rc="$(cat "$ROOT/walkthrough.rc" 2>/dev/null || echo missing)"
say "systemd-nspawn exited $status after $boot_s s (boot, walk-through, poweroff); walk-through rc $rc"
[ "$rc" = 0 ] || exit 1
