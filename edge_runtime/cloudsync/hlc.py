"""A hybrid logical clock (HLC) whose high-water mark survives restarts and clock jumps.

A timestamp is one 64-bit integer: unix milliseconds << 16 | a 16-bit counter, so it compares
as a number and still reads as a time. :meth:`HLC.now` never returns a value at or below one
it returned before, in this process or an earlier one on the same data dir, even when the wall
clock steps back (a Pi without RTC boots in 1970 or at its last shutdown, then NTP jumps it).

Persistence is a lease: before issuing a timestamp at or past the persisted *ceiling*, the
clock writes a new ceiling ``LEASE_MS`` ahead to its file (atomically, fsynced), and at start
it begins above the ceiling it finds. So at most one small write per ``LEASE_MS`` of issued
time, and no timestamp is ever issued that a restart could issue again.

Thread-safe: state-store writer threads call :meth:`now` inside their transactions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edge_runtime.support.atomicfile import write_atomic

__all__ = ["HLC", "LEASE_MS", "MAX_REMOTE_MS", "pack", "unpack"]

log = logging.getLogger(__name__)

LEASE_MS = 60_000
# The latest time a peer's timestamp may carry and still be adopted: 3000-01-01. A device
# that booted in 1970 must adopt the cloud's clock, however far ahead of its own that is, so
# the bound is on plausibility, not drift; it keeps every timestamp (and the counter steps
# after it) far below 2^63, where SQLite integers and protobuf's fixed64 both still hold it.
MAX_REMOTE_MS = 32_503_680_000_000
_COUNTER_BITS = 16
_COUNTER_MAX = (1 << _COUNTER_BITS) - 1


def pack(ms: int, counter: int = 0) -> int:
    """A timestamp from unix milliseconds and a counter."""
    return (ms << _COUNTER_BITS) | (counter & _COUNTER_MAX)


def unpack(ts: int) -> tuple[int, int]:
    """``(unix ms, counter)`` of a timestamp."""
    return ts >> _COUNTER_BITS, ts & _COUNTER_MAX


class HLC:
    """The clock; ``path`` ``None`` keeps it in memory only (tests, the cloud's own clock
    when it has no file). ``wall`` returns unix seconds (a seam for tests)."""

    def __init__(
        self, path: Path | None = None, *, wall: Callable[[], float] = time.time,
        lease_ms: int = LEASE_MS,
    ) -> None:
        self._path = path
        self._wall = wall
        self._lease = max(1, lease_ms)
        self._lock = threading.Lock()
        self._ceiling = self._load()
        # Start above whatever an earlier process may have issued.
        self._last = pack(self._ceiling, 0) if self._ceiling else 0
        self._warned = -1e9

    def _load(self) -> int:
        if self._path is None:
            return 0
        try:
            return int(self._path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            # Unreadable: start from the wall clock; still monotonic within this process.
            log.warning("cloud sync clock %s unreadable (%s): starting from the wall clock",
                        self._path, exc)
            return 0

    @property
    def last(self) -> int:
        """The last timestamp issued or observed."""
        return self._last

    def now(self) -> int:
        """A new timestamp, greater than every one issued or observed before.

        Raises ``OSError`` when the lease cannot be persisted (nothing is issued then).
        """
        with self._lock:
            wall = pack(int(self._wall() * 1000))
            ts = wall if wall > self._last else self._next(self._last)
            self._issue(ts)
            return ts

    def update(self, remote: int) -> int:
        """Observe a timestamp from elsewhere (the cloud); a new one above both.

        A remote timestamp past :data:`MAX_REMOTE_MS` (year 3000) is not adopted, only logged:
        a peer with a wild clock, or a hostile one, must not drag this clock to the end of time
        (past 2^64 every message carrying it fails to encode, for every device).
        """
        with self._lock:
            wall = pack(int(self._wall() * 1000))
            if unpack(remote)[0] > MAX_REMOTE_MS:
                now = time.monotonic()
                if now - self._warned > 60:  # once a minute: a batch may carry thousands
                    self._warned = now
                    log.warning("a timestamp past the year 3000 (%d) was not adopted: a peer's "
                                "clock is wrong, or it is hostile", remote)
                remote = 0
            top = max(self._last, remote)
            ts = wall if wall > top else self._next(top)
            self._issue(ts)
            return ts

    @staticmethod
    def _next(ts: int) -> int:
        ms, counter = unpack(ts)
        # A full counter borrows the next millisecond: still unique and increasing.
        return pack(ms + 1, 0) if counter >= _COUNTER_MAX else pack(ms, counter + 1)

    def _issue(self, ts: int) -> None:
        ms = unpack(ts)[0]
        if self._path is not None and ms >= self._ceiling:
            ceiling = ms + self._lease
            write_atomic(self._path, f"{ceiling}\n".encode())
            self._ceiling = ceiling
        self._last = ts
