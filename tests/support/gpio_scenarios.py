"""GPIO scenarios run unchanged on three rigs: the simulated chip (``chip: sim``, in the normal
test run), a kernel gpio-sim chip in a qemu VM (``tests/gpio_vm``), and a Raspberry Pi with a
jumper between two lines (``hardware_tests``). They build the real ``bindings.gpio`` component
from metadata, as the runtime does, and assert what the app would see.

A :class:`Rig` wires one input line and one output line of the chip to the outside world:
``drive`` sets the input line's physical level from outside (a button, a jumper from another
pin, gpio-sim's ``pull``), ``level`` reads the output line's physical level from outside.
Scenarios never assert on timings; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest

from edge_runtime.bindings.gpio import create
from edge_runtime.config.manifest import ComponentManifest, Mark
from edge_runtime.config.metadata import ResolvedMetadata, Value
from edge_runtime.errors import ComponentError
from edge_runtime.registry import ComponentContext

WAIT_S = 30.0  # generous: the VM runs under software emulation


class Rig(Protocol):
    """The chip and the two lines a scenario uses, and the outside world around them."""

    chip: str  # the binding's metadata chip
    in_line: int  # offset of the line the binding reads
    out_line: int  # offset of the line the binding drives
    data_dir: Path

    async def drive(self, *levels: int) -> None:
        """Set the input line's physical level to each of ``levels`` in turn, quickly."""
        ...

    async def level(self) -> int:
        """The output line's physical level, seen from outside."""
        ...

    async def release(self) -> None:
        """Stop driving and reading (give the lines back to the binding)."""
        ...


def build(rig: Rig, name: str = "gpio", **metadata: str) -> Any:
    """A ``bindings.gpio`` component for ``rig``'s chip, not yet initialised."""
    values = [Value(k, v, Mark("components/gpio.yaml", 8 + i))
              for i, (k, v) in enumerate({"chip": rig.chip, **metadata}.items())]
    manifest = ComponentManifest(name, "bindings.gpio", "v1", Mark("components/gpio.yaml", 1))
    return create(ComponentContext(manifest, ResolvedMetadata(values), "app", rig.data_dir))


