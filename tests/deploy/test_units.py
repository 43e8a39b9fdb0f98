"""The systemd units and install.sh, checked with systemd's own tools where they are here."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
VENV_BIN = "/opt/edge-runtime/venv/bin/edge-runtime"


def _run_unit() -> Any:
    """deploy/arm/run_unit.py (a script the arm64 check runs in the rootfs): its unit parser."""
    spec = importlib.util.spec_from_file_location("run_unit", ROOT / "deploy/arm/run_unit.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_unit(path: Path) -> dict[str, list[str]]:
    """``Key`` -> every value it is given (continuation lines joined; ``%i`` left as is)."""
    entries: dict[str, list[str]] = {}
    for key, value in _run_unit().parse(path, "%i"):
        entries.setdefault(key, []).append(value)
    return entries


def exec_start_argv(path: Path, instance: str = "demo") -> list[str]:
    """ExecStart as systemd would run it with the unit's own Environment= defaults."""
    unit = parse_unit(path)
    env: dict[str, str] = {}
    for assignment in unit.get("Environment", []):
        key, _, value = shlex.split(assignment)[0].partition("=")
        env[key] = value
    argv: list[str] = []
    for word in shlex.split(unit["ExecStart"][0].replace("%i", instance)):
        if word.startswith("${"):
            argv.append(env[word[2:-1]])
        elif word.startswith("$"):
            argv.extend(env[word[1:]].split())
        else:
            argv.append(word)
    return argv


UNIT_FILES = ["edge-runtime.service", "edge-runtime@.service"]


@pytest.mark.parametrize("name", UNIT_FILES)
def test_systemd_analyze_verify(name: str, tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is missing (apt-get install systemd)")
    # verify insists that ExecStart's binary exists: point it at this venv's edge-runtime.
    here = shutil.which("edge-runtime") or str(Path(sys.executable).with_name("edge-runtime"))
    if not os.access(here, os.X_OK):
        pytest.skip("no edge-runtime script in this environment")
    text = (UNITS / name).read_text().replace(VENV_BIN, here)
    unit = tmp_path / name.replace("@.", "@demo.")
    unit.write_text(text)
    result = subprocess.run(
        [tool, "verify", str(unit)], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0 and re.search(
        r"sysinit\.target not found|Failed to (initialize|connect|set up)", result.stderr
    ):  # no unit tree or manager to check against (a bare container), not a unit problem
        pytest.skip(f"systemd-analyze cannot run here: {result.stderr.strip()}")
    # Unknown keys and bad values are warnings with exit code 0: any output is a failure.
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
    sec = subprocess.run(
        [tool, "security", "--offline=yes", "--threshold=25", str(unit)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    # systemd's exposure score (0 best, 10 worst): ours is ~1.9; fail if hardening regresses.
    assert sec.returncode == 0, sec.stdout[-600:] + sec.stderr


@pytest.mark.parametrize("name", UNIT_FILES)
def test_unit_contract(name: str) -> None:
    unit = parse_unit(UNITS / name)

    def one(key: str) -> str:
        assert len(unit.get(key, [])) == 1, f"{key}: {unit.get(key)}"
        return unit[key][0]

    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert one("Restart") == "on-failure"
    assert int(one("WatchdogSec")) >= 10
    assert one("StateDirectory").startswith("edge-runtime")
    assert set(one("SupplementaryGroups").split()) == {"gpio", "dialout"}
    for key in ("ProtectHome", "NoNewPrivileges", "PrivateTmp"):
        assert one(key) == "yes", key
    assert one("ProtectSystem") == "strict"
    assert set(one("RestrictAddressFamilies").split()) <= {
        "AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK",
    }
    assert one("DevicePolicy") == "closed"
    devices = {d.split()[0] for d in unit["DeviceAllow"]}
    assert devices == {"char-gpiochip", "char-ttyS", "char-ttyAMA", "char-ttyUSB", "char-ttyACM"}
    assert "PrivateDevices" not in unit  # it would hide the GPIO chips and serial lines
    # An offline Pi must still start: no ordering on the network or the clock.
    ordering = " ".join(unit.get("After", []) + unit.get("Wants", []) + unit.get("Requires", []))
    assert "network-online" not in ordering
    assert "time-sync" not in ordering
    assert one("WantedBy") == "multi-user.target"


@pytest.mark.parametrize("name", UNIT_FILES)
def test_exec_start_is_a_valid_command_line(name: str) -> None:
    argv = exec_start_argv(UNITS / name)
    assert argv[0] == VENV_BIN
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run"
    assert args.app_id == ("demo" if "@" in name else "edge-app")
    assert args.data_dir is None  # $STATE_DIRECTORY, from StateDirectory=
    assert args.app == []


def test_install_sh_is_clean_for_shellcheck() -> None:
    tool = shutil.which("shellcheck")
    if tool is None:
        pytest.skip("shellcheck is missing (apt-get install shellcheck)")
    scripts = [*sorted(UNITS.glob("*.sh")), *sorted((ROOT / "deploy" / "arm").glob("*.sh"))]
    result = subprocess.run(
        [tool, *map(str, scripts)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout


def test_install_sh_refuses_unknown_options_before_touching_anything() -> None:
    result = subprocess.run(
        ["sh", str(UNITS / "install.sh"), "--frobnicate"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 2
    assert "unknown option --frobnicate" in result.stderr
