"""Serial on real hardware: a USB serial adapter with TX jumpered to RX (a loopback plug).

Skipped unless ``EDGE_SERIAL_LOOPBACK`` names the device (prefer its stable name, e.g.
``/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K1234-if00-port0``). Optional:
``EDGE_SERIAL_BAUD`` (115200) and ``EDGE_SERIAL_REPLUG=1`` for the unplug-and-replug step,
which asks the operator to pull the adapter out and put it back within 60 s.

Run: ``PYTHONPATH=. .venv/bin/pytest -q -s hardware_tests/test_serial_loopback.py``.
Each scenario is a list of named steps printed as they pass, so a failure says which one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest

from edge_runtime.bindings.serial import SerialBinding
from edge_runtime.bindings.serial.metadata import SerialSettings

DEVICE = os.environ.get("EDGE_SERIAL_LOOPBACK", "")
BAUD = int(os.environ.get("EDGE_SERIAL_BAUD", "115200"))

pytestmark = pytest.mark.skipif(
    not DEVICE or not Path(DEVICE).exists(),
    reason="no loopback serial adapter: set EDGE_SERIAL_LOOPBACK to a USB serial device whose"
           " TX is jumpered to RX (e.g. /dev/serial/by-id/usb-FTDI_...-if00-port0)",
)


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    started = time.monotonic()
    print(f"  step: {name} ...", end="", flush=True)
    yield
    print(f" ok ({(time.monotonic() - started) * 1000:.0f} ms)")


class Events:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    async def __call__(self, data: bytes, metadata: Mapping[str, str]) -> None:
        self.frames.append(data)

    async def wait(self, n: int, within: float = 10.0) -> list[bytes]:
        async with asyncio.timeout(within):
            while len(self.frames) < n:  # filled by the binding's task
                await asyncio.sleep(0.005)
        return self.frames


@contextlib.asynccontextmanager
async def loopback(**settings: object) -> AsyncIterator[tuple[SerialBinding, Events]]:
    binding = SerialBinding("loopback", SerialSettings(port=DEVICE, baud_rate=BAUD,
                                                       **settings))  # type: ignore[arg-type]
    events = Events()
    await binding.init()
    assert binding.connected, binding.status
    await binding.start(events)
    try:
        yield binding, events
    finally:
        await binding.close()


async def test_lines_written_come_back_as_events() -> None:
    async with loopback(delimiter=b"\r\n") as (binding, events):
        with step("write one line, read it back"):
            await binding.invoke("write", b"hello\r\n", {})
            assert await events.wait(1) == [b"hello"]
        with step("500 lines in order"):
            lines = [b"line %d" % i for i in range(500)]
            await binding.invoke("write", b"".join(line + b"\r\n" for line in lines), {})
            assert (await events.wait(501, within=30))[1:] == lines


async def test_length_frames_and_garbage() -> None:
    async with loopback(framing="length", max_frame_bytes=64) as (binding, events):
        with step("length-prefixed frames, binary payloads"):
            frames = [bytes(range(i, i + 20)) for i in range(0, 200, 20)]
            await binding.invoke("write", b"".join(len(f).to_bytes(2, "big") + f
                                                   for f in frames), {})
            assert await events.wait(len(frames)) == frames
        with step("an oversized frame is counted, the next one still arrives"):
            await binding.invoke("write", b"\x01\x00" + b"z" * 256 + b"\x00\x02ok", {})
            assert (await events.wait(len(frames) + 1))[-1] == b"ok"
            assert binding.reporter.counts.get("oversized") == 1


@pytest.mark.skipif(os.environ.get("EDGE_SERIAL_REPLUG") != "1",
                    reason="set EDGE_SERIAL_REPLUG=1 to run the unplug-and-replug step")
async def test_unplug_and_replug() -> None:
    async with loopback(reconnect_interval=0.2) as (binding, events):
        with step("before: a line comes back"):
            await binding.invoke("write", b"before\n", {})
            await events.wait(1)
        with step("UNPLUG the adapter now (60 s)"):
            async with asyncio.timeout(60):
                while binding.connected:
                    await asyncio.sleep(0.05)
            assert binding.status["connected"] == "false"
        with step("PLUG IT BACK IN now (60 s)"):
            async with asyncio.timeout(60):
                while not binding.connected:
                    await asyncio.sleep(0.05)
        with step("after: reading and writing resume"):
            await binding.invoke("write", b"after\n", {})
            assert (await events.wait(2))[-1] == b"after"
