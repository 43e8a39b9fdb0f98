"""The Raspberry Pi rig for the shared GPIO scenarios: two header pins joined by a jumper.

Nothing runs unless ``EDGE_RUNTIME_HARDWARE`` names ``gpio`` (driving pins on a board whose
wiring we do not know could harm what is connected); then the chip must open and the jumper
must carry a level both ways, or the tests are skipped saying which check failed.
See README.md here for the wiring.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CHIP = os.environ.get("EDGE_RUNTIME_PI_GPIO_CHIP", "gpiochip0")
OUT = int(os.environ.get("EDGE_RUNTIME_PI_GPIO_OUT", "17"))  # the binding drives this one
IN = int(os.environ.get("EDGE_RUNTIME_PI_GPIO_IN", "27"))  # the binding reads this one


class PiRig:
    """``in_line`` is read by the binding and driven from outside through the jumper by
    ``out_line``; ``out_line`` is driven by the binding and read from outside through the
    jumper on ``in_line``. The rig holds a line only between a call and :meth:`release`."""

    chip = CHIP
    in_line = IN
    out_line = OUT

    def __init__(self, data_dir: Path) -> None:
        import gpiod  # the rig drives the other end of the jumper itself

        self.gpiod: Any = gpiod
        self.data_dir = data_dir
        self._driver: Any = None
        self._reader: Any = None

    def _path(self) -> str:
        return CHIP if CHIP.startswith("/") else f"/dev/{CHIP}"

    async def drive(self, *levels: int) -> None:
        g = self.gpiod
        if self._driver is None:
            settings = g.LineSettings(direction=g.line.Direction.OUTPUT)
            self._driver = g.request_lines(self._path(), {OUT: settings},
                                           consumer="edge-runtime-hw-test")
        for level in levels:
            self._driver.set_value(OUT, g.line.Value.ACTIVE if level else g.line.Value.INACTIVE)

    async def level(self) -> int:
        g = self.gpiod
        if self._reader is None:
            settings = g.LineSettings(direction=g.line.Direction.INPUT)
            self._reader = g.request_lines(self._path(), {IN: settings},
                                           consumer="edge-runtime-hw-test")
        return 1 if self._reader.get_value(IN) == g.line.Value.ACTIVE else 0

    async def release(self) -> None:
        for request in (self._driver, self._reader):
            if request is not None:
                request.release()
        self._driver = self._reader = None
        # Leave OUT as an input, so it no longer drives the jumper (a released output keeps
        # driving its last level).
        g = self.gpiod
        g.request_lines(self._path(), {OUT: g.LineSettings(direction=g.line.Direction.INPUT)},
                        consumer="edge-runtime-hw-test").release()


def _jumper_problem(rig: PiRig) -> str:
    import asyncio

    async def check() -> str:
        for level in (1, 0, 1, 0):
            await rig.drive(level)
            await asyncio.sleep(0.01)
            if await rig.level() != level:
                return (f"GPIO{OUT} driven to {level} reads {1 - level} on GPIO{IN}:"
                        " are the two pins joined by a jumper?")
        return ""

    try:
        return asyncio.run(check())
    finally:
        asyncio.run(rig.release())


@pytest.fixture(scope="session")
def pi_hardware(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip (saying why) unless the hardware is there, opted in and wired."""
    if "gpio" not in os.environ.get("EDGE_RUNTIME_HARDWARE", "").split(","):
        pytest.skip("set EDGE_RUNTIME_HARDWARE=gpio on a Pi wired as hardware_tests/README.md"
                    " says to run the GPIO hardware tests")
    try:
        import gpiod
    except ImportError:
        pytest.skip("the gpiod package is not installed (pip install 'edge-runtime[gpio]')")
    path = CHIP if CHIP.startswith("/") else f"/dev/{CHIP}"
    try:
        gpiod.Chip(path).close()
    except OSError as exc:
        pytest.skip(f"cannot open the GPIO chip {path}: {exc}")
    problem = _jumper_problem(PiRig(tmp_path_factory.mktemp("probe")))
    if problem:
        pytest.skip(problem)


@pytest.fixture
async def rig(
    pi_hardware: None,  # noqa: ARG001 - requested for its skip when the hardware is missing
    tmp_path: Path,
) -> AsyncIterator[PiRig]:
    r = PiRig(tmp_path)
    yield r
    await r.release()
