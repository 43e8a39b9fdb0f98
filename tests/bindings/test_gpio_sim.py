"""``bindings.gpio`` on the simulated chip: the shared scenarios (the same ones the gpio-sim
VM and a Pi run), the socket protocol, the event buffer, metadata checks and output errors."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from edge_runtime.bindings import (
    InputBinding,
    InvokeError,
    OutputBinding,
    UnsupportedOperationError,
)
from edge_runtime.bindings.gpio import GpioBinding, GpioOutputs
from edge_runtime.bindings.gpio.backend import MAX_EVENT_BUFFER, LineConfig
from edge_runtime.bindings.gpio.sim import SimChip
from edge_runtime.bindings.gpio.simclient import SimClient, SimCommandError
from edge_runtime.builtin import builtin_registry
from edge_runtime.config.metadata import MetadataError
from edge_runtime.errors import ComponentError
from edge_runtime.observability.metrics import GPIO_EVENTS_LOST
from tests.support import gpio_scenarios
from tests.support.gpio_scenarios import PERMISSION_CHECK, Events, build, run_as_nobody


class SimRig:
    """The shared scenarios' rig on ``chip: sim``: lines 17 (in) and 18 (out), driven and
    read through the chip's socket, as a test would drive a sidecar in another process."""

    chip = "sim"
    in_line = 17
    out_line = 18

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.socket = data_dir / "gpio-sim.sock"

    async def drive(self, *levels: int) -> None:
        async with SimClient(self.socket) as sim:
            await sim.drive(self.in_line, *levels)

    async def level(self) -> int:
        async with SimClient(self.socket) as sim:
            value: int = (await sim.read(self.out_line))["value"]
            return value

    async def release(self) -> None:
        pass


@pytest.mark.parametrize("scenario", list(gpio_scenarios.SCENARIOS))
async def test_shared_scenario(scenario: str, tmp_path: Path) -> None:
    await gpio_scenarios.SCENARIOS[scenario](SimRig(tmp_path))


async def test_sides_follow_the_lines(tmp_path: Path) -> None:
    rig = SimRig(tmp_path)
    both = build(rig, lines="17", outputs="18")
    outs = build(rig, outputs="18")
    ins = build(rig, lines="17")
    assert isinstance(both, GpioBinding)
    assert isinstance(both, InputBinding)
    assert isinstance(outs, GpioOutputs)
    assert not isinstance(outs, InputBinding)
    assert isinstance(ins, InputBinding)
    assert isinstance(ins, OutputBinding)
    assert list(ins.operations()) == ["get"]
    await ins.init()
    try:
        with pytest.raises(UnsupportedOperationError, match="supported: get"):
            await ins.invoke("set", b"", {"line": "17", "value": "1"})
    finally:
        await ins.close()


async def test_output_errors(tmp_path: Path) -> None:
    b = build(SimRig(tmp_path), lines="IN=17", outputs="LED=18")
    await b.init()
    try:
        cases: list[tuple[str, dict[str, str], str]] = [
            ("set", {"value": "1"}, "the metadata line is required"),
            ("set", {"line": "99", "value": "1"}, "no line '99'; its lines: IN, LED"),
            ("set", {"line": "IN", "value": "1"}, "line 17 is an input"),
            ("set", {"line": "LED"}, "the metadata value is required"),
            ("set", {"line": "LED", "value": "2"}, "value '2' is not 1 or 0"),
            ("pulse", {"line": "LED"}, "pulse needs the metadata durationMs"),
            ("pulse", {"line": "LED", "durationMs": "60001"}, "from 1 to 60000"),
        ]
        for operation, metadata, message in cases:
            with pytest.raises(InvokeError, match=message):
                await b.invoke(operation, b"", metadata)
        # Metadata names are case-insensitive, as in Dapr; GPIO18 is the chip's name.
        await b.invoke("set", b"", {"LINE": "gpio18", "Value": "on"})
        async with SimClient(tmp_path / "gpio-sim.sock") as sim:
            assert (await sim.read("GPIO18"))["value"] == 1
            with pytest.raises(SimCommandError, match="is an output of 'edge-runtime:gpio'"):
                await sim.drive(18, 0)
    finally:
        await b.close()


