"""Dapr's cron schedule syntax (``bindings.cron``'s ``schedule``): parsing and the next time.

Pure: no I/O, no clock of its own. Syntax, as Dapr's parser (dapr/kit's fork of robfig/cron
with optional seconds and descriptors) reads it:

* five or six fields: ``[second] minute hour day-of-month month day-of-week`` (without the
  seconds field, second 0). Each field is a comma-separated list of ``*`` (or ``?``), ``N``,
  ``N-M``, each optionally ``/step`` (``N/step`` means from N to the field's end). Months take
  ``jan``-``dec`` and days of the week ``sun``-``sat`` (any case); Sunday is 0 (and 7, as Dapr's
  docs say, although its parser refuses 7). When both day fields are restricted (neither
  starts with ``*`` or ``?``), a day matching either one matches (classic cron).
* descriptors: ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily``
  (``@midnight``), ``@hourly`` (at the start of each period on the clock, as Dapr's code does;
  its docs say "from when the binding starts") and ``@every <duration>`` (Go syntax:
  ``15s``, ``1m30s``, ``500ms``, ``1.5h``; at least 1ms, whole milliseconds).
* a ``CRON_TZ=<zone>`` or ``TZ=<zone>`` prefix reads the fields in that IANA zone; without it,
  in the system's local time.

Differences from Dapr, on purpose: ``@every`` with zero or a negative duration is an error
(Dapr fires every millisecond), and so is a schedule that never fires in the next five years
(Dapr accepts it and never fires).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["CronSpec", "Every", "Schedule", "parse", "parse_go_duration"]

_BOUNDS = {  # field: (low, high)
    "second": (0, 59), "minute": (0, 59), "hour": (0, 23),
    "day of month": (1, 31), "month": (1, 12), "day of week": (0, 6),
}
_MONTHS = {m: i + 1 for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *", "@annually": "0 0 0 1 1 *", "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0", "@daily": "0 0 0 * * *", "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_GO_DURATION = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
             "h": 3600.0}
_YEARS_AHEAD = 5


@dataclass(frozen=True, slots=True)
class Every:
    """``@every <interval>``: fires every ``interval_s`` seconds from the start."""

    interval_s: float


@dataclass(frozen=True, slots=True)
class CronSpec:
    """A field schedule; ``zone`` ``None`` means the system's local time."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_any: bool  # the day-of-month field started with * or ?
    weekdays_any: bool
    zone: ZoneInfo | None = None

    def _day_matches(self, t: datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        if self.days_any or self.weekdays_any:
            return dom and dow
        return dom or dow

    def next_after(self, now: float) -> float | None:
        """The first firing time (epoch seconds, on a whole second) after ``now``; ``None``
        when there is none in the next five years."""
        t = self._wall(now).replace(microsecond=0) + timedelta(seconds=1)
        limit = t.year + _YEARS_AHEAD
        while t.year <= limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0, second=0) + timedelta(days=32)) \
                    .replace(day=1)
            elif not self._day_matches(t):
                t = t.replace(hour=0, minute=0, second=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0, second=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t = t.replace(second=0) + timedelta(minutes=1)
            elif t.second not in self.seconds:
                t += timedelta(seconds=1)
            else:
                at = self._epoch(t)
                if at > now:
                    return at
                t += timedelta(seconds=1)  # a wall time repeated by a DST change: go on
        return None

    def _wall(self, now: float) -> datetime:
        if self.zone is None:
            return datetime.fromtimestamp(now)  # noqa: DTZ006 - the local wall clock, on purpose
        return datetime.fromtimestamp(now, self.zone).replace(tzinfo=None)

    def _epoch(self, wall: datetime) -> float:
        if self.zone is None:
            return time.mktime(wall.timetuple())  # isdst -1: the C library decides DST
        return wall.replace(tzinfo=self.zone).timestamp()


Schedule = Every | CronSpec


def parse(spec: str) -> Schedule:
    """Parse a schedule; raises ``ValueError`` saying what is wrong."""
    text = spec.strip()
    if not text:
        raise ValueError("the schedule is empty")
    zone: ZoneInfo | None = None
    if text.startswith(("TZ=", "CRON_TZ=")):
        prefix, _, text = text.partition(" ")
        text = text.strip()
        name = prefix.split("=", 1)[1]
        if not text:
            raise ValueError(f"the time zone prefix {prefix} is not followed by a schedule")
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r} in {prefix}") from None
    if text.startswith("@every "):
        interval = parse_go_duration(text[len("@every "):].strip())
        if interval <= 0:
            raise ValueError(f"@every needs a duration above zero, got {text!r}")
        return Every(max(0.001, int(interval * 1000) / 1000))
    if text.startswith("@"):
        if text not in _DESCRIPTORS:
            known = ", ".join([*_DESCRIPTORS, "@every <duration>"])
            raise ValueError(f"unknown descriptor {text!r}; known: {known}")
        text = _DESCRIPTORS[text]
    fields = text.split()
    if len(fields) == 5:
        fields.insert(0, "0")
    if len(fields) != 6:
        raise ValueError(f"expected 5 or 6 fields ([second] minute hour day-of-month month"
                         f" day-of-week), found {len(fields)}: {text!r}")
    names = list(_BOUNDS)
    values = [_field(f, name) for f, name in zip(fields, names, strict=True)]
    return CronSpec(
        seconds=values[0][0], minutes=values[1][0], hours=values[2][0], days=values[3][0],
        months=values[4][0], weekdays=values[5][0], days_any=values[3][1],
        weekdays_any=values[5][1], zone=zone,
    )


