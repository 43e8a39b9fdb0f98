"""Logging to journald. With $JOURNAL_STREAM naming stderr and journald's socket there, each
record is an entry sent over journald's native protocol with structured fields (a test socket
stands in for journald: ``EDGE_RUNTIME_JOURNAL_SOCKET``); a record the socket refuses, or every
record when there is no socket, is a stderr line carrying its syslog priority prefix (journald's
PRIORITY field) and no timestamp; anywhere else, plain lines."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.journal import SEALS, Entry, JournalSocket, fds_in_empty_datagrams
from tests.deploy.sidecar import NotifySocket, sidecar

needs_fd_passing = pytest.mark.skipif(
    not fds_in_empty_datagrams(),
    reason="a descriptor sent in an empty datagram does not arrive here (qemu user emulation): "
    "the memfd entries and a real journald need it",
)

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


# No journald socket: the host's own journal must not get the tests' records.
NO_SOCKET = "/nonexistent/journal.socket"


def run_logging(
    *, journal: bool, as_json: bool = False, env_value: str | None = None,
    socket_path: str = NO_SOCKET, script: str = SCRIPT,
) -> str:
    # A file, not a pipe: nothing has to read it while the child writes (a flood is ~1 MB).
    with tempfile.TemporaryFile() as err:
        st = os.fstat(err.fileno())
        env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
        env["EDGE_RUNTIME_JOURNAL_SOCKET"] = socket_path
        if journal:
            env["JOURNAL_STREAM"] = env_value or f"{st.st_dev}:{st.st_ino}"
        subprocess.run(
            [sys.executable, "-c", script.format(as_json=as_json)],
            stderr=err, env=env, timeout=60, check=True,
        )
        err.seek(0)
        return err.read().decode()


def test_priority_prefixes_when_stderr_is_the_journal_without_its_socket() -> None:
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


# The sidecar's stderr is the pipe the helper reads; JOURNAL_STREAM must name that pipe. Its
# inode is only known once the process exists, so the child reads it from its fd 2.
UNDER_SYSTEMD = (
    "import os, runpy, sys; st = os.fstat(2); "
    "os.environ['JOURNAL_STREAM'] = f'{st.st_dev}:{st.st_ino}'; "
    "sys.argv = ['edge_runtime'] + sys.argv[1:]; runpy.run_module('edge_runtime', "
    "run_name='__main__')"
)


def test_the_sidecar_logs_with_priorities_under_systemd(tmp_path: Path) -> None:
    sock = NotifySocket(tmp_path / "notify.sock")
    script = UNDER_SYSTEMD
    try:
        env = {"NOTIFY_SOCKET": str(sock.path), "EDGE_RUNTIME_JOURNAL_SOCKET": NO_SOCKET}
        with sidecar(tmp_path, env, launcher=script) as (
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


FIELDS_SCRIPT = """
import logging
from edge_runtime.observability import tracing
from edge_runtime.observability.logging import setup
setup("debug", as_json={as_json}, app_id="app-1")
log = logging.getLogger("edge_runtime.demo")

def work():
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")

work()
try:
    1 / 0
except ZeroDivisionError:
    log.exception("boom")
