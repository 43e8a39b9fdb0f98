"""Boot a small qemu VM whose kernel has gpio-sim, and run one command in it.

The kernel and modules come from, in this order:

1. the folder named by ``EDGE_RUNTIME_GPIO_SIM_VM`` (``vmlinuz``, ``netfs.ko``, ``9pnet.ko``,
   ``9pnet_virtio.ko``, ``9p.ko``, ``configfs.ko``, ``gpio-sim.ko``, ``busybox``), as CI's
   ``shared/gpio-sim-vm`` has them;
2. Debian's packages, fetched with ``apt-get download`` from Debian unstable (the first
   Debian kernels with ``CONFIG_GPIO_SIM=m``) into a cache folder, once;
3. otherwise :func:`find_kernel` says why not, and the tests skip with that reason.

The VM: an initramfs whose ``/init`` (busybox) loads the modules, mounts this machine's root
read-only over 9p, mounts ``proc``, ``sys``, ``dev``, ``configfs`` and a tmpfs on ``/run``
inside it (not on ``/tmp``: the tree under test may live there; the guest writes to
``/run/tmp`` through ``TMPDIR``), chroots there and runs the command, so the guest runs this
very tree with this very Python. It needs ``qemu-system-x86_64`` and ``cpio``. Software
emulation (TCG) only: KVM does not boot guests on the machines we run on.
"""

from __future__ import annotations

import lzma
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV = "EDGE_RUNTIME_GPIO_SIM_VM"
MODULES = ("netfs", "9pnet", "9pnet_virtio", "9p", "configfs", "gpio-sim")
MARK = "@@gpio-vm@@"

INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /host /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {modules}; do insmod /lib/$m.ko || echo "{mark} insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 host /host || echo "{mark} 9p failed"
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mount -t configfs configfs /host/sys/kernel/config
mount -t tmpfs tmpfs /host/run
mkdir -p /host/run/tmp
echo "{mark} booted"
chroot /host /bin/sh -c '{command}; echo "{mark} exit $?"'
poweroff -f
"""


@dataclass(frozen=True)
class Kernel:
    """A folder with ``vmlinuz``, the modules and ``busybox``, and where it came from."""

    folder: Path
    source: str


def _complete(folder: Path) -> bool:
    names = ["vmlinuz", "busybox", *(f"{m}.ko" for m in MODULES)]
    return all((folder / n).is_file() for n in names)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge-runtime" / "gpio-sim-vm"


def find_kernel() -> tuple[Kernel | None, str]:
    """The kernel folder to boot, or ``None`` and why there is none."""
    named = os.environ.get(ENV)
    if named:
        folder = Path(named).expanduser().resolve()
        if _complete(folder):
            return Kernel(folder, f"${ENV}={folder}"), ""
        return None, f"${ENV}={named} does not hold vmlinuz, busybox and {', '.join(MODULES)}"
    cached = cache_dir()
    if _complete(cached):
        return Kernel(cached, f"Debian's packages, cached in {cached}"), ""
    try:
        fetch_debian(cached)
    except (OSError, subprocess.SubprocessError, LookupError) as exc:
        return None, (f"no ${ENV} and no kernel with gpio-sim from Debian's packages"
                      f" ({exc})")
    return Kernel(cached, f"Debian's packages, fetched into {cached}"), ""


_RUN: dict[str, Any] = {"check": True, "capture_output": True, "text": True, "timeout": 600}
UNSTABLE = "deb http://deb.debian.org/debian unstable main\n"


def fetch_debian(dest: Path) -> None:
    """Fetch a kernel with gpio-sim, its modules and busybox-static from Debian unstable
    with ``apt-get download`` (a private sources list; the system's apt is left alone).

    Raises ``OSError``, ``subprocess.SubprocessError`` or ``LookupError`` (the current kernel
    has no gpio-sim module, a package is missing)."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise LookupError("apt-get and dpkg-deb are needed")
    with tempfile.TemporaryDirectory(prefix="gpio-sim-vm-") as tmp:
        work = Path(tmp)
        (work / "lists" / "partial").mkdir(parents=True)
        (work / "archives" / "partial").mkdir(parents=True)
        (work / "sources.list").write_text(UNSTABLE)
        apt = ["-o", f"Dir::Etc::SourceList={work / 'sources.list'}",
               "-o", "Dir::Etc::SourceParts=/nonexistent",
               "-o", f"Dir::State::Lists={work / 'lists'}",
               "-o", f"Dir::Cache::Archives={work / 'archives'}",
               "-o", "APT::Architecture=amd64", "-o", "Debug::NoLocking=1"]
        subprocess.run(["apt-get", *apt, "update"], **_RUN)
        depends = subprocess.run(["apt-cache", *apt, "depends", "linux-image-amd64"],
                                 **_RUN).stdout
        image = next((line.split(":", 1)[1].strip() for line in depends.splitlines()
                      if "Depends:" in line and "linux-image-" in line), "")
        if not image:
            raise LookupError("linux-image-amd64 names no kernel package")
        version = image.removeprefix("linux-image-")
        # The kernel and its modules are in the image package or, in newer Debian, in
        # packages it depends on (linux-binary-<version>, linux-modules-<version>).
        parts = subprocess.run(["apt-cache", *apt, "depends", image],
                               **_RUN).stdout
        wanted = ("linux-binary-", "linux-modules-", "linux-image-")
        deps = {line.split(":", 1)[1].strip() for line in parts.splitlines()
                if "Depends:" in line and version in line}
        packages = [image, "busybox-static", *sorted(d for d in deps if d.startswith(wanted))]
        subprocess.run(["apt-get", *apt, "download", *packages], cwd=work,
                       **_RUN)
        tree = work / "tree"
        for deb in work.glob("*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], **_RUN)
        _collect(tree, version, dest)


def _collect(tree: Path, version: str, dest: Path) -> None:
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    kernels = [*(tree / "boot").glob("vmlinuz-*"), *tree.glob("**/lib/modules/*/vmlinuz")]
    if not kernels:
        raise LookupError(f"the {version} packages hold no vmlinuz")
    shutil.copy(kernels[0], staging / "vmlinuz")
    busybox = tree / "bin" / "busybox"
    if not busybox.is_file():
        busybox = tree / "usr" / "bin" / "busybox"
    shutil.copy(busybox, staging / "busybox")
    found = {p.name.split(".ko")[0]: p for p in tree.glob("**/lib/modules/*/kernel/**/*.ko*")}
    for name in MODULES:
        module = found.get(name)
        if module is None:
            raise LookupError(f"Debian's kernel {version} has no {name} module"
                              " (CONFIG_GPIO_SIM is not set there)")
        data = module.read_bytes()
        if module.name.endswith(".xz"):
            data = lzma.decompress(data)
        (staging / f"{name}.ko").write_bytes(data)
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)


def build_initrd(kernel: Kernel, command: str, dest: Path) -> Path:
    """An initramfs (newc cpio) that boots into ``command`` run chrooted in this machine's
    root; ``command`` must not contain single quotes."""
    if "'" in command:
        raise ValueError("the guest command may not contain single quotes")
    root = dest / "initrd"
    (root / "bin").mkdir(parents=True)
    (root / "lib").mkdir()
    shutil.copy(kernel.folder / "busybox", root / "bin" / "busybox")
    (root / "bin" / "busybox").chmod(0o755)
    for name in MODULES:
        shutil.copy(kernel.folder / f"{name}.ko", root / "lib" / f"{name}.ko")
    init = root / "init"
    init.write_text(INIT.format(modules=" ".join(MODULES), mark=MARK, command=command))
    init.chmod(0o755)
    image = dest / "initrd.cpio"
    files = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
    with image.open("wb") as out:
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=files,
                       stdout=out, check=True)
    return image


def boot(kernel: Kernel, command: str, work: Path, timeout_s: float = 600) -> str:
    """Boot the VM, run ``command`` in it, return everything it printed (the serial
    console). Raises ``subprocess.TimeoutExpired`` or ``RuntimeError`` (no qemu, or the
    guest did not reach the command)."""
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise RuntimeError("qemu-system-x86_64 is not installed")
    initrd = build_initrd(kernel, command, work)
    argv = [
        qemu, "-accel", "tcg,thread=multi", "-cpu", "max", "-m", "1024", "-smp", "2",
        "-kernel", str(kernel.folder / "vmlinuz"), "-initrd", str(initrd),
        "-nographic", "-nodefaults", "-serial", "stdio", "-no-reboot",
        "-append", "console=ttyS0 quiet panic=-1",
        "-virtfs", "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap",
    ]
    done = subprocess.run(argv, capture_output=True, timeout=timeout_s, check=False,
                          stdin=subprocess.DEVNULL)
    console = done.stdout.decode(errors="replace").replace("\r\n", "\n")
    if f"{MARK} booted" not in console:
        raise RuntimeError(f"the VM did not boot (qemu exit {done.returncode}):\n"
                           f"{console[-3000:]}\n{done.stderr.decode(errors='replace')[-2000:]}")
    return console


def available_tools() -> str:
    """Why the VM cannot run here (missing tools), or ``""``."""
    missing = [t for t in ("qemu-system-x86_64", "cpio") if shutil.which(t) is None]
    return f"{' and '.join(missing)} not installed (make system-deps)" if missing else ""
