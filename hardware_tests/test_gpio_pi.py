"""``bindings.gpio`` on a real Raspberry Pi: the scenarios the simulated chip and the gpio-sim
VM run (``tests/support/gpio_scenarios.py``), through a jumper between two header pins."""

from __future__ import annotations

import pytest

from hardware_tests.conftest import PiRig
from tests.support import gpio_scenarios


@pytest.mark.parametrize("scenario", list(gpio_scenarios.SCENARIOS))
async def test_scenario_on_a_pi(scenario: str, rig: PiRig) -> None:
    await gpio_scenarios.SCENARIOS[scenario](rig)


async def test_a_user_outside_the_gpio_group_is_told_what_to_do(rig: PiRig) -> None:
    out = gpio_scenarios.run_as_nobody(gpio_scenarios.PERMISSION_CHECK, rig._path())
    assert "Add it to the gpio group" in out, out
