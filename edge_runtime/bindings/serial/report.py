"""Counting and logging dropped serial input without flooding the log.

Every drop is counted (``edge_runtime_serial_frames_dropped{binding, reason}``). The first
drop of each reason is logged at once; later ones of that reason at most once per
``interval`` seconds, each such line saying how many were not logged since the last one. A
line spewing garbage therefore costs one log line per reason per interval, and the counter
keeps the exact total. :meth:`DropReporter.flush` logs what is left when the binding stops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edge_runtime.observability import metrics as M

__all__ = ["DropReporter"]

log = logging.getLogger("edge_runtime.bindings.serial")


class DropReporter:
    """Counts and logs the drops of one binding. Event-loop only."""

    def __init__(
        self, name: str, *, interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.interval = interval
        self._clock = clock
        self._next: dict[str, float] = {}
        self._quiet: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        """Drops by reason since this reporter was made."""

    def report(self, reason: str, size: int, detail: str) -> None:
        """Count one drop of ``size`` bytes; log it unless one of its reason was logged
        less than ``interval`` seconds ago."""
        M.SERIAL_FRAMES_DROPPED.labels(self.name, reason).inc()
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = self._clock()
        if now < self._next.get(reason, 0.0):
            self._quiet[reason] = self._quiet.get(reason, 0) + 1
            return
        quiet = self._quiet.pop(reason, 0)
        more = f" ({quiet} more {reason} drop(s) since the last report)" if quiet else ""
        log.warning("serial %s: dropped %s [%s, %d bytes]%s", self.name, detail, reason, size,
                    more)
        self._next[reason] = now + self.interval

    def flush(self) -> None:
        """Log the drops counted but not logged yet (call when the binding stops, so the end
        of a burst inside the last interval gets its line too)."""
        for reason, quiet in sorted(self._quiet.items()):
            log.warning("serial %s: %d more %s drop(s) since the last report", self.name,
                        quiet, reason)
        self._quiet.clear()
        self._next.clear()
