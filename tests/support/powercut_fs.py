"""A FUSE passthrough filesystem that loses what was not fsynced when the power is "cut".

Run as a process: ``python powercut_fs.py BACKING MOUNTPOINT SOCKET`` (foreground; needs /dev/fuse,
libfuse3 and the ``mfusepy`` package). The mount shows the files of ``BACKING``. Data written
through it stays in this process's memory, per file, like dirty pages in a page cache, until
that file is fsynced (``fsync``/``fdatasync``: both arrive as FUSE fsync), which writes the
file's pending pages and its size to ``BACKING``. A power cut is ``kill -9`` of this process:
the pending data is gone, and ``BACKING`` holds exactly what was synced. A third argument names
a Unix socket that answers with the unsynced pages per file (what a cut would lose now).
Unmount afterwards (``fusermount3 -uz``) and mount again on the same ``BACKING`` to "boot".

Simplifications (stated so that results are read right): metadata (create, unlink, rename,
mkdir, chmod) is applied to ``BACKING`` at once, as a journaling filesystem would after a
short delay; an unsynced rename or create therefore survives a cut here (a real disk may lose
it; SQLite does not depend on either). A write is never torn inside this model: a cut loses
whole unsynced writes, not parts of one sector. ``direct_io`` stays off, so SQLite's ``-shm``
can be mmap'ed; its pages reach us as writes and are lost like any unsynced data (SQLite
rebuilds it). POSIX locks are left to the kernel (local to this machine, which is all SQLite
needs here).

:class:`PowerCutMount` drives it from a test: :meth:`~PowerCutMount.mount`,
:meth:`~PowerCutMount.cut`, :meth:`~PowerCutMount.unmount`; :func:`fuse_unavailable` says why
it cannot run here (or ``None``).
"""

# ruff: noqa: ARG002 - the operations' signatures are mfusepy's (it passes every argument)
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PAGE = 4096


@dataclass
class _Pending:
    """One file's unsynced state: its logical size, the pages written since the last sync,
    and ``floor``: below it the backing file's bytes are still valid (a shrinking truncate
    lowers it; bytes past it read as zeros until written)."""

    size: int
    floor: int
    pages: dict[int, bytearray] = field(default_factory=dict)


