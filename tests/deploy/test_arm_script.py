"""deploy/arm/test-arm.sh's contract where it can be checked without emulating anything: its
options, the skip (exit 77 with the reason) where it cannot run, and the CI files calling it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "arm" / "test-arm.sh"


def run(*args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = ["bash", str(SCRIPT), *args]
    if user is None:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to run the script as another user")
    # A copy the other user can read, wherever the checkout lives.
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # noqa: S103 - the other user must reach the copy
        copy = Path(tmp) / "deploy" / "arm" / SCRIPT.name
        copy.parent.mkdir(parents=True)
        shutil.copy(SCRIPT, copy)
        cmd = [setpriv, f"--reuid={user}", f"--regid={user}", "--clear-groups", "bash", str(copy),
               *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False,
                              cwd=tmp)


def options() -> set[str]:
    return set(re.findall(r"^\s+(--[a-z-]+)\)", SCRIPT.read_text(), re.MULTILINE))


def test_unknown_options_are_refused() -> None:
    result = run("--frobnicate")
    assert result.returncode == 2
    assert "unknown option --frobnicate" in result.stderr


def test_unknown_architectures_are_refused() -> None:
    result = run("--arch", "mips")
    assert result.returncode == 2
    assert "unknown architecture mips" in result.stderr


def test_it_skips_with_the_reason_when_it_cannot_run() -> None:
    # Not root: no debootstrap, chroot or mounts. 77 is the skip .ci/run looks for.
    result = run("--subset", "ci", user="65534")
    assert result.returncode == 77, result.stdout + result.stderr
    assert "SKIPPED: needs root" in result.stdout


def test_ci_and_the_workflow_call_it_with_options_it_has() -> None:
    known = options()
    assert {"--arch", "--subset", "--no-uvloop", "--install-check", "--build-only"} <= known
    ci = (ROOT / ".ci" / "run").read_text()
    calls = re.findall(r"deploy/arm/test-arm\.sh ([^|\n]*)", ci)
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "arm.yml").read_text())
    matrix = workflow["jobs"]["arm64"]["strategy"]["matrix"]["include"]
    calls += [entry["args"] for entry in matrix]
    # .ci/run: build (a failure to build is a skip), then the ci subset, both arm64 (armhf is
    # not in CI's time budget); the workflow: three, one of them armhf.
    assert len(calls) == 5
    assert calls[0].split() == ["--build-only"]
    assert not any("--arch" in call for call in calls[:2])
    arches = [entry["arch"] for entry in matrix]
    assert sorted(arches) == ["arm64", "arm64", "armhf"]
    for entry in matrix:
        words = entry["args"].split()
        assert (words[words.index("--arch") + 1] if "--arch" in words else "arm64") == entry["arch"]
    for call in calls:
        words = call.split()
        assert {w for w in words if w.startswith("--")} <= known, call
        if "--subset" in words:
            assert words[words.index("--subset") + 1] in ("ci", "full", "none")
        if "--arch" in words:
            assert words[words.index("--arch") + 1] in ("arm64", "armhf")
    steps = " ".join(str(s.get("run", "")) for s in workflow["jobs"]["arm64"]["steps"])
    assert "deploy/arm/test-arm.sh ${{ matrix.args }}" in steps
    assert "qemu-user-static" in steps
    assert "debootstrap" in steps


def test_the_ci_subset_names_files_that_exist() -> None:
    text = SCRIPT.read_text()
    subset = re.search(r"ci\)\n\s+TESTS=\(([^)]*)\)", text)
    assert subset is not None
    for path in subset.group(1).split():
        assert (ROOT / path).exists(), path
