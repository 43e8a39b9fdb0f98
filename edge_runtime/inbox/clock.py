"""Clocks for the inbox: wall time for people, monotonic time plus a boot id for deadlines.

A Pi without an RTC jumps its wall clock at NTP sync (DESIGN.md §1), so message expiry and
retry schedules are kept as monotonic milliseconds together with the id of the boot they are
valid in. ``time.monotonic`` on Linux is ``CLOCK_MONOTONIC``: shared by every process of one
boot, so a restarted sidecar keeps its deadlines, and reset by a reboot, which the boot id
(``/proc/sys/kernel/random/boot_id``) tells apart.
"""

from __future__ import annotations

import time
from typing import Protocol

from edge_runtime.support.bootid import BOOT_ID_FILE, read_boot_id

__all__ = ["BOOT_ID_FILE", "Clock", "SystemClock", "read_boot_id"]

class Clock(Protocol):
    """What the inbox reads time from (tests inject a fake one)."""

    @property
    def boot_id(self) -> str:
        """Identifies the boot ``monotonic`` is counted in."""
        ...

    def wall(self) -> float:
        """Unix seconds (for people and for wall-clock facts such as ``expiration``)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary point fixed for the whole boot."""
        ...


class SystemClock:
    """The real clocks."""

    def __init__(self, boot_id: str | None = None) -> None:
        self._boot_id = boot_id or read_boot_id()

    @property
    def boot_id(self) -> str:
        return self._boot_id

    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()
