"""Running a check in a fresh interpreter, for what only a new process shows (which modules an
import loads, a package made without its ``__init__``)."""

from __future__ import annotations

import subprocess
import sys

__all__ = ["run_python"]


def run_python(code: str, timeout: float = 120) -> str:
    """Run ``code`` with this interpreter (``python -c``); its stdout. Fails the test, with the
    child's stderr, when it exits other than 0 (an ``assert`` in ``code`` failed)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=timeout, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout
