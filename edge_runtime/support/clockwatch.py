"""Notices wall-clock jumps (NTP's first sync on a Pi without an RTC, an operator's `date -s`)
and says so: one WARNING line and ``edge_runtime_clock_jumps_total``.

Nothing here corrects anything: message TTLs and retry schedules run on the monotonic clock
with the boot id (DESIGN.md §5) and are not moved by a jump; what does follow the wall clock
(state TTLs, as in Dapr; cron field schedules; CloudEvent ``time`` stamps) is named in the log
line so an operator reading it after a surprise knows why.

:func:`watch` compares ``wall - monotonic`` every ``every_s``; a change beyond ``threshold_s``
is a jump (slewing by NTP moves it by milliseconds, never seconds). One task, named
``clock-watch``, cancelled on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from edge_runtime.observability.metrics import CLOCK_JUMPS

__all__ = ["start", "watch"]

log = logging.getLogger(__name__)


async def watch(
    *, every_s: float = 2.0, threshold_s: float = 2.0,
    wall: Callable[[], float] = time.time, mono: Callable[[], float] = time.monotonic,
) -> None:
    """Run until cancelled; log and count each jump of the wall clock against monotonic."""
    offset = wall() - mono()
    while True:
        await asyncio.sleep(every_s)
        now = wall() - mono()
        jump = now - offset
        offset = now
        if abs(jump) >= threshold_s:
            CLOCK_JUMPS.labels("forward" if jump > 0 else "back").inc()
            log.warning(
                "the wall clock jumped %s by %.0f s; message TTLs and retries run on the "
                "monotonic clock and are unaffected; state TTLs and cron schedules follow "
                "the wall clock", "forward" if jump > 0 else "back", abs(jump))


def start() -> asyncio.Task[None]:
    """The watcher as a named background task (the caller owns and cancels it)."""
    return asyncio.create_task(watch(), name="clock-watch")
