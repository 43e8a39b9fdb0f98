"""The README's systemd walk-through under a real systemd as PID 1
(deploy/systemd/test-systemd.sh: systemd-nspawn --boot of a Debian rootfs, install.sh, READY,
health, a watchdog restart after a SIGSTOP, a clean stop; walkthrough.sh holds the checks).

The boot is minutes (a rootfs to build once, a wheelhouse, the boot itself): marked
``systemd_boot``, run by ``make test-systemd``, not by ``make test``. The script's refusals and
its skip run everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "systemd" / "test-systemd.sh"


def test_unknown_options_are_refused() -> None:
    result = subprocess.run(["bash", str(SCRIPT), "--frobnicate"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "unknown option --frobnicate" in result.stderr


def test_it_skips_with_the_reason_when_not_root() -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to run the script as another user")
    result = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "bash", str(SCRIPT)],
        capture_output=True, text=True, timeout=60, check=False, cwd="/",
    )
    assert result.returncode == 77, result.stdout + result.stderr
    assert "SKIPPED: needs root" in result.stdout


@pytest.mark.slow
@pytest.mark.systemd_boot
def test_the_walkthrough_under_systemd_as_pid1() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (debootstrap, systemd-nspawn)")
    for tool, package in (("systemd-nspawn", "systemd-container"),
                          ("debootstrap", "debootstrap"), ("zstd", "zstd")):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
            pytest.skip(f"{tool} is missing (apt-get install {package})")
    env = {**os.environ, "PYTHON": sys.executable,
           "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True,
                            timeout=1800, check=False, env=env)
    print(result.stdout[-6000:], result.stderr[-3000:])
    if result.returncode == 77:
        pytest.skip(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "walkthrough: PASSED" in result.stdout
