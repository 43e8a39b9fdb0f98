"""``bindings.serial`` against real ptys from socat: frames, garbage, writes, unplug and replug.

Every test gets a fresh pty pair (``pty``); the binding opens ``pty.a``, the test plays the
device on ``pty.b``. Unplugging is ``pty.kill()`` (socat dies, the binding's reads fail) and
plugging back in is ``pty.start()`` (a new pair at the same link names).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path

import pytest

from edge_runtime.bindings import BindingError, InvokeError
from edge_runtime.bindings.serial import SerialBinding, create
from edge_runtime.bindings.storing import STORE_ATTEMPTS
from edge_runtime.config.manifest import ComponentManifest, Mark
from edge_runtime.config.metadata import ResolvedMetadata, Value
from edge_runtime.observability import metrics as M
from edge_runtime.registry import ComponentContext
from tests.support.serialpty import PtyPair

WAIT = 10.0


def make(port: Path, tmp_path: Path, name: str = "uart", **metadata: str) -> SerialBinding:
    manifest = ComponentManifest(name, "bindings.serial", "v1", Mark("components/uart.yaml", 1))
    values = {"port": str(port), "reconnectInterval": "50ms", **metadata}
    md = ResolvedMetadata([Value(k, v, Mark("components/uart.yaml", 8 + i))
                           for i, (k, v) in enumerate(values.items())])
    return create(ComponentContext(manifest, md, "app", tmp_path))


class Events:
    """An input handler recording ``(data, metadata)``; ``fail`` makes calls raise,
    ``gate`` holds them."""

    def __init__(self) -> None:
        self.got: list[tuple[bytes, Mapping[str, str]]] = []
        self.fail = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self, data: bytes, metadata: Mapping[str, str]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise OSError("disk I/O error")
        self.got.append((data, metadata))

    @property
    def frames(self) -> list[bytes]:
        return [d for d, _ in self.got]

    async def wait(self, n: int) -> list[bytes]:
        await until(lambda: len(self.got) >= n, f"{n} frames")
        return self.frames


async def until(check: Callable[[], bool], what: str, within: float = WAIT) -> None:
    """Poll ``check`` (state that signals no event: counters, flags) until true."""
    async with asyncio.timeout(within):
        while not check():
            await asyncio.sleep(0.01)


def dropped(name: str, reason: str) -> float:
    value = M.REGISTRY.get_sample_value(
        "edge_runtime_serial_frames_dropped_total", {"binding": name, "reason": reason})
    return value or 0.0


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[PtyPair]:
    pair = PtyPair(tmp_path / "pty")
    pair.start()
    yield pair
    pair.kill()


@pytest.fixture
async def bindings(tmp_path: Path) -> AsyncIterator[list[SerialBinding]]:
    """Bindings a test made; closed at the end (then no serial task may be left)."""
    made: list[SerialBinding] = []
    yield made
    for b in made:
        await b.close()
    left = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("serial[")]
    assert not left, left


async def started(bindings: list[SerialBinding], binding: SerialBinding) -> Events:
    bindings.append(binding)
    await binding.init()
    events = Events()
    await binding.start(events)
    return events


async def test_lines_arrive_in_order_with_port_and_seq(
    pty: PtyPair, tmp_path: Path, bindings: list[SerialBinding]
) -> None:
    b = make(pty.a, tmp_path, delimiter="\\r\\n")
    events = await started(bindings, b)
    assert b.status == {"connected": "true", "port": str(pty.a)}
    pty.write(b"t=21.5\r\nt=21.6\r")
    pty.write(b"\n" + b"".join(b"n=%d\r\n" % i for i in range(200)))
    frames = await events.wait(202)
    assert frames == [b"t=21.5", b"t=21.6"] + [b"n=%d" % i for i in range(200)]
    assert [m["seq"] for _, m in events.got[:3]] == ["1", "2", "3"]
    assert events.got[0][1]["port"] == str(pty.a)


async def test_length_prefixed_frames(
    pty: PtyPair, tmp_path: Path, bindings: list[SerialBinding]
) -> None:
    events = await started(bindings, make(pty.a, tmp_path, framing="length",
                                          maxFrameBytes="64"))
    frames = [b"\x00\x01\x02", b"", b"x" * 64, bytes(range(10))]
    pty.write(b"".join(len(f).to_bytes(2, "big") + f for f in frames))
    assert await events.wait(3) == [f for f in frames if f]


async def test_fixed_and_raw_frames(
    pty: PtyPair, tmp_path: Path, bindings: list[SerialBinding]
) -> None:
    b = make(pty.a, tmp_path, framing="fixed", frameSize="4", idleTimeout="100ms")
    fixed = await started(bindings, b)
    pty.write(b"abcdefgh")
    assert await fixed.wait(2) == [b"abcd", b"efgh"]
    pty.write(b"xy")  # half a frame, then the line goes quiet
    await until(lambda: b.reporter.counts.get("truncated") == 1, "the truncated frame", 5)
    pty.write(b"1234")
    assert await fixed.wait(3) == [b"abcd", b"efgh", b"1234"]  # in step after the gap


async def test_raw_frames_end_at_an_idle_gap(
    tmp_path: Path, bindings: list[SerialBinding]
) -> None:
    with PtyPair(tmp_path / "raw") as pair:
        events = await started(bindings, make(pair.a, tmp_path, name="raw", framing="raw",
                                              idleTimeout="100ms"))
        pair.write(b"\x01\x03\x00")
        pair.write(b"\x10\x00\x02")
        await events.wait(1)
        pair.write(b"\xff")
        assert await events.wait(2) == [b"\x01\x03\x00\x10\x00\x02", b"\xff"]


async def test_garbage_is_counted_and_logged_and_reading_goes_on(
    pty: PtyPair, tmp_path: Path, bindings: list[SerialBinding],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "edge_runtime.bindings.serial")
    b = make(pty.a, tmp_path, name="garbage", maxFrameBytes="16", encoding="utf-8")
    events = await started(bindings, b)
    before = (dropped("garbage", "oversized"), dropped("garbage", "garbled"))
    pty.write(b"ok 1\n" + b"Z" * 100 + b"\n" + b"\xff\xfe\xfd\n" * 50 + "ok é\n".encode())
    assert await events.wait(2) == [b"ok 1", "ok é".encode()]
    assert dropped("garbage", "oversized") == before[0] + 1
    assert dropped("garbage", "garbled") == before[1] + 50
    assert b.reporter.counts == {"oversized": 1, "garbled": 50}
    warnings = [r.getMessage() for r in caplog.records if "serial garbage" in r.getMessage()]
    assert len(warnings) == 2  # one per reason: fifty garbled lines do not flood the log
    assert "more than 16 bytes" in warnings[0]
    assert "not utf-8" in warnings[1]


async def test_a_frame_the_inbox_refuses_for_a_moment_is_offered_again(
    pty: PtyPair, tmp_path: Path, bindings: list[SerialBinding]
) -> None:
    b = make(pty.a, tmp_path, name="refused-once")
    events = await started(bindings, b)
    events.fail = STORE_ATTEMPTS - 1  # refused for 0.1 + 0.2 + 0.4 + 0.8 s, then taken
    pty.write(b"first\nsecond\n")
    assert await events.wait(2) == [b"first", b"second"]
    assert b.reporter.counts == {}


async def test_a_frame_the_inbox_keeps_refusing_is_counted_and_the_next_one_arrives(
    pty: PtyPair, tmp_path: Path, bindings: list[SerialBinding]
) -> None:
    b = make(pty.a, tmp_path, name="refused")
    events = await started(bindings, b)
    events.fail = STORE_ATTEMPTS
    pty.write(b"lost\nkept\n")
    assert await events.wait(1) == [b"kept"]
    assert b.reporter.counts == {"not_stored": 1}


async def test_stop_commits_frames_already_read_first(
    pty: PtyPair, tmp_path: Path, bindings: list[SerialBinding]
) -> None:
    b = make(pty.a, tmp_path)
    events = await started(bindings, b)
    events.gate = asyncio.Event()
    pty.write(b"a\nb\nc\n")
    await until(lambda: b.seq >= 1, "the first frame in the handler")
    stopping = asyncio.create_task(b.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()
    events.gate.set()
    await asyncio.wait_for(stopping, WAIT)
    assert events.frames == [b"a", b"b", b"c"]
    pty.write(b"while stopped\n")
    again = Events()
    await b.start(again)  # the bytes waited in the port: read after the restart
    assert await again.wait(1) == [b"while stopped"]


async def test_write(pty: PtyPair, tmp_path: Path, bindings: list[SerialBinding]) -> None:
    b = make(pty.a, tmp_path, encoding="latin-1")
    bindings.append(b)
    await b.init()
    assert list(b.operations()) == ["write"]
    assert await b.invoke("write", b"AT\r\n", {}) is None
    assert pty.read(4) == b"AT\r\n"
    await b.invoke("write", b'"caf\\u00e9\\r"', {"encoding": "text"})  # as HTTP sends it
    assert pty.read(5) == "café\r".encode("latin-1")
    await b.invoke("write", b'"AAEC/w=="', {"Encoding": "base64"})
    assert pty.read(4) == b"\x00\x01\x02\xff"
    await b.invoke("write", b"AAEC/w==", {"encoding": "base64"})  # raw base64 (gRPC)
    assert pty.read(4) == b"\x00\x01\x02\xff"
    big = bytes(range(256)) * 256  # more than the pty takes at once: waits for room
    reading = asyncio.create_task(asyncio.to_thread(pty.read, len(big)))
    await b.invoke("write", big, {})
    assert await reading == big
    for data, md, message in [
        (b"1", {"encoding": "text"}, "must be a JSON string"),
        (b"!!", {"encoding": "base64"}, "not valid base64"),
        (b"x", {"encoding": "hex"}, "raw, text or base64"),
        (b'"\\u20ac"', {"encoding": "text"}, "cannot be written as iso8859-1"),
    ]:
        with pytest.raises(InvokeError, match=message):
            await b.invoke("write", data, md)


async def test_a_write_nobody_reads_times_out(
    pty: PtyPair, tmp_path: Path, bindings: list[SerialBinding]
) -> None:
    b = make(pty.a, tmp_path, writeTimeout="200ms")
    bindings.append(b)
    await b.init()
    with pytest.raises(InvokeError, match=r"of 4194304 bytes written .* in 0.2s"):
        await b.invoke("write", b"x" * 4 * 1024 * 1024, {})


async def test_unplug_and_replug(
    pty: PtyPair, tmp_path: Path, bindings: list[SerialBinding],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "edge_runtime.bindings.serial")
    b = make(pty.a, tmp_path, name="hotplug")
    events = await started(bindings, b)
    connected = M.SERIAL_CONNECTED.labels("hotplug")
    losses = M.SERIAL_DISCONNECTS.labels("hotplug")._value.get()
    pty.write(b"before\nhalf a li")
    await events.wait(1)
    pty.kill()  # the adapter is pulled out
    await until(lambda: not b.connected, "the loss")
    assert connected._value.get() == 0
    assert M.SERIAL_DISCONNECTS.labels("hotplug")._value.get() == losses + 1
    assert b.reporter.counts == {"truncated": 1}  # the half line is gone, and counted
    assert b.status["connected"] == "false"
    assert b.status["error"]
    with pytest.raises(InvokeError, match="is not connected"):
        await b.invoke("write", b"x", {})
    await asyncio.sleep(0.2)  # a few retries fail while it is out
    pty.start()  # plugged back in: a new pty at the same name
    await until(lambda: b.connected, "the reconnect")
    assert connected._value.get() == 1
    pty.write(b"after\n")
    assert await events.wait(2) == [b"before", b"after"]
    await b.invoke("write", b"hi", {})
    assert pty.read(2) == b"hi"
    text = caplog.text
    assert "went away" in text
    assert "is open again; reading on" in text


async def test_a_port_missing_at_start_is_opened_when_it_appears(
    tmp_path: Path, bindings: list[SerialBinding], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "edge_runtime.bindings.serial")
    pair = PtyPair(tmp_path / "late")
    b = make(pair.a, tmp_path, name="late")
    events = await started(bindings, b)  # init does not fail: the sidecar starts anyway
    assert not b.connected
    assert "does not exist (not plugged in?); trying again every 0.05s" in caplog.text
    with pair:
        await until(lambda: b.connected, "the late port")
        pair.write(b"hello\n")
        assert await events.wait(1) == [b"hello"]


async def test_a_port_is_opened_exclusively(
    pty: PtyPair, tmp_path: Path, bindings: list[SerialBinding]
) -> None:
    first = make(pty.a, tmp_path, name="first")
    second = make(pty.a, tmp_path, name="second")
    bindings += [first, second]
    await first.init()
    await second.init()
    assert first.connected
    assert not second.connected
    assert "in use by another process" in second.status["error"]


async def test_lifecycle_errors(
    pty: PtyPair, tmp_path: Path, bindings: list[SerialBinding]
) -> None:
    b = make(pty.a, tmp_path)
    events = await started(bindings, b)
    with pytest.raises(BindingError, match="already started"):
        await b.start(events)
    await b.close()
    await b.close()
    with pytest.raises(BindingError, match="is closed"):
        await b.invoke("write", b"x", {})
    with pytest.raises(BindingError, match="is closed"):
        await b.start(events)