async def test_set_waits_for_a_pulse_on_the_same_line(tmp_path: Path) -> None:
    b = build(SimRig(tmp_path), outputs="18")
    await b.init()
    try:
        pulse = asyncio.create_task(b.invoke("pulse", b"", {"line": "18", "durationMs": "300"}))
        await asyncio.sleep(0.05)
        await b.invoke("set", b"", {"line": "18", "value": "1"})  # queued behind the pulse
        assert pulse.done()
        async with SimClient(tmp_path / "gpio-sim.sock") as sim:
            assert (await sim.read(18))["value"] == 1  # the set came after the pulse's end
    finally:
        await b.close()


async def test_socket_protocol(tmp_path: Path) -> None:
    b = build(SimRig(tmp_path), lines="BUTTON=17", outputs="18", edge="rising")
    await b.init()
    events = Events()
    await b.start(events)
    try:
        async with SimClient(tmp_path / "gpio-sim.sock") as sim:
            answers = await sim.pipeline([
                {"line": 17, "value": 1},
                {"line": "GPIO17", "values": [0, 1, 0]},
                {"op": "read", "line": 17},
                {"op": "lines"},
            ])
            assert answers[0]["events"] == [{"seq": 1, "edge": "rising"}]
            assert answers[1]["events"] == [{"seq": 2, "edge": "rising"}]  # rising only
            assert answers[2] == {"ok": True, "line": 17, "name": "GPIO17", "value": 0,
                                  "direction": "input", "consumer": "edge-runtime:gpio"}
            lines = answers[3]["lines"]
            assert len(lines) == 64
            assert lines[18]["direction"] == "output"
            assert lines[0]["direction"] == "unused"
            for bad, message in [
                ({"line": 64, "value": 1}, "has no line 64"),
                ({"line": "NOPE", "value": 1}, "no line named 'NOPE'"),
                ({"line": 17, "value": 2}, "a level is 0 or 1"),
                ({"op": "explode", "line": 17}, "unknown op"),
                ({"value": 1}, "needs \"line\""),
            ]:
                with pytest.raises(SimCommandError, match=message):
                    await sim.command(bad)
            with pytest.raises(SimCommandError, match="a command is a JSON object"):
                await sim.command([1])  # type: ignore[arg-type]
        await events.wait(2)
    finally:
        await b.close()
    assert not (tmp_path / "gpio-sim.sock").exists()  # the last user removed it