class Events:
    """An input handler keeping the decoded event bodies and their metadata."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.metadata: list[Mapping[str, str]] = []

    async def __call__(self, data: bytes, metadata: Mapping[str, str]) -> None:
        self.bodies.append(json.loads(data))
        self.metadata.append(dict(metadata))

    async def wait(self, n: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + WAIT_S
        while len(self.bodies) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert len(self.bodies) >= n, f"{len(self.bodies)} of {n} events: {self.bodies}"
        return self.bodies

    async def settle(self, quiet_s: float = 0.6) -> list[dict[str, Any]]:
        """The events once none arrived for ``quiet_s`` (debounce timers have fired)."""
        seen = -1
        while seen != len(self.bodies):
            seen = len(self.bodies)
            await asyncio.sleep(quiet_s)
        return self.bodies


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.01)


async def edges(rig: Rig) -> None:
    """Both edges, in order, named, with kernel monotonic timestamps and sequence numbers."""
    b = build(rig, lines=f"BUTTON={rig.in_line}", edge="both")
    await b.init()
    try:
        await rig.drive(0)
        events = Events()
        before = time.monotonic_ns()
        await b.start(events)
        for i in range(10):  # one edge at a time: a kernel may merge edges faster than its
            await rig.drive(1)  # interrupt handling (gpio-sim under emulation does)
            await events.wait(2 * i + 1)
            await rig.drive(0)
            got = await events.wait(2 * i + 2)
        after = time.monotonic_ns()
        await b.stop()
    finally:
        await b.close()
        await rig.release()
    assert [e["edge"] for e in got] == ["rising", "falling"] * 10
    assert [e["value"] for e in got] == [1, 0] * 10
    assert {(e["line"], e["name"]) for e in got} == {(rig.in_line, "BUTTON")}
    seqs = [e["seq"] for e in got]
    assert seqs == list(range(seqs[0], seqs[0] + 20))
    stamps = [e["timestampNs"] for e in got]
    assert stamps == sorted(stamps)
    assert before <= stamps[0]  # CLOCK_MONOTONIC, not the wall clock
    assert stamps[-1] <= after
    assert events.metadata[0] == {"line": str(rig.in_line), "name": "BUTTON", "edge": "rising"}


async def rising_active_low(rig: Rig) -> None:
    """``activeLow``: a physical fall is a logical rise; ``edge: rising`` drops the rest."""
    b = build(rig, lines=str(rig.in_line), edge="rising", activeLow="true")
    await b.init()
    try:
        await rig.drive(1)  # idle high: logical 0
        events = Events()
        await b.start(events)
        line = {"line": str(rig.in_line)}
        for i in range(3):
            await rig.drive(0)
            await events.wait(i + 1)
            await rig.drive(1)

            async def idle() -> bool:
                return json.loads((await b.invoke("get", b"", line)).data)["value"] == 0

            await _until(idle, "the line is back to its idle level")
        got = await events.settle(0.3)
        reading = await b.invoke("get", b"", line)
        await b.stop()
    finally:
        await b.close()
        await rig.release()
    assert len(got) == 3, got
    assert all(e["edge"] == "rising" and e["value"] == 1 for e in got)
    assert json.loads(reading.data)["value"] == 0  # physical high, active low


async def debounce(rig: Rig) -> None:
    """A bounce yields one event with the settled value; a bounce back to the settled
    level yields none."""
    b = build(rig, lines=f"KEY={rig.in_line}", debounce="200ms")
    await b.init()
    try:
        await rig.drive(0)
        # The debouncer runs from the request on: let it settle at 0 before the bounces.
        await asyncio.sleep(1.0)
        events = Events()
        await b.start(events)
        await rig.drive(1, 0, 1, 0, 1)
        await events.wait(1)
        first = list(await events.settle())
        await rig.drive(0, 1, 0)
        await events.wait(2)
        second = list(await events.settle())
        await rig.drive(1, 0)  # ends where it was settled: no edge
        third = list(await events.settle(1.0))
        await b.stop()
    finally:
        await b.close()
        await rig.release()
    assert [(e["edge"], e["value"]) for e in first] == [("rising", 1)], first
    assert [(e["edge"], e["value"]) for e in second] == [("rising", 1), ("falling", 0)], second
    assert third == second, third


async def outputs(rig: Rig) -> None:
    """``initialValue``, ``set``, ``get`` and ``pulse`` on an output line, read from outside."""
    b = build(rig, outputs=f"LED={rig.out_line}", initialValue="1")
    await b.init()
    try:
        assert list(b.operations()) == ["get", "set", "pulse"]
        assert await rig.level() == 1
        assert await b.invoke("set", b"", {"line": "LED", "value": "0"}) is None
        assert await rig.level() == 0
        await b.invoke("set", b"", {"line": str(rig.out_line), "value": "1"})
        got = await b.invoke("get", b"", {"line": "led"})
        assert json.loads(got.data) == {"line": rig.out_line, "name": "LED", "value": 1}
        assert got.metadata == {"value": "1"}
        pulse = asyncio.create_task(
            b.invoke("pulse", b"", {"line": "LED", "value": "0", "durationMs": "1500"}))

        async def low() -> bool:
            return await rig.level() == 0 or pulse.done()

        await _until(low, "the pulse drove the line low")
        assert not pulse.done()
        assert await pulse is None
        assert await rig.level() == 1
    finally:
        await b.close()
        await rig.release()


async def active_low_outputs_and_bias(rig: Rig) -> None:
    """An active-low output drives the inverse; a pulled-up input reads 1 (once nothing
    drives it)."""
    out = build(rig, "out", outputs=str(rig.out_line), activeLow="true")
    await out.init()
    try:
        assert await rig.level() == 1  # logical 0, active low
        await out.invoke("set", b"", {"line": str(rig.out_line), "value": "1"})
        assert await rig.level() == 0
    finally:
        await out.close()
        await rig.release()  # on a Pi this also stops the jumpered line driving the input
    inp = build(rig, "in", lines=str(rig.in_line), bias="pull-up")
    await inp.init()
    try:
        got = await inp.invoke("get", b"", {"line": str(rig.in_line)})
        assert json.loads(got.data)["value"] == 1
    finally:
        await inp.close()
        await rig.release()


async def errors(rig: Rig) -> None:
    """A line in use names its user; an unknown line and a missing chip say what is wrong."""
    first = build(rig, "first", lines=str(rig.in_line))
    second = build(rig, "second", lines=str(rig.in_line))
    await first.init()
    try:
        with pytest.raises(ComponentError, match="in use") as info:
            await second.init()
        assert "edge-runtime:first" in str(info.value)
    finally:
        await second.close()
        await first.close()
    unknown = build(rig, "unknown", lines="NO_SUCH_LINE")
    with pytest.raises(ComponentError, match="no line"):
        await unknown.init()
    if rig.chip != "sim":
        missing = build(rig, "missing", chip="/dev/gpiochip99", lines="0")
        with pytest.raises(ComponentError, match="no GPIO chip /dev/gpiochip99"):
            await missing.init()


PERMISSION_CHECK = """
import sys
from edge_runtime.bindings.gpio import kernel
try:
    kernel.open_chip(sys.argv[1])
except kernel.ChipPermissionError as exc:
    print(exc)
"""


def run_as_nobody(code: str, *args: str) -> str:
    """Run ``code`` as user nobody with this tree and gpiod importable; its stdout. Skips
    when this machine cannot (not root, or no interpreter nobody may run)."""
    import gpiod  # the kernel path needs it; the sim tests do not

    paths = os.pathsep.join([str(Path(__file__).parents[2]),
                             str(Path(gpiod.__file__).parents[1])])
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for python in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        try:
            done = subprocess.run([python, "-c", code, *args], capture_output=True, text=True,
                                  user=65534, timeout=120, check=False,
                                  env={"PYTHONPATH": paths, "PATH": "/usr/bin:/bin"},
                                  cwd="/")
        except (PermissionError, FileNotFoundError):
            continue
        if done.returncode == 0:
            return done.stdout
    pytest.skip("no Python interpreter here that user nobody may run (or not root)")


SCENARIOS: dict[str, Callable[[Rig], Awaitable[None]]] = {
    "edges": edges,
    "rising_active_low": rising_active_low,
    "debounce": debounce,
    "outputs": outputs,
    "active_low_outputs_and_bias": active_low_outputs_and_bias,
    "errors": errors,
}
