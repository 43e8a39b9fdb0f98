"""socat pty pairs for serial tests: ``a`` is the "device" a binding opens, ``b`` the far end.

::

    pair = PtyPair(tmp_path)           # links tmp_path/ttyA and tmp_path/ttyB, nothing yet
    pair.start()                       # returns once both links exist
    pair.write(b"hello\\n")             # bytes into b: the binding reads them from a
    pair.read(5)                       # bytes the binding wrote to a, from b
    pair.kill()                        # SIGKILL (an unplugged adapter): the binding's reads fail
    pair.start()                       # a new pair at the same link names (plugged back)

A fresh pair per test (stale bytes from a reused pair desynchronise later tests); every wait
is bounded. :func:`require_socat` skips a test when socat is missing.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import termios
import time
import tty
from pathlib import Path

import pytest

__all__ = ["PtyPair", "require_socat"]


def require_socat() -> str:
    """The socat executable; skips the calling test when it is not installed."""
    path = shutil.which("socat") or next(
        (p for p in ("/usr/bin/socat", "/usr/local/bin/socat") if os.access(p, os.X_OK)), None)
    if path is None:
        pytest.skip("socat is not installed")
    return path


class PtyPair:
    """One socat process joining two ptys, with stable link names under ``workdir``."""

    def __init__(self, workdir: Path, name: str = "tty") -> None:
        self.socat = require_socat()
        workdir.mkdir(parents=True, exist_ok=True)
        self.a = workdir / f"{name}A"
        self.b = workdir / f"{name}B"
        self._proc: subprocess.Popen[bytes] | None = None
        self._fd: int | None = None  # our end of b

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 5.0) -> None:
        """Start socat and open ``b``; returns once both links exist."""
        if self.running:
            return
        self._unlink()
        self._proc = subprocess.Popen(
            [self.socat, f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not (self.a.exists() and self.b.exists()):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("socat did not make its pty pair")
            time.sleep(0.005)
        fd = os.open(self.b, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(fd)
        attrs = termios.tcgetattr(fd)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        self._fd = fd

    def write(self, data: bytes, timeout: float = 5.0) -> None:
        """Write every byte of ``data`` into ``b`` (bounded wait)."""
        assert self._fd is not None, "not started"
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            try:
                view = view[os.write(self._fd, view):]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError("the pty did not take the bytes") from None
                select.select([], [self._fd], [], 0.05)

    def read(self, n: int, timeout: float = 5.0) -> bytes:
        """Exactly ``n`` bytes from ``b`` (what the binding wrote), or ``TimeoutError``."""
        assert self._fd is not None, "not started"
        out = bytearray()
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(out)} of {n} bytes arrived: {bytes(out)!r}")
            ready, _, _ = select.select([self._fd], [], [], min(left, 0.1))
            if ready:
                with contextlib.suppress(BlockingIOError):
                    out += os.read(self._fd, n - len(out))
        return bytes(out)

    def kill(self) -> None:
        """SIGKILL socat (the port vanishes: reads on ``a`` fail) and remove the links."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)
        self._unlink()

    def _unlink(self) -> None:
        # A killed socat leaves its links pointing at freed pts numbers, which another pair
        # may get next: never let a binding reopen one of those.
        for link in (self.a, self.b):
            with contextlib.suppress(FileNotFoundError):
                link.unlink()

    def __enter__(self) -> PtyPair:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