class PowerCutFS:
    """The operations mfusepy calls (it registers the methods a class has; an ``OSError``
    becomes the errno); paths are relative to the mount ("/a/b")."""

    def __init__(self, backing: str) -> None:
        self.backing = backing
        self._mu = threading.RLock()
        self.pending: dict[str, _Pending] = {}
        self.synced = 0  # fsync calls that wrote something

    def _real(self, path: str) -> str:
        return os.path.join(self.backing, path.lstrip("/"))

    # --- metadata: straight to the backing dir -----------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        st = os.lstat(self._real(path))
        attrs = {k: getattr(st, k) for k in (
            "st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime", "st_mtime",
            "st_ctime")}
        with self._mu:
            p = self.pending.get(path)
            if p is not None:
                attrs["st_size"] = p.size
        return attrs

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._real(path))]

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._real(path), amode):
            raise OSError(errno.EACCES, "access")
        return 0

    def statfs(self, path: str) -> dict[str, Any]:
        st = os.statvfs(self._real(path))
        return {k: getattr(st, k) for k in (
            "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
            "f_flag", "f_frsize", "f_namemax")}

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._real(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._real(path))
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._real(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._real(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[float, float] | None = None) -> int:
        os.utime(self._real(path), times)
        return 0

    def unlink(self, path: str) -> int:
        os.unlink(self._real(path))
        with self._mu:
            self.pending.pop(path, None)
        return 0

    def rename(self, old: str, new: str) -> int:
        with self._mu:
            os.rename(self._real(old), self._real(new))
            moved = self.pending.pop(old, None)
            self.pending.pop(new, None)
            if moved is not None:
                self.pending[new] = moved
        return 0

    # --- files ----------------------------------------------------------------------------------

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        return os.open(self._real(path), os.O_RDWR | os.O_CREAT, mode)

    def open(self, path: str, flags: int) -> int:
        try:
            return os.open(self._real(path), os.O_RDWR)
        except PermissionError:
            return os.open(self._real(path), os.O_RDONLY)

    def release(self, path: str, fh: int) -> int:
        os.close(fh)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0  # close() is not a sync

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        return 0  # metadata is already on the backing dir

    def _page(self, fh: int, p: _Pending, idx: int) -> bytearray:
        """Page ``idx`` as the file shows it now (pending or backing, zeros past ``floor``)."""
        got = p.pages.get(idx)
        if got is not None:
            return got
        start = idx * PAGE
        valid = max(0, min(PAGE, p.floor - start))
        data = os.pread(fh, valid, start) if valid else b""
        return bytearray(data.ljust(PAGE, b"\0"))

    def _pending(self, fh: int, path: str) -> _Pending:
        p = self.pending.get(path)
        if p is None:
            size = os.fstat(fh).st_size
            p = self.pending[path] = _Pending(size, size)
        return p

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self._mu:
            p = self.pending.get(path)
            if p is None:
                return os.pread(fh, size, offset)
            end = min(offset + size, p.size)
            if end <= offset:
                return b""
            out = bytearray()
            for idx in range(offset // PAGE, (end - 1) // PAGE + 1):
                page = self._page(fh, p, idx)
                lo = max(offset, idx * PAGE) - idx * PAGE
                hi = min(end, (idx + 1) * PAGE) - idx * PAGE
                out += page[lo:hi]
            return bytes(out)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        with self._mu:
            p = self._pending(fh, path)
            pos, view = offset, memoryview(data)
            while view:
                idx = pos // PAGE
                page = p.pages.get(idx)
                if page is None:
                    page = p.pages[idx] = self._page(fh, p, idx)
                lo = pos - idx * PAGE
                n = min(PAGE - lo, len(view))
                page[lo:lo + n] = view[:n]
                view, pos = view[n:], pos + n
            p.size = max(p.size, offset + len(data))
        return len(data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        with self._mu:
            fd = fh if fh is not None else os.open(self._real(path), os.O_RDONLY)
            try:
                p = self._pending(fd, path)
                p.size = length
                p.floor = min(p.floor, length)
                for idx in [i for i in p.pages if i * PAGE >= length]:
                    del p.pages[idx]
                last = p.pages.get(length // PAGE)
                if last is not None:
                    cut = length - (length // PAGE) * PAGE
                    last[cut:] = bytes(PAGE - cut)
            finally:
                if fh is None:
                    os.close(fd)
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        """Write this file's pending pages and size to the backing dir."""
        with self._mu:
            p = self.pending.pop(path, None)
            if p is None:
                return 0
            fd = os.open(self._real(path), os.O_WRONLY)
            try:
                os.ftruncate(fd, min(p.floor, p.size))
                for idx in sorted(p.pages):
                    start = idx * PAGE
                    n = max(0, min(PAGE, p.size - start))
                    if n:
                        os.pwrite(fd, bytes(p.pages[idx][:n]), start)
                os.ftruncate(fd, p.size)
            finally:
                os.close(fd)
            self.synced += 1
        return 0


def fuse_unavailable() -> str | None:
    """Why this cannot run here, or ``None``."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse does not exist"
    if shutil.which("fusermount3") is None and os.geteuid() != 0:
        return "fusermount3 is missing (Debian package fuse3) and we are not root"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy cannot load libfuse3 (pip mfusepy, Debian package fuse3): {exc}"
    return None


class PowerCutMount:
    """A :class:`PowerCutFS` process over ``backing`` mounted at ``mountpoint``."""

    def __init__(self, backing: Path, mountpoint: Path) -> None:
        self.backing = backing
        self.mountpoint = mountpoint
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = backing.parent / f"{mountpoint.name}.fuse.log"
        self.cuts = 0
        self.stats_socket = backing.parent / f"{mountpoint.name}.fuse.sock"

    def pending(self) -> dict[str, dict[str, int]]:
        """Unsynced state per file ({"/data/outbox.db-wal": {"pages": n, "size": bytes}}):
        what a cut now would lose."""
        import json
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(self.stats_socket))
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        result: dict[str, dict[str, int]] = json.loads(b"".join(chunks))
        return result

    def mount(self, timeout: float = 10) -> None:
        """Start the filesystem; returns once the mount is live."""
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, str(self.backing), str(self.mountpoint),
                 str(self.stats_socket)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the FUSE process exited: {self.log.read_text()[-2000:]}")
            if os.path.ismount(self.mountpoint):
                return
            time.sleep(0.02)
        self.cut()
        raise RuntimeError(f"the FUSE mount did not appear: {self.log.read_text()[-2000:]}")

    def cut(self) -> None:
        """The power cut: kill -9 the filesystem (its unsynced data dies with it), unmount."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None
        self.cuts += 1
        self._umount()

    def unmount(self) -> None:
        """A clean unmount (everything pending is lost as well: nobody synced it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        self._umount()

    def _umount(self) -> None:
        # Always: a dead FUSE mount fails stat() (ENOTCONN), so ismount() cannot see it.
        tool = shutil.which("fusermount3")
        cmd = [tool, "-u", "-z", str(self.mountpoint)] if tool else \
            ["umount", "-l", str(self.mountpoint)]
        subprocess.run(cmd, capture_output=True, check=False, timeout=10)


def _serve_stats(fs: PowerCutFS, sock_path: str) -> None:
    """Answer each connection to ``sock_path`` with the unsynced bytes per file (JSON), so a
    test can see what a cut is about to lose (a thread: the main one is inside libfuse)."""
    import json
    import socket

    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock_path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(4)
    while True:
        conn, _ = server.accept()
        with conn, fs._mu:
            stats = {path: {"pages": len(p.pages), "size": p.size}
                     for path, p in fs.pending.items()}
            conn.sendall(json.dumps(stats).encode())


def main() -> None:
    import mfusepy

    backing, mountpoint, sock_path = sys.argv[1], sys.argv[2], sys.argv[3]
    fs = PowerCutFS(os.path.abspath(backing))
    threading.Thread(target=_serve_stats, args=(fs, sock_path), daemon=True).start()
    mfusepy.FUSE(fs, mountpoint, foreground=True, nothreads=False)


if __name__ == "__main__":
    main()
