"""Runs inside the gpio-sim VM (``python -m tests.gpio_vm.guest``): makes a gpio-sim chip
through configfs, runs every shared GPIO scenario against it with the real ``gpiod`` package,
and prints one result line per scenario for the host's tests to check.

Result lines: ``@@gpio-vm@@ result <name> ok`` or ``@@gpio-vm@@ result <name> fail <JSON
string: the traceback>``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import traceback
from pathlib import Path

from edge_runtime.bindings.gpio import kernel
from tests.gpio_vm.vm import MARK
from tests.support import gpio_scenarios
from tests.support.gpio_scenarios import build, run_as_nobody

CONFIGFS = Path("/sys/kernel/config/gpio-sim")
LABEL = "edge-sim"


class GpioSimRig:
    """Line 0 (``EDGE_IN``) is read by the binding and driven through gpio-sim's ``pull``;
    line 1 (``EDGE_OUT``) is driven by the binding and read through gpio-sim's ``value``."""

    in_line = 0
    out_line = 1

    def __init__(self, device: str, sysfs: Path, data_dir: Path) -> None:
        self.chip = device
        self.sysfs = sysfs
        self.data_dir = data_dir

    async def drive(self, *levels: int) -> None:
        pull = self.sysfs / f"sim_gpio{self.in_line}" / "pull"
        for level in levels:
            pull.write_text("pull-up" if level else "pull-down")

    async def level(self) -> int:
        return int((self.sysfs / f"sim_gpio{self.out_line}" / "value").read_text())

    async def release(self) -> None:
        pass


def make_chip() -> tuple[str, Path]:
    """A live gpio-sim chip with 8 lines; its device path and sysfs folder."""
    chip = CONFIGFS / "edge"
    bank = chip / "bank0"
    bank.mkdir(parents=True)
    (bank / "num_lines").write_text("8")
    (bank / "label").write_text(LABEL)
    for offset, name in ((0, "EDGE_IN"), (1, "EDGE_OUT")):
        (bank / f"line{offset}").mkdir()
        (bank / f"line{offset}" / "name").write_text(name)
    (chip / "live").write_text("1")
    chip_name = (bank / "chip_name").read_text().strip()
    dev_name = (chip / "dev_name").read_text().strip()
    return f"/dev/{chip_name}", Path("/sys/devices/platform") / dev_name / chip_name


async def chip_names(rig: GpioSimRig) -> None:
    """The chip by path, by device name and by label; lines by name."""
    by_path = kernel.open_chip(rig.chip)
    by_name = kernel.open_chip(Path(rig.chip).name)
    by_label = kernel.open_chip(LABEL)
    try:
        assert by_path.description == by_name.description == by_label.description
        assert LABEL in by_label.description
    finally:
        for chip in (by_path, by_name, by_label):
            await chip.close()
    b = build(rig, chip=LABEL, lines="EDGE_IN", outputs="LAMP=EDGE_OUT")
    await b.init()
    try:
        await b.invoke("set", b"", {"line": "lamp", "value": "1"})
        assert await rig.level() == 1
        await rig.drive(0)
        got = json.loads((await b.invoke("get", b"", {"line": "EDGE_IN"})).data)
        assert got == {"line": 0, "name": "EDGE_IN", "value": 0}
    finally:
        await b.close()


async def permission(rig: GpioSimRig) -> None:
    """As user nobody, the chip device (root's, 0600) is refused with the gpio group hint."""
    out = run_as_nobody(gpio_scenarios.PERMISSION_CHECK, rig.chip)
    assert "permission denied opening" in out, out
    assert "Add it to the gpio group" in out, out


async def main() -> int:
    device, sysfs = make_chip()
    scenarios = {**gpio_scenarios.SCENARIOS, "chip_names": chip_names, "permission": permission}
    for name, scenario in scenarios.items():
        with tempfile.TemporaryDirectory() as data_dir:
            rig = GpioSimRig(device, sysfs, Path(data_dir))
            try:
                await scenario(rig)  # type: ignore[arg-type]
            except BaseException:  # noqa: BLE001 - every failure is reported to the host
                print(f"{MARK} result {name} fail {json.dumps(traceback.format_exc())}",
                      flush=True)
            else:
                print(f"{MARK} result {name} ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
