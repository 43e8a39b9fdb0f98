"""``bindings.cron``: Dapr's schedule syntax, the next firing time, and the binding firing."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_runtime.bindings import BindingError
from edge_runtime.bindings.cron import CronBinding, CronSpec, Every, create, parse
from edge_runtime.bindings.cron.binding import go_utc
from edge_runtime.bindings.cron.schedule import parse_go_duration
from edge_runtime.config.manifest import ComponentManifest, Mark
from edge_runtime.config.metadata import MetadataError, ResolvedMetadata, Value
from edge_runtime.registry import ComponentContext


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def fires(spec: str, start: float, n: int = 3) -> list[str]:
    """The next ``n`` firing times after ``start``, as UTC ISO strings."""
    schedule = parse(spec)
    assert isinstance(schedule, CronSpec)
    out, t = [], start
    for _ in range(n):
        nxt = schedule.next_after(t)
        assert nxt is not None
        out.append(datetime.fromtimestamp(nxt, UTC).strftime("%Y-%m-%d %H:%M:%S"))
        t = nxt
    return out


T0 = utc(2024, 1, 31, 23, 59, 58)  # a Wednesday


class TestSchedule:
    @pytest.mark.parametrize(("spec", "expected"), [
        ("CRON_TZ=UTC 30 * * * * *", ["2024-02-01 00:00:30", "2024-02-01 00:01:30",
                                      "2024-02-01 00:02:30"]),
        ("TZ=UTC */20 * * * *", ["2024-02-01 00:00:00", "2024-02-01 00:20:00",
                                 "2024-02-01 00:40:00"]),
        ("CRON_TZ=UTC 0 30 3-6,20-23 * * *", ["2024-02-01 03:30:00", "2024-02-01 04:30:00",
                                              "2024-02-01 05:30:00"]),
        ("CRON_TZ=UTC @hourly", ["2024-02-01 00:00:00", "2024-02-01 01:00:00",
                                 "2024-02-01 02:00:00"]),
        ("CRON_TZ=UTC @daily", ["2024-02-01 00:00:00", "2024-02-02 00:00:00",
                                "2024-02-03 00:00:00"]),
        ("CRON_TZ=UTC @weekly", ["2024-02-04 00:00:00", "2024-02-11 00:00:00",
                                 "2024-02-18 00:00:00"]),
        ("CRON_TZ=UTC @monthly", ["2024-02-01 00:00:00", "2024-03-01 00:00:00",
                                  "2024-04-01 00:00:00"]),
        ("CRON_TZ=UTC @annually", ["2025-01-01 00:00:00", "2026-01-01 00:00:00",
                                   "2027-01-01 00:00:00"]),
        ("CRON_TZ=UTC 0 0 12 29 feb ?", ["2024-02-29 12:00:00", "2028-02-29 12:00:00",
                                         "2032-02-29 12:00:00"]),
        ("CRON_TZ=UTC 0 0 9 * * MON-FRI", ["2024-02-01 09:00:00", "2024-02-02 09:00:00",
                                           "2024-02-05 09:00:00"]),
        # Both day fields restricted: either matches (the 13th, or any Friday).
        ("CRON_TZ=UTC 0 0 0 13 * 5", ["2024-02-02 00:00:00", "2024-02-09 00:00:00",
                                      "2024-02-13 00:00:00"]),
        ("CRON_TZ=UTC 0 0 0 * * 7", ["2024-02-04 00:00:00", "2024-02-11 00:00:00",
                                     "2024-02-18 00:00:00"]),  # 7 is Sunday too
        ("CRON_TZ=UTC 0 0 0 1 */6 *", ["2024-07-01 00:00:00", "2025-01-01 00:00:00",
                                       "2025-07-01 00:00:00"]),
        ("CRON_TZ=UTC 0 0 0 1 2/5 *", ["2024-02-01 00:00:00", "2024-07-01 00:00:00",
                                       "2024-12-01 00:00:00"]),
        ("CRON_TZ=America/New_York 0 30 04 * * *", ["2024-02-01 09:30:00",
                                                    "2024-02-02 09:30:00",
                                                    "2024-02-03 09:30:00"]),
    ])
    def test_next_firings(self, spec: str, expected: list[str]) -> None:
        assert fires(spec, T0) == expected

    def test_the_start_of_a_second_is_strictly_after(self) -> None:
        spec = parse("CRON_TZ=UTC * * * * * *")
        assert isinstance(spec, CronSpec)
        assert spec.next_after(utc(2024, 1, 1, 0, 0, 0)) == utc(2024, 1, 1, 0, 0, 1)
        assert spec.next_after(utc(2024, 1, 1, 0, 0, 0) + 0.999) == utc(2024, 1, 1, 0, 0, 1)

    def test_dst_in_a_zone(self) -> None:
        # Europe/Berlin skips 02:00-03:00 on 2024-03-31; a daily 01:30 keeps its wall time.
        assert fires("CRON_TZ=Europe/Berlin 0 30 1 * * *", utc(2024, 3, 30, 12, 0, 0), 2) == [
            "2024-03-31 00:30:00", "2024-03-31 23:30:00"]  # CET, then CEST

    @pytest.mark.usefixtures("local_tz")
    def test_without_a_zone_the_local_time_is_used(self) -> None:
        assert fires("0 0 12 * * *", T0, 1) == ["2024-02-01 03:00:00"]  # noon in UTC+9

    def test_a_date_that_never_comes(self) -> None:
        spec = parse("0 0 0 30 2 *")
        assert isinstance(spec, CronSpec)
        assert spec.next_after(T0) is None

    def test_every(self) -> None:
        assert parse("@every 15s") == Every(15.0)
        assert parse("@every 1h30m") == Every(5400.0)
        assert parse("@every 1.5s") == Every(1.5)
        assert parse("@every 100ms") == Every(0.1)
        assert parse("@every 1500us") == Every(0.001)  # whole milliseconds
        assert parse("CRON_TZ=UTC @every 2m") == Every(120.0)

    @pytest.mark.parametrize(("spec", "message"), [
        ("", "empty"),
        ("* * * *", "expected 5 or 6 fields"),
        ("* * * * * * *", "expected 5 or 6 fields"),
        ("60 * * * * *", "out of range for the second"),
        ("* 24 * * *", "out of range for the hour"),
        ("* * 0 * *", "out of range for the day of month"),
        ("* * * 13 *", "out of range for the month"),
        ("* * * * 8", "out of range for the day of week"),
        ("* * * * bogus", "expected a number in the day of week field"),
        ("5-1 * * * *", "runs backwards"),
        ("*/0 * * * *", "at least 1"),
        ("1,,2 * * * *", "empty item"),
        ("@fortnightly", "unknown descriptor"),
        ("@every 15", "not a duration"),
        ("@every 0s", "above zero"),
        ("@every -1s", "above zero"),
        ("CRON_TZ=Mars/Olympus 0 * * * *", "unknown time zone"),
        ("CRON_TZ=UTC", "not followed by a schedule"),
    ])
    def test_bad_schedules(self, spec: str, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            parse(spec)

    def test_go_durations(self) -> None:
        assert parse_go_duration("0") == 0
        assert parse_go_duration("-1m") == -60
        assert parse_go_duration("2h45m30.5s") == 2 * 3600 + 45 * 60 + 30.5
        assert parse_go_duration("10µs") == pytest.approx(1e-5)
        for bad in ("", "s", "1d", "1s2"):
            with pytest.raises(ValueError, match="not a duration"):
                parse_go_duration(bad)


@pytest.fixture
def local_tz() -> Iterator[None]:
    """The process's local zone set to UTC+9 (no DST) for the test."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def make(tmp_path: Path, schedule: str) -> CronBinding:
    manifest = ComponentManifest("tick", "bindings.cron", "v1", Mark("components/cron.yaml", 1))
    md = ResolvedMetadata([Value("schedule", schedule, Mark("components/cron.yaml", 8))])
    return create(ComponentContext(manifest, md, "app", tmp_path))


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[bytes, Mapping[str, str]]] = []
        self.fail = 0

    async def __call__(self, data: bytes, metadata: Mapping[str, str]) -> None:
        if self.fail:
            self.fail -= 1
            raise OSError("disk full")
        self.events.append((data, metadata))

    async def wait(self, n: int, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while len(self.events) < n:  # the list is filled by the binding's tasks
                await asyncio.sleep(0.01)


class TestBinding:
    async def test_every_fires_with_daprs_metadata(self, tmp_path: Path) -> None:
        b = make(tmp_path, "@every 50ms")
        await b.init()
        rec = Recorder()
        await b.start(rec)
        assert "next" in b.status
        await rec.wait(3)
        await b.close()
        assert b.status == {"schedule": "@every 50ms"}
        data, md = rec.events[0]
        assert data == b""
        assert md["timeZone"] == "Local"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \+0000 UTC",
                            md["readTimeUTC"])
        count = len(rec.events)
        await asyncio.sleep(0.15)
        assert len(rec.events) == count  # nothing after close

    async def test_a_field_schedule_fires_on_the_second(self, tmp_path: Path) -> None:
        b = make(tmp_path, "* * * * * *")
        rec = Recorder()
        await b.start(rec)
        await rec.wait(2, within=5)
        await b.stop()
        [first, second] = [m["readTimeUTC"] for _, m in rec.events[:2]]
        assert first[:19] != second[:19]  # one firing per second

    async def test_a_failed_firing_is_logged_and_the_next_one_comes(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, "edge_runtime.bindings.cron")
        b = make(tmp_path, "@every 30ms")
        rec = Recorder()
        rec.fail = 1
        await b.start(rec)
        await rec.wait(1)
        await b.stop()
        assert "was not stored and is lost: disk full" in caplog.text
        assert b.fires >= 2

    async def test_lifecycle(self, tmp_path: Path) -> None:
        b = make(tmp_path, "@every 1h")
        rec = Recorder()
        await b.start(rec)
        with pytest.raises(BindingError, match="already started"):
            await b.start(rec)
        await b.stop()
        await b.stop()
        await b.start(rec)  # again after a stop
        await b.close()
        await b.close()
        with pytest.raises(BindingError, match="closed"):
            await b.start(rec)
        with pytest.raises(BindingError, match="closed"):
            await b.init()

    @pytest.mark.parametrize(("schedule", "message"), [
        ("", "the schedule is empty"),
        ("every day", "expected 5 or 6 fields"),
        ("0 0 0 31 4 *", "never fires in the next five years"),
    ])
    def test_bad_schedules_name_the_line(self, tmp_path: Path, schedule: str,
                                         message: str) -> None:
        with pytest.raises(MetadataError, match=message) as info:
            make(tmp_path, schedule)
        assert "cron.yaml" in str(info.value)


def test_go_utc() -> None:
    assert go_utc(utc(2024, 5, 1, 10, 0, 0)) == "2024-05-01 10:00:00 +0000 UTC"
    assert go_utc(utc(2024, 5, 1, 10, 0, 0) + 0.25) == "2024-05-01 10:00:00.25 +0000 UTC"