async def test_a_full_buffer_drops_the_oldest_and_the_gap_is_counted(tmp_path: Path) -> None:
    chip = SimChip()
    request = chip.request([5], LineConfig(edge="both"), "test")
    chip.drive(5, [1, 0] * (MAX_EVENT_BUFFER // 2 + 5))  # 10 more than the buffer holds
    events = request.read_events()
    assert len(events) == MAX_EVENT_BUFFER
    assert [e.seq for e in events] == list(range(11, MAX_EVENT_BUFFER + 11))
    await chip.close()

    before = GPIO_EVENTS_LOST.labels("gpio")._value.get()
    b = build(SimRig(tmp_path), lines="17")
    await b.init()
    got = Events()
    await b.start(got)
    try:
        async with SimClient(tmp_path / "gpio-sim.sock") as sim:
            await sim.drive(17, 1)
            await got.wait(1)
            # One command makes its events before the binding can read: the buffer overflows.
            await sim.drive(17, *[0, 1] * (MAX_EVENT_BUFFER // 2 + 3))
        bodies = await got.wait(1 + MAX_EVENT_BUFFER)
        await got.settle(0.2)
    finally:
        await b.close()
    assert len(bodies) == 1 + MAX_EVENT_BUFFER
    assert bodies[1]["seq"] == 8  # seqs 2..7 were dropped by the chip
    assert GPIO_EVENTS_LOST.labels("gpio")._value.get() - before == 6


async def test_handler_failures_are_retried_then_counted(tmp_path: Path) -> None:
    attempts: list[int] = []

    async def failing(data: bytes, metadata: Mapping[str, str]) -> None:
        attempts.append(json.loads(data)["seq"])
        raise OSError("disk full")

    before = GPIO_EVENTS_LOST.labels("gpio")._value.get()
    b = build(SimRig(tmp_path), lines="17")
    await b.init()
    await b.start(failing)
    try:
        async with SimClient(tmp_path / "gpio-sim.sock") as sim:
            await sim.drive(17, 1)
        for _ in range(600):
            if GPIO_EVENTS_LOST.labels("gpio")._value.get() > before:
                break
            await asyncio.sleep(0.01)
    finally:
        await b.close()
    assert attempts == [1] * 5
    assert GPIO_EVENTS_LOST.labels("gpio")._value.get() - before == 1


async def test_edges_are_watched_only_while_started(tmp_path: Path) -> None:
    b = build(SimRig(tmp_path), lines="17")
    await b.init()
    try:
        async with SimClient(tmp_path / "gpio-sim.sock") as sim:
            assert await sim.drive(17, 1, 0) == []  # before start
            got = Events()
            await b.start(got)
            assert len(await sim.drive(17, 1)) == 1
            await b.stop()
            assert len(got.bodies) == 1  # stop handed over what was read
            assert await sim.drive(17, 0, 1) == []
    finally:
        await b.close()


class TestMetadata:
    def test_problems_carry_file_and_line(self, tmp_path: Path) -> None:
        rig = SimRig(tmp_path)
        with pytest.raises(MetadataError) as info:
            build(rig, lines="BUTTON=, 17", outputs="17", edge="sideways",
                  debounce="2h")
        text = str(info.value)
        assert "components/gpio.yaml:11" in text  # edge
        assert "expected one of rising, falling, both, got 'sideways'" in text
        assert "debounce" in text
        with pytest.raises(MetadataError) as info:
            build(rig, lines="BUTTON=, 17")
        assert "'BUTTON=' is not a line" in str(info.value)
        with pytest.raises(MetadataError, match="line 17 is given twice"):
            build(rig, lines="17", outputs="17")
        with pytest.raises(MetadataError, match="the name 'A' is given to two lines"):
            build(rig, lines="A=17", outputs="A=18")
        with pytest.raises(MetadataError, match="give input lines"):
            build(rig)
        with pytest.raises(MetadataError, match="give the chip: sim, gpiochip0"):
            build(rig, chip=" ", lines="1")

    def test_registered_lazily_with_its_metadata(self) -> None:
        registration = builtin_registry().lookup("bindings.gpio")
        cls = registration.factory.metadata_class  # type: ignore[attr-defined]
        assert {"chip", "lines", "outputs", "edge", "bias", "activeLow", "debounce",
                "initialValue", "direction", "route"} <= {
            f.metadata["name"] for f in cls.__dataclass_fields__.values() if f.metadata}


def test_importing_the_binding_does_not_import_gpiod() -> None:
    code = ("import sys, edge_runtime.builtin, edge_runtime.bindings.gpio;"
            " print('gpiod' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


async def test_a_missing_chip_says_so(tmp_path: Path) -> None:
    b = build(SimRig(tmp_path), chip="/dev/gpiochip99", lines="0")
    with pytest.raises(ComponentError, match="no GPIO chip /dev/gpiochip99"):
        await b.init()
    await b.close()
    not_chip = tmp_path / "plain-file"
    not_chip.write_text("")
    b = build(SimRig(tmp_path), chip=str(not_chip), lines="0")
    with pytest.raises(ComponentError, match="is not a GPIO chip"):
        await b.init()
    b = build(SimRig(tmp_path), chip="no-such-label", lines="0")
    with pytest.raises(ComponentError, match="no GPIO chip labelled 'no-such-label'"):
        await b.init()


def test_a_missing_permission_names_the_gpio_group(tmp_path: Path) -> None:
    """As an unprivileged user (nobody), opening a chip device it may not read."""
    device = tmp_path / "gpiochip7"
    device.write_text("")
    device.chmod(0o600)
    out = run_as_nobody(PERMISSION_CHECK, str(device))
    assert "permission denied opening" in out, out
    assert "may not use GPIO. Add it to the gpio group" in out
    assert "usermod -aG gpio" in out