log.warning("first line\\nsecond line")
token = tracing.bind({{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}})
log.warning("traced")
tracing.unbind(token)
log.info("big %s", "x" * 600_000)
"""


def by_message(entries: list[Entry], prefix: str) -> Entry:
    (found,) = [e for e in entries if e["MESSAGE"].startswith(prefix)]
    return found


@needs_fd_passing
def test_structured_entries_over_the_native_protocol(tmp_path: Path) -> None:
    journal = JournalSocket(tmp_path / "journal.sock")
    try:
        stderr = run_logging(journal=True, socket_path=str(journal.path), script=FIELDS_SCRIPT)
        journal.message("edge_runtime.demo: big")  # the last record
        entries = journal.snapshot()
    finally:
        journal.close()
    assert stderr == ""  # every record went to the journal
    assert len(entries) == 8
    lines = []
    for text, prio in (("d", "7"), ("i", "6"), ("w", "4"), ("e", "3")):
        entry = by_message(entries, f"edge_runtime.demo: {text}")
        assert entry["MESSAGE"] == f"edge_runtime.demo: {text}"  # no timestamp: journald's
        assert entry["PRIORITY"] == prio
        assert entry["SYSLOG_IDENTIFIER"] == "edge-runtime"
        assert entry["EDGE_APP_ID"] == "app-1"
        assert entry["LOGGER"] == "edge_runtime.demo"
        assert entry["CODE_FILE"] == "<string>"
        assert entry["CODE_FUNC"] == "work"
        assert "TRACE_ID" not in entry.fields
        assert "EXCEPTION_TEXT" not in entry.fields
        assert not entry.binary
        lines.append(int(entry["CODE_LINE"]))
    assert lines == list(range(lines[0], lines[0] + 4))  # each record's own line
    # A traceback: one entry (not one per line), the text in MESSAGE and on its own.
    boom = by_message(entries, "edge_runtime.demo: boom")
    assert boom["PRIORITY"] == "3"
    assert boom["CODE_FUNC"] == "<module>"
    assert boom["MESSAGE"].startswith("edge_runtime.demo: boom\nTraceback (most recent call")
    assert boom["EXCEPTION_TEXT"].startswith("Traceback (most recent call last):")
    assert boom["EXCEPTION_TEXT"].endswith("ZeroDivisionError: division by zero")
    assert {"MESSAGE", "EXCEPTION_TEXT"} <= boom.binary
    # A newline inside a message: the binary-safe form keeps it one entry.
    two = by_message(entries, "edge_runtime.demo: first line")
    assert two["MESSAGE"] == "edge_runtime.demo: first line\nsecond line"
    assert two.binary == {"MESSAGE"}
    assert two["PRIORITY"] == "4"
    # Under a trace context: its ids.
    traced = by_message(entries, "edge_runtime.demo: traced")
    assert traced["TRACE_ID"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert traced["SPAN_ID"] == "00f067aa0ba902b7"
    # Larger than a datagram may be (EMSGSIZE): whole, in a sealed memfd.
    big = by_message(entries, "edge_runtime.demo: big")
    assert big["MESSAGE"] == "edge_runtime.demo: big " + "x" * 600_000
    assert big.memfd_seals is not None
    assert big.memfd_seals & SEALS == SEALS
    assert all(e.memfd_seals is None for e in entries if e is not big)


@needs_fd_passing
def test_json_messages_with_the_trace_id(tmp_path: Path) -> None:
    journal = JournalSocket(tmp_path / "journal.sock")
    try:
        run_logging(journal=True, as_json=True, socket_path=str(journal.path),
                    script=FIELDS_SCRIPT)
        journal.wait_for(lambda e: '"big ' in e["MESSAGE"])
        entries = journal.snapshot()
    finally:
        journal.close()
    messages = {json.loads(e["MESSAGE"])["msg"]: (e, json.loads(e["MESSAGE"])) for e in entries}
    entry, doc = messages["traced"]
    assert doc["trace_id"] == entry["TRACE_ID"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert doc["span_id"] == entry["SPAN_ID"] == "00f067aa0ba902b7"
    assert doc["level"] == "warn"
    assert entry["PRIORITY"] == "4"
    _entry, untraced = messages["w"]
    assert "trace_id" not in untraced
    entry, doc = messages["boom"]
    assert doc["error"] == entry["EXCEPTION_TEXT"]


FLOOD_SCRIPT = """
import logging
from edge_runtime.observability.logging import setup
setup("info")
log = logging.getLogger("edge_runtime.flood")
for n in range(1000):
    log.info("n=%d %s", n, "p" * 1000)