def _field(text: str, name: str) -> tuple[frozenset[int], bool]:
    """The values of one field, and whether it is unrestricted (``*``/``?`` first)."""
    low, high = _BOUNDS[name]
    out: set[int] = set()
    star = False
    for part in text.split(","):
        if not part:
            raise ValueError(f"an empty item in the {name} field {text!r}")
        span, slash, step_text = part.partition("/")
        step = _number(step_text, name) if slash else 1
        if step < 1:
            raise ValueError(f"the step in {part!r} ({name}) must be at least 1")
        if span in ("*", "?"):
            start, end = low, high
            star = star or step == 1
        else:
            first, dash, last = span.partition("-")
            start = _value(first, name)
            end = _value(last, name) if dash else (high if slash else start)
        if start > end:
            raise ValueError(f"the range {part!r} ({name}) runs backwards")
        out.update(range(start, end + 1, step))
    if name == "day of week" and 7 in out:  # Sunday, written the way Dapr's docs allow
        out.discard(7)
        out.add(0)
    return frozenset(out), star


def _value(text: str, name: str) -> int:
    table = _MONTHS if name == "month" else _DAYS if name == "day of week" else {}
    value = table.get(text.lower())
    if value is None:
        value = _number(text, name)
    low, high = _BOUNDS[name]
    if name == "day of week":
        high = 7  # 7 is Sunday too
    if not low <= value <= high:
        raise ValueError(f"{text} is out of range for the {name} ({low}-{high})")
    return value


def _number(text: str, name: str) -> int:
    if not text.isdigit():
        raise ValueError(f"expected a number in the {name} field, got {text!r}")
    return int(text)


def parse_go_duration(text: str) -> float:
    """A Go duration (``1h30m``, ``15s``, ``500ms``, ``-2s``; a unit is required except for
    ``0``) in seconds; ``ValueError`` otherwise."""
    sign, body = (-1.0, text[1:]) if text.startswith("-") else (1.0, text.lstrip("+"))
    if body == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _GO_DURATION.finditer(body):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    if not body or pos != len(body):
        raise ValueError(f"not a duration: {text!r} (expected e.g. 15s, 1m30s, 500ms, 1h)")
    return sign * total
