"""sd_notify against a real datagram socket and a real sidecar process: READY once the API
serves, WATCHDOG=1 pings from the event loop (a stalled loop stops them), STOPPING on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from edge_runtime.support import systemd
from tests.deploy.sidecar import NotifySocket, http_port, sidecar

WATCHDOG_USEC = 400_000  # pings every 0.2 s
PING = "WATCHDOG=1"


@pytest.fixture
def notify_socket(tmp_path: Path) -> NotifySocket:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def pings(messages: list[str]) -> int:
    return sum(m.split("\n").count(PING) for m in messages)


def test_ready_watchdog_and_stopping(tmp_path: Path, notify_socket: NotifySocket) -> None:
    env = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    with sidecar(tmp_path, env) as (proc, stderr):
        first = notify_socket.wait_for("READY=1")
        assert pings(first) == 0, "a ping before READY"
        # READY means the API serves: outbound health answers right away.
        port = http_port(tmp_path / "data")
        assert httpx.get(f"http://127.0.0.1:{port}/v1.0/healthz/outbound").status_code == 204
        for _ in range(3):
            notify_socket.wait_for(PING)
        proc.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1")
        assert proc.wait(30) == 0
    assert "systemd watchdog: pinging every 0.2 s" in stderr.text()
    try:
        import uvloop  # noqa: F401
    except ImportError:
        assert "event loop: asyncio" in stderr.text()
    else:
        assert "event loop: uvloop" in stderr.text()


def test_a_stalled_event_loop_stops_the_pings(tmp_path: Path, notify_socket: NotifySocket) -> None:
    """The loop blocks for real: its log writes go to a pipe nobody reads (as when journald
    stops reading), while the process and its other threads live on."""
    env = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    # A one-page pipe; each failing binding call logs a ~1.5 KB debug line.
    with sidecar(tmp_path, env, "--log-level", "debug", pipe_capacity=4096) as (proc, stderr):
        notify_socket.wait_for("READY=1")
        notify_socket.wait_for(PING)
        url = f"http://127.0.0.1:{http_port(tmp_path / 'data')}/v1.0/bindings/out"
        body = {"operation": "get", "metadata": {"key": "k" * 1500}}
        stderr.flowing.clear()
        timed_out = False
        for _ in range(200):
            try:
                r = httpx.post(url, json=body, timeout=2)
            except httpx.TimeoutException:
                timed_out = True
                break
            assert r.status_code == 500
        assert timed_out, "the sidecar kept answering with its stderr unread"
        # The pipe cannot take another line: the loop is (or is about to be) stuck writing one.
        assert stderr.pending() > 4096 - 1600
        notify_socket.collect(2)  # pings sent before it got stuck
        assert pings(notify_socket.collect(3)) == 0, "pings while the loop was blocked"
        assert proc.poll() is None
        stderr.flowing.set()  # journald reads again: the loop goes on, and so do the pings
        notify_socket.wait_for(PING)
        proc.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1")
        assert proc.wait(30) == 0


def test_no_pings_for_another_process(tmp_path: Path, notify_socket: NotifySocket) -> None:
    """$WATCHDOG_PID naming another process (the variable leaked to a child) means no watchdog
    for us, as in sd_watchdog_enabled."""
    env = {
        "NOTIFY_SOCKET": str(notify_socket.path),
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
        "WATCHDOG_PID": str(os.getpid()),
    }
    with sidecar(tmp_path, env) as (proc, _stderr):
        notify_socket.wait_for("READY=1")
        assert pings(notify_socket.collect(1)) == 0
        proc.send_signal(signal.SIGTERM)
        assert pings(notify_socket.wait_for("STOPPING=1")) == 0
        assert proc.wait(30) == 0


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000"}, 15.0),
        ({"NOTIFY_SOCKET": "@abstract", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "42"}, 0.5),
        ({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "43"}, None),
        ({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "0"}, None),
        ({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "soon"}, None),
        ({"NOTIFY_SOCKET": "/run/x"}, None),
        ({"WATCHDOG_USEC": "1000000"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert systemd.watchdog_interval(env, pid=42) == expected


def test_notify_without_a_listener_is_harmless(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody"))
    assert systemd.notify("READY=1") is False
    sock = NotifySocket(tmp_path / "somebody")
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock.path))
    assert systemd.notify("STATUS=hi") is True
    assert sock.receive(5) == "STATUS=hi"
    sock.close()


def test_asyncio_loop_when_asked(tmp_path: Path, notify_socket: NotifySocket) -> None:
    """EDGE_RUNTIME_LOOP=asyncio: what a device without uvloop (armv7) runs on."""
    env = {
        "NOTIFY_SOCKET": str(notify_socket.path),
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
        "EDGE_RUNTIME_LOOP": "asyncio",
    }
    with sidecar(tmp_path, env) as (proc, stderr):
        notify_socket.wait_for("READY=1")
        notify_socket.wait_for(PING)
        proc.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1")
        assert proc.wait(30) == 0
    assert "event loop: asyncio" in stderr.text()


APP = """
import json, os, signal, sys, time
names = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "DAPR_HTTP_PORT")
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # before the file says we are up
with open(sys.argv[1], "w") as f:
    json.dump({n: os.environ.get(n) for n in names}, f)
time.sleep(300)
"""


def test_the_app_does_not_inherit_the_notify_protocol(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """Readiness and the watchdog are the sidecar's: the app after -- must not see them."""
    seen = tmp_path / "app-env.json"
    env = {
        "NOTIFY_SOCKET": str(notify_socket.path),
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
        "WATCHDOG_PID": "1",  # not us: no pings, but it must not reach the app either
    }
    with sidecar(tmp_path, env, "--", sys.executable, "-c", APP, str(seen)) as (proc, _err):
        notify_socket.wait_for("READY=1")
        deadline = time.monotonic() + 60
        while not seen.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1")
        assert proc.wait(30) == 0
    got = json.loads(seen.read_text())
    assert got.pop("DAPR_HTTP_PORT")
    assert got == {"NOTIFY_SOCKET": None, "WATCHDOG_USEC": None, "WATCHDOG_PID": None}