"""


def test_a_full_journal_queue_sends_records_to_stderr(tmp_path: Path) -> None:
    # Nobody reads the socket: its queue fills (net.unix.max_dgram_qlen datagrams, or the
    # sender's buffer), the sends that would block fail with EAGAIN, and those records go to
    # stderr instead; none is lost and none is written twice.
    journal = JournalSocket(tmp_path / "journal.sock", drain=False)
    try:
        stderr = run_logging(journal=True, socket_path=str(journal.path), script=FLOOD_SCRIPT)
        journal.read_queued()
        entries = journal.snapshot()
    finally:
        journal.close()
    sent = [int(e["MESSAGE"].split()[1][2:]) for e in entries]
    lines = stderr.splitlines()
    assert all(line.startswith("<6>edge_runtime.flood: n=") for line in lines), lines[:3]
    fallen = [int(line.split()[1][2:]) for line in lines]
    print(f"{len(sent)} records as entries, {len(fallen)} on stderr")
    assert sent
    assert fallen
    assert sorted(sent + fallen) == list(range(1000))
    # A full queue is no outage: no notice about it.
    assert not any("refused" in line for line in lines)


def test_the_sidecar_under_journald_and_after_it_goes(tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    journal = JournalSocket(tmp_path / "journal.sock")
    env = {"NOTIFY_SOCKET": str(notify.path), "EDGE_RUNTIME_JOURNAL_SOCKET": str(journal.path)}
    try:
        with sidecar(tmp_path, env, launcher=UNDER_SYSTEMD) as (proc, stderr):
            notify.wait_for("READY=1")
            ready = journal.message("edge_runtime.runtime: edge-runtime ")
            assert " ready in " in ready["MESSAGE"]
            assert ready["PRIORITY"] == "6"
            assert ready["SYSLOG_IDENTIFIER"] == "edge-runtime"
            assert ready["EDGE_APP_ID"] == "app"
            assert ready["LOGGER"] == "edge_runtime.runtime"
            assert ready["CODE_FILE"].endswith(".py")
            assert Path(ready["CODE_FILE"]).is_file()
            assert int(ready["CODE_LINE"]) > 0
            assert ready["CODE_FUNC"]
            assert stderr.text() == ""  # nothing fell back
            journal.remove()  # journald goes away mid-run
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        lines = stderr.text().splitlines()
    finally:
        notify.close()
        journal.close()
    assert lines[0].startswith(
        "<4>edge_runtime.observability.journal: journald's socket " + str(journal.path)
    ), lines
    assert "<6>edge_runtime.runtime: received SIGTERM: shutting down" in lines
    assert lines[-1] == "<6>edge_runtime.runtime: stopped"
    assert not any("stopped" in e["MESSAGE"] for e in journal.snapshot())


JOURNALD = next((p for p in ("/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald")
                 if os.path.exists(p)), None)


@pytest.fixture
def real_journald() -> Iterator[str]:
    """A real systemd-journald in a journal namespace of its own (so the host's journal never
    sees the tests' records); its namespace name. Removed afterwards, files included."""
    if JOURNALD is None or shutil.which("journalctl") is None:
        pytest.skip("systemd-journald or journalctl is not installed (apt package systemd)")
    if os.geteuid() != 0:
        pytest.skip("a journald namespace of our own needs root")
    ns = f"edgetest{secrets.token_hex(4)}"
    proc = subprocess.Popen([JOURNALD, ns], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sock = Path(f"/run/systemd/journal.{ns}/socket")
    try:
        deadline = time.monotonic() + 20
        while not sock.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if not sock.exists():
            proc.kill()
            _, err = proc.communicate(10)
            pytest.skip(f"systemd-journald does not run here: {err.decode()[-300:]}")
        yield ns
    finally:
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
        for path in [f"/run/systemd/journal.{ns}", *glob.glob(f"/var/log/journal/*.{ns}"),
                     *glob.glob(f"/run/log/journal/*.{ns}")]:
            shutil.rmtree(path, ignore_errors=True)


def journal_entries(ns: str) -> list[dict[str, str]]:
    out = subprocess.run(
        ["journalctl", f"--namespace={ns}", "-o", "json", "--all", "--no-pager",
         "SYSLOG_IDENTIFIER=edge-runtime"],
        capture_output=True, check=False, timeout=60,
    ).stdout
    entries = []
    for line in out.decode().splitlines():
        raw = json.loads(line)
        # journalctl prints a value with control characters (a newline) as its bytes.
        entries.append({k: bytes(v).decode() if isinstance(v, list) else v
                        for k, v in raw.items()})
    return entries


@needs_fd_passing
def test_a_real_journald_stores_the_entries(tmp_path: Path, real_journald: str) -> None:
    sock = f"/run/systemd/journal.{real_journald}/socket"
    stderr = run_logging(journal=True, socket_path=sock, script=FIELDS_SCRIPT)
    assert stderr == ""
    entries: list[dict[str, str]] = []
    deadline = time.monotonic() + 30
    while len(entries) < 8 and time.monotonic() < deadline:
        time.sleep(0.1)
        entries = journal_entries(real_journald)
    assert len(entries) == 8, entries
    assert {e["_TRANSPORT"] for e in entries} == {"journal"}  # the native protocol, not stdout
    by = {e["MESSAGE"].split("\n")[0][len("edge_runtime.demo: "):][:3]: e for e in entries}
    assert [by[m]["PRIORITY"] for m in ("d", "i", "w", "e")] == ["7", "6", "4", "3"]
    assert by["i"]["EDGE_APP_ID"] == "app-1"
    assert by["i"]["LOGGER"] == "edge_runtime.demo"
    assert by["i"]["CODE_FUNC"] == "work"
    assert by["fir"]["MESSAGE"] == "edge_runtime.demo: first line\nsecond line"
    assert by["tra"]["TRACE_ID"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert by["tra"]["SPAN_ID"] == "00f067aa0ba902b7"
    assert by["boo"]["EXCEPTION_TEXT"].endswith("ZeroDivisionError: division by zero")
    assert by["big"]["MESSAGE"] == "edge_runtime.demo: big " + "x" * 600_000  # the memfd
