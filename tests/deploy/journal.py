"""journald's side of its native protocol, for tests: a bound ``AF_UNIX`` datagram socket that
parses each entry (datagram or sealed memfd passed with ``SCM_RIGHTS``) into a field dict."""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


def fds_in_empty_datagrams() -> bool:
    """Whether a file descriptor sent alone (no payload, as journald's memfd entries are)
    arrives. A Linux kernel delivers it; qemu user emulation (``make test-arm``) drops such a
    datagram, so the memfd path and a real journald cannot be checked there."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    fd = os.memfd_create("probe")
    try:
        a.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
        b.settimeout(2)
        try:
            _msg, ancdata, _flags, _addr = b.recvmsg(1, socket.CMSG_SPACE(4))
        except TimeoutError:
            return False
        for _level, _kind, data in ancdata:
            for got in array.array("i", data[: len(data) - len(data) % 4]):
                os.close(got)
        return bool(ancdata)
    finally:
        os.close(fd)
        a.close()
        b.close()


def parse(data: bytes) -> tuple[dict[str, str], set[str]]:
    """One entry: ``KEY=value\\n`` fields and ``KEY\\n<le64 size><value>\\n`` ones; the
    fields and the names of those in the second (binary-safe) form. Raises ``ValueError`` on
    anything else (a test then fails on it)."""
    fields: dict[str, str] = {}
    binary: set[str] = set()
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        line = data[pos:end]
        key, eq, value = line.partition(b"=")
        if eq:
            pos = end + 1
        else:  # binary-safe form
            size = int.from_bytes(data[end + 1:end + 9], "little")
            value = data[end + 9:end + 9 + size]
            if len(value) != size or data[end + 9 + size:end + 10 + size] != b"\n":
                raise ValueError(f"bad binary field {key!r}")
            pos = end + 10 + size
            binary.add(key.decode("ascii"))
        name = key.decode("ascii")
        if not name or not all(c.isupper() or c.isdigit() or c == "_" for c in name):
            raise ValueError(f"bad field name {name!r}")
        if name in fields:
            raise ValueError(f"field {name} twice")
        fields[name] = value.decode()
    return fields, binary


@dataclass
class Entry:
    fields: dict[str, str]
    binary: set[str] = field(default_factory=set)  # fields sent in the binary-safe form
    memfd_seals: int | None = None  # the seals of the memfd it came in, if it came in one

    def __getitem__(self, key: str) -> str:
        return self.fields[key]

    def get(self, key: str, default: str = "") -> str:
        return self.fields.get(key, default)


class JournalSocket:
    """Receives entries on a thread (``drain``), or lets them pile up in the socket's queue
    (``drain=False``, until :meth:`read_queued`)."""

    def __init__(self, path: Path, *, drain: bool = True) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.entries: list[Entry] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if drain:
            self.sock.settimeout(0.1)
            self._thread = threading.Thread(target=self._drain, daemon=True)
            self._thread.start()

    def _receive(self) -> None:
        data, ancillary, _flags, _addr = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(4 * 4))
        seals = None
        for level, kind, payload in ancillary:
            assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
            fds = array.array("i")
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            for fd in fds:
                try:
                    seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
                    data += os.pread(fd, os.fstat(fd).st_size, 0)
                finally:
                    os.close(fd)
        try:
            fields, binary = parse(data)
        except (ValueError, UnicodeDecodeError) as exc:
            with self._lock:
                self.errors.append(f"{exc}: {data[:200]!r}")
            return
        with self._lock:
            self.entries.append(Entry(fields, binary, seals))

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                self._receive()
            except TimeoutError:
                continue
            except OSError:
                return

    def read_queued(self) -> None:
        """Take every entry waiting in the socket's queue (``drain=False``)."""
        self.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                self._receive()

    def snapshot(self) -> list[Entry]:
        with self._lock:
            assert not self.errors, self.errors
            return list(self.entries)

    def wait_for(self, match: Callable[[Entry], bool], timeout: float = 30) -> Entry:
        """The first entry ``match`` accepts; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((e for e in self.snapshot() if match(e)), None)
            if found is not None:
                return found
            time.sleep(0.02)
        raise AssertionError(f"no such entry within {timeout} s: {self.snapshot()!r}")

    def message(self, text: str, timeout: float = 30) -> Entry:
        """The first entry whose MESSAGE contains ``text``."""
        return self.wait_for(lambda e: text in e.get("MESSAGE"), timeout)

    def remove(self) -> None:
        """journald goes away: the socket closes and its path disappears."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    close = remove
