"""``bindings.gpio`` with the real ``gpiod`` package against a kernel gpio-sim chip, in a qemu
VM booted once per session (``vm.py`` says where the kernel comes from; without one these
tests skip and say why). Each test checks one scenario the guest ran: the same scenarios the
simulated chip runs in ``tests/bindings/test_gpio_sim.py`` and a Pi runs in
``hardware_tests``, plus chip lookup by path, device name and label, and the permission
message for a user outside the gpio group."""

from __future__ import annotations

import pytest

from tests.support.gpio_scenarios import SCENARIOS

pytestmark = pytest.mark.slow

KERNEL_ONLY = ("chip_names", "permission")


@pytest.mark.parametrize("scenario", [*SCENARIOS, *KERNEL_ONLY])
def test_scenario_on_a_kernel_gpio_sim_chip(scenario: str, gpio_vm: dict[str, str]) -> None:
    assert scenario in gpio_vm, f"the guest did not run {scenario}: {sorted(gpio_vm)}"
    assert gpio_vm[scenario] == "", gpio_vm[scenario]
