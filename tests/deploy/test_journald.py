"""Logging to journald: with $JOURNAL_STREAM naming stderr, every line carries its syslog
priority prefix (journald's PRIORITY field) and no timestamp; anywhere else, plain lines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.deploy.sidecar import NotifySocket, sidecar

SCRIPT = """
import logging
from edge_runtime.observability.logging import setup
setup("debug", as_json={as_json})
log = logging.getLogger("edge_runtime.demo")
log.debug("d"); log.info("i"); log.warning("w"); log.error("e"); log.critical("c")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("boom")
"""


def run_logging(*, journal: bool, as_json: bool = False, env_value: str | None = None) -> str:
    read_fd, write_fd = os.pipe()
    st = os.fstat(write_fd)
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    if journal:
        env["JOURNAL_STREAM"] = env_value or f"{st.st_dev}:{st.st_ino}"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(as_json=as_json)],
        stderr=write_fd, env=env, timeout=60, check=True,
    )
    assert proc.returncode == 0
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        return f.read()


def test_priority_prefixes_when_stderr_is_the_journal() -> None:
    lines = run_logging(journal=True).splitlines()
    assert lines[:5] == [
        "<7>edge_runtime.demo: d",
        "<6>edge_runtime.demo: i",
        "<4>edge_runtime.demo: w",
        "<3>edge_runtime.demo: e",
        "<2>edge_runtime.demo: c",
    ]
    # A traceback is several journal entries: each keeps the error's priority.
    assert lines[5] == "<3>edge_runtime.demo: boom"
    assert len(lines) > 7
    assert all(line.startswith("<3>") for line in lines[5:])
    assert lines[-1] == "<3>ZeroDivisionError: division by zero"


def test_json_lines_get_the_prefix_too() -> None:
    import json

    lines = run_logging(journal=True, as_json=True).splitlines()
    assert lines[2].startswith("<4>{")
    entry = json.loads(lines[2][3:])
    assert entry["level"] == "warn"
    assert entry["msg"] == "w"
    assert len(lines) == 6  # the traceback stays inside one JSON entry


def test_plain_lines_elsewhere() -> None:
    # Not journald: no variable, or one naming another stream (inherited from a parent).
    for text in (run_logging(journal=False), run_logging(journal=True, env_value="1:2")):
        first = text.splitlines()[0]
        assert not first.startswith("<")
        assert first.endswith("DEBUG edge_runtime.demo: d")
        assert first[2] == ":"  # a HH:MM:SS timestamp


def test_the_sidecar_logs_with_priorities_under_systemd(tmp_path: Path) -> None:
    sock = NotifySocket(tmp_path / "notify.sock")
    # The sidecar's stderr is the pipe the helper reads; JOURNAL_STREAM must name that pipe.
    # Its inode is only known once the process exists, so the child reads it from its fd 2.
    script = (
        "import os, runpy, sys; st = os.fstat(2); "
        "os.environ['JOURNAL_STREAM'] = f'{st.st_dev}:{st.st_ino}'; "
        "sys.argv = ['edge_runtime'] + sys.argv[1:]; runpy.run_module('edge_runtime', "
        "run_name='__main__')"
    )
    try:
        with sidecar(tmp_path, {"NOTIFY_SOCKET": str(sock.path)}, launcher=script) as (
            proc, stderr,
        ):
            sock.wait_for("READY=1")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        lines = stderr.text().splitlines()
    finally:
        sock.close()
    assert any(line.startswith("<6>edge_runtime.runtime: edge-runtime ") for line in lines), lines
    assert all(line.startswith(("<6>", "<7>")) for line in lines), lines
