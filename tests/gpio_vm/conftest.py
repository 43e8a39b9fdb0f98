"""One gpio-sim VM boot per test session, shared by every test in this folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.gpio_vm import vm

REPO = Path(__file__).resolve().parents[2]


def _results(console: str) -> dict[str, str]:
    """``{scenario: "" (passed) or the guest's traceback}`` from the console."""
    out: dict[str, str] = {}
    for line in console.splitlines():
        if line.startswith(f"{vm.MARK} result "):
            name, status, *rest = line.split(" ", 4)[2:]
            out[name] = "" if status == "ok" else json.loads(rest[0]) if rest else status
    return out


@pytest.fixture(scope="session")
def gpio_vm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Boot the VM once, run every scenario in it; skip (saying why) when it cannot."""
    missing = vm.available_tools()
    if missing:
        pytest.skip(f"no gpio-sim VM: {missing}")
    kernel, why = vm.find_kernel()
    if kernel is None:
        pytest.skip(f"no gpio-sim VM: {why}")
    command = (f"cd {REPO} && PYTHONPATH={REPO} PYTHONDONTWRITEBYTECODE=1 HOME=/run/tmp"
               " TMPDIR=/run/tmp"
               f" {sys.executable} -m tests.gpio_vm.guest")
    try:
        console = vm.boot(kernel, command, tmp_path_factory.mktemp("gpio-vm"))
    except RuntimeError as exc:
        # Under software emulation the guest kernel very occasionally panics while booting
        # (seen once in many boots: an int3 oops in text patching). Boot once more; a second
        # failure is reported.
        if "did not boot" not in str(exc):
            raise
        console = vm.boot(kernel, command, tmp_path_factory.mktemp("gpio-vm"))
    results = _results(console)
    if f"{vm.MARK} exit 0" not in console or not results:
        pytest.fail(f"the guest did not finish (kernel from {kernel.source}):\n"
                    f"{console[-4000:]}")
    return results
