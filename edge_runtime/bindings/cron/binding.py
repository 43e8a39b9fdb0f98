"""``bindings.cron`` (Dapr's): an input binding that fires on a schedule, for periodic polling.

Metadata: ``schedule`` (required; the syntax in ``schedule.py``: six fields with seconds,
five without, ``@every 15s``, ``@hourly`` ..., an optional ``CRON_TZ=`` prefix), plus the
common ``direction`` and ``route``.

Each firing is one input event, as daprd sends it: no data, metadata ``timeZone`` (``Local``,
as daprd reports it) and ``readTimeUTC`` (Go's rendering of the UTC time, e.g.
``2024-05-01 10:00:00.123456 +0000 UTC``). Like every input event it is committed to the inbox
first, so firings while the app is down are delivered once it is up. Firings missed while the
sidecar was not running are not made up (as daprd).

Clocks: ``@every`` runs on the monotonic clock (a wall-clock jump neither bunches nor skips
firings). Field schedules follow the wall clock, which jumps on a Pi without an RTC when NTP
syncs: the timer sleeps at most 5 s at a time, so after a jump forward past a firing time it
fires once (the missed ones are not repeated) and plans from the new time; after a jump back
it plans again from the new time.

Concurrency: event-loop only. A firing whose handler is still committing does not delay the
next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from edge_runtime.bindings.contract import BindingError, InputHandler
from edge_runtime.bindings.cron.schedule import CronSpec, Every, Schedule, parse
from edge_runtime.bindings.options import CommonMetadata
from edge_runtime.config.metadata import declare_metadata, decode, meta, problem
from edge_runtime.observability import metrics as M
from edge_runtime.registry import ComponentContext

__all__ = ["CronBinding", "CronMetadata", "create", "go_utc"]

log = logging.getLogger("edge_runtime.bindings.cron")

_CHECK_S = 5.0  # the longest sleep of a field schedule: how soon a wall-clock jump is seen


@dataclass(frozen=True)
class CronMetadata(CommonMetadata):
    """``bindings.cron`` metadata."""

    schedule: str = meta("schedule", required=True,
                         help="e.g. '@every 15s', '0 */5 * * * *', '@hourly'")


class CronBinding:
    """Fires ``handler`` on ``schedule``; see the module docstring."""

    def __init__(self, name: str, schedule: Schedule, text: str = "") -> None:
        self.name = name
        self.schedule = schedule
        self.text = text
        self.fires = 0
        """Times the schedule fired since the binding was made."""
        self.next_fire: float | None = None
        """When it fires next (epoch seconds), while started."""
        self._handler: InputHandler | None = None
        self._timer: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()
        self._closed = False
        self._fired = M.CRON_FIRES.labels(name)

    @property
    def status(self) -> dict[str, str]:
        """For ``/v1.0/metadata``: the schedule and the next firing (UTC, ISO 8601)."""
        out = {"schedule": self.text}
        if self.next_fire is not None:
            out["next"] = datetime.fromtimestamp(self.next_fire, UTC).isoformat(
                timespec="milliseconds")
        return out

    async def init(self) -> None:
        """Nothing to open (the schedule was checked when the binding was made)."""
        if self._closed:
            raise BindingError(f"binding {self.name} is closed")

    async def close(self) -> None:
        """Stop firing; idempotent."""
        await self.stop()
        self._closed = True

    async def start(self, handler: InputHandler) -> None:
        """Fire into ``handler`` from now on."""
        if self._closed:
            raise BindingError(f"binding {self.name} is closed")
        if self._handler is not None:
            raise BindingError(f"binding {self.name}: input already started")
        self._handler = handler
        now = time.time()
        self.next_fire = now + self.schedule.interval_s if isinstance(self.schedule, Every) \
            else self.schedule.next_after(now)
        run = self._every(self.schedule) if isinstance(self.schedule, Every) \
            else self._fields(self.schedule)
        self._timer = asyncio.create_task(run, name=f"cron[{self.name}]")

    async def stop(self) -> None:
        """Stop firing; returns once no handler call is in progress. Idempotent."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        if self._calls:
            await asyncio.gather(*self._calls, return_exceptions=True)
        self._handler = None
        self.next_fire = None

    async def _every(self, every: Every) -> None:
        interval = every.interval_s
        target = time.monotonic() + interval
        while True:
            self.next_fire = time.time() + (target - time.monotonic())
            await asyncio.sleep(max(0.0, target - time.monotonic()))
            self._fire()
            target += interval
            now = time.monotonic()
            if target <= now:  # late (a suspended machine, a busy loop): skip, don't bunch
                target = now + interval

    async def _fields(self, spec: CronSpec) -> None:
        now = time.time()
        target, seen = spec.next_after(now), now
        while target is not None:
            self.next_fire = target
            now = time.time()
            if now < seen - 1.0:  # the wall clock went back (NTP): plan from the new time
                log.info("cron %s: the clock went back %.0fs; planning from the new time",
                         self.name, seen - now)
                target = spec.next_after(now)
                seen = now
                continue
            seen = now
            if now >= target:
                self._fire()
                target = spec.next_after(max(now, target))
                continue
            await asyncio.sleep(min(target - now, _CHECK_S))
        self.next_fire = None
        log.warning("cron %s: the schedule %r fires no more", self.name, self.text)

    def _fire(self) -> None:
        handler = self._handler
        if handler is None:
            return
        self.fires += 1
        self._fired.inc()
        metadata = {"timeZone": "Local", "readTimeUTC": go_utc(time.time())}
        task = asyncio.create_task(self._deliver(handler, metadata),
                                   name=f"cron[{self.name}] fire")
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _deliver(self, handler: InputHandler, metadata: Mapping[str, str]) -> None:
        try:
            await handler(b"", metadata)
        except Exception as exc:  # noqa: BLE001 - a firing cannot be redelivered: log it
            log.warning("cron %s: a firing at %s was not stored and is lost: %s", self.name,
                        metadata["readTimeUTC"], exc)


def go_utc(epoch: float) -> str:
    """``epoch`` as Go's ``time.Time.String()`` renders a UTC time (fraction trimmed)."""
    t = datetime.fromtimestamp(epoch, UTC)
    fraction = f"{t.microsecond:06d}".rstrip("0")
    return t.strftime("%Y-%m-%d %H:%M:%S") + (f".{fraction}" if fraction else "") + " +0000 UTC"


@declare_metadata(CronMetadata)
def create(ctx: ComponentContext) -> CronBinding:
    """The ``bindings.cron`` factory; raises ``MetadataError`` (``file:line``) for a schedule
    that does not parse or never fires."""
    md = decode(CronMetadata, ctx.metadata, ctx.manifest)
    try:
        schedule = parse(md.schedule)
    except ValueError as exc:
        raise problem(ctx.manifest, ctx.metadata, "schedule", str(exc)) from None
    if isinstance(schedule, CronSpec) and schedule.next_after(time.time()) is None:
        raise problem(ctx.manifest, ctx.metadata, "schedule",
                      f"{md.schedule!r} never fires in the next five years")
    return CronBinding(ctx.manifest.name, schedule, md.schedule.strip())
