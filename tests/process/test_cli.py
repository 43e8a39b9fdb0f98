"""The sidecar as users run it: a separate process, signals, the app after --, kill -9."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge_runtime.api.http.server import HTTP_PARSER

COMPONENT = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: state.db
"""


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge_runtime", *args]


@pytest.fixture
def resources(tmp_path: Path) -> Path:
    res = tmp_path / "components"
    res.mkdir()
    (res / "state.yaml").write_text(COMPONENT)
    return res


def run_args(resources: Path, data_dir: Path, *extra: str) -> list[str]:
    return cli(
        "run",
        "--app-id",
        "app",
        "--dapr-http-port",
        "0",
        "--dapr-grpc-port",
        "0",
        "--metrics-port",
        "0",
        "--resources-path",
        str(resources),
        "--data-dir",
        str(data_dir),
        *extra,
    )


def wait_ready(proc: subprocess.Popen[bytes], data_dir: Path, timeout: float = 20) -> int:
    """The HTTP port once runtime.json exists and outbound health answers."""
    deadline = time.monotonic() + timeout
    runtime_json = data_dir / "runtime.json"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the sidecar exited with {proc.returncode}")
        if runtime_json.exists():
            port: int = json.loads(runtime_json.read_text())["ports"]["http"]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1.0/healthz/outbound").status_code == 204:
                    return port
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    raise AssertionError("the sidecar did not become ready")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_sigterm_stops_gracefully_and_keeps_data(
    resources: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(run_args(resources, data), stderr=subprocess.PIPE)
    procs.append(proc)
    port = wait_ready(proc, data)
    r = httpx.post(
        f"http://127.0.0.1:{port}/v1.0/state/statestore", json=[{"key": "k", "value": 1}]
    )
    assert r.status_code == 204
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    assert b"stopped" in err
    assert b"Traceback" not in err
    proc2 = subprocess.Popen(run_args(resources, data), stderr=subprocess.DEVNULL)
    procs.append(proc2)
    port = wait_ready(proc2, data)
    assert httpx.get(f"http://127.0.0.1:{port}/v1.0/state/statestore/k").json() == 1


APP = """
import json, os, sys, urllib.request
port = os.environ["DAPR_HTTP_PORT"]
assert os.environ["APP_ID"] == "app"
assert os.environ["DAPR_GRPC_PORT"]
req = urllib.request.Request(
    f"http://127.0.0.1:{port}/v1.0/state/statestore", method="POST",
    data=json.dumps([{"key": "from-app", "value": os.environ.get("APP_PORT", "none")}]).encode(),
    headers={"content-type": "application/json"})
assert urllib.request.urlopen(req).status == 204
sys.exit(7)
"""


def test_app_after_dashdash_gets_env_and_its_exit_code_is_ours(
    resources: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    result = subprocess.run(
        [*run_args(resources, data), "--", sys.executable, "-c", APP],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 7, result.stderr.decode()
    assert b"the app exited with code 7" in result.stderr
    import sqlite3

    with sqlite3.connect(data / "state.db") as db:
        rows = db.execute("SELECT value FROM state WHERE key = 'app||from-app'").fetchall()
    assert rows == [(b'"none"',)] or rows == [('"none"',)]


def test_signal_is_forwarded_to_the_app(resources: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    app = textwrap.dedent("""
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))
        print("app up", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen(
        [*run_args(resources, data), "--", sys.executable, "-c", app],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"app up\n"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        assert proc.returncode == 3
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_kill_9_loses_nothing_acknowledged(
    resources: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """Save from several threads, SIGKILL the sidecar mid-stream: every 204 survives."""
    data = tmp_path / "data"
    proc = subprocess.Popen(run_args(resources, data), stderr=subprocess.DEVNULL)
    procs.append(proc)
    port = wait_ready(proc, data)
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            i = 0
            while not stop.is_set():
                key = f"w{n}-{i}"
                try:
                    r = c.post("/v1.0/state/statestore", json=[{"key": key, "value": i}])
                except httpx.HTTPError:
                    return
                if r.status_code == 204:
                    with lock:
                        acked.append(key)
                i += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(acked) < 300 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked) >= 300
    proc2 = subprocess.Popen(run_args(resources, data), stderr=subprocess.DEVNULL)
    procs.append(proc2)
    port = wait_ready(proc2, data)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        missing = []
        for start in range(0, len(acked), 200):
            keys = acked[start : start + 200]
            items = c.post("/v1.0/state/statestore/bulk", json={"keys": keys}).json()
            missing += [i["key"] for i in items if "data" not in i]
    assert missing == []


def test_bad_yaml_fails_with_file_and_line_and_no_traceback(tmp_path: Path) -> None:
    res = tmp_path / "components"
    res.mkdir()
    (res / "bad.yaml").write_text(COMPONENT.replace("type: state.sqlite", "type: [oops"))
    result = subprocess.run(
        run_args(res, tmp_path / "data"), capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "bad.yaml:" in err
    assert "Traceback" not in err


def test_unknown_component_type_names_the_type(tmp_path: Path) -> None:
    res = tmp_path / "components"
    res.mkdir()
    (res / "s.yaml").write_text(COMPONENT.replace("state.sqlite", "state.redis"))
    result = subprocess.run(
        run_args(res, tmp_path / "data"), capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "state.redis" in err
    assert "s.yaml:" in err
    assert "Traceback" not in err


def test_port_in_use_is_a_clear_error(resources: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        args = run_args(resources, tmp_path / "data")
        args[args.index("--dapr-http-port") + 1] = str(port)
        result = subprocess.run(args, capture_output=True, timeout=30, check=False)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr.decode()


def test_validate_lists_every_problem(tmp_path: Path) -> None:
    res = tmp_path / "components"
    res.mkdir()
    (res / "a.yaml").write_text(COMPONENT.replace("state.sqlite", "state.nope"))
    (res / "b.yaml").write_text(
        COMPONENT.replace("name: statestore", "name: other").replace(
            "value: state.db", "value: x.db\n  - name: timeout\n    value: soon"
        )
    )
    result = subprocess.run(
        cli("validate", "--resources-path", str(res)), capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 1
    out = result.stdout.decode()
    assert "a.yaml:" in out
    assert "state.nope" in out
    assert "b.yaml:" in out
    assert "timeout" in out
    good = subprocess.run(
        cli("validate", "--resources-path", str(Path("components"))),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert good.returncode == 0, good.stdout.decode()


def test_json_logs_and_systemd_ready(resources: Path, tmp_path: Path) -> None:
    """--log-as-json gives one JSON object per line; READY=1 reaches $NOTIFY_SOCKET."""
    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(sock_path))
        notify.settimeout(20)
        env = {
            **os.environ,
            "NOTIFY_SOCKET": str(sock_path),
            "STATE_DIRECTORY": str(tmp_path / "sd"),
        }
        args = cli(
            "run",
            "--app-id",
            "app",
            "--dapr-http-port",
            "0",
            "--dapr-grpc-port",
            "0",
            "--metrics-port",
            "0",
            "--resources-path",
            str(resources),
            "--log-as-json",
        )
        proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE)
        try:
            message = notify.recv(4096).decode()
            assert message.startswith("READY=1")
            # No --data-dir: systemd's STATE_DIRECTORY is the data dir.
            assert (tmp_path / "sd" / "runtime.json").exists()
            assert (tmp_path / "sd" / "state.db").exists()
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
    lines = [json.loads(line) for line in err.decode().splitlines() if line.strip()]
    assert lines
    assert all(entry["app_id"] == "app" and entry["level"] for entry in lines)
    assert any("ready in" in entry["msg"] for entry in lines)


def test_forced_shutdown_exits_1(
    resources: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(run_args(resources, data), stderr=subprocess.DEVNULL)
    procs.append(proc)
    port = wait_ready(proc, data)
    r = httpx.post(
        f"http://127.0.0.1:{port}/v1.0/shutdown", headers={"dapr-force-shutdown": "true"}
    )
    assert r.status_code == 204
    assert proc.wait(timeout=10) == 1


def test_outbox_command_shows_the_backlog(tmp_path: Path) -> None:
    res = tmp_path / "components"
    res.mkdir()
    (res / "p.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: mem}\n"
        "spec: {type: pubsub.in-memory, version: v1}\n"
    )
    data = tmp_path / "data"
    empty = subprocess.run(
        cli("outbox", "--data-dir", str(data)), capture_output=True, timeout=30, check=True
    )
    assert b"empty" in empty.stdout
    proc = subprocess.Popen(run_args(res, data), stderr=subprocess.DEVNULL)
    try:
        port = wait_ready(proc, data)
        assert (
            httpx.post(f"http://127.0.0.1:{port}/v1.0/publish/mem/t", content=b"x").status_code
            == 204
        )
        out = subprocess.run(
            cli("outbox", "--data-dir", str(data)), capture_output=True, timeout=30, check=True
        ).stdout.decode()
        assert "pubsub_mem" in out
    finally:
        proc.terminate()
        proc.wait(20)


# Never imported by the lean profile (docs/performance/footprint.md has what each one costs):
# gRPC and the Dapr stubs, the app channel's HTTP client (made on the first call to an app),
# cloud sync's CBOR, uvicorn (our own HTTP/1.1 server serves where httptools is installed;
# uvicorn with h11 only where it is not) and with it click and multiprocessing,
# the GPIO/serial/mDNS libraries, prometheus_client's exposition module (its HTTP servers and
# push client: we render /metrics ourselves), decimal (one config value format) and
# importlib.resources (the OpenAPI document), imported where used, and the idna codec
# (CPython's resolver encodes a str host with it; paho's connect passes ASCII hosts as bytes),
# and what paho's urllib.request would import (http.client, email: it is made without running,
# and paho is asked for a proxy only when one is set; uvicorn's server imports email.utils),
# tempfile and secrets (a file name and random ids come from os.urandom).
LEAN_NEVER = (
    "grpc", "dapr", "google.protobuf", "httpx", "cbor2", "wsproto", "websockets", "gpiod",
    "serial", "zeroconf", "click", "multiprocessing", "uvicorn.main", "uvicorn.supervisors",
    "prometheus_client.exposition", "http.server", "wsgiref", "decimal", "importlib.resources",
    "encodings.idna", "stringprep", "edge_runtime.api.grpc", "edge_runtime.cloudsync.client",
    "edge_runtime.runtime.cloud", "edge_runtime.bindings.gpio", "edge_runtime.bindings.serial",
    "http.client",
) + (("uvicorn", "h11", "email", "tempfile", "secrets") if HTTP_PARSER == "httptools" else ())
HTTP_SERVER_MODULE = "edge_runtime.api.http.h1" if HTTP_PARSER == "httptools" else "uvicorn.server"

MQTT_NOWHERE = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: pubsub}
spec:
  type: pubsub.mqtt3
  version: v1
  metadata:
  - {name: url, value: "tcp://127.0.0.1:%d"}
"""


# Runs the sidecar as ``python -m edge_runtime`` would, and writes every module in sys.modules
# to a file at exit: imports made at any time (lazy ones, importlib's) are in it.
DUMP_MODULES = (
    "import atexit, runpy, sys\n"
    "out = sys.argv.pop(1)\n"
    "atexit.register(lambda: open(out, 'w').write('\\n'.join(sorted(sys.modules))))\n"
    "sys.argv[0] = 'edge_runtime'\n"
    "runpy.run_module('edge_runtime', run_name='__main__', alter_sys=True)\n"
)


def test_disable_grpc_api(
    resources: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """The lean profile: no gRPC port, and none of ``LEAN_NEVER`` is in ``sys.modules`` when it
    exits after starting, saving, publishing and being scraped. The MQTT broker is a closed
    port: publishes are acknowledged from the outbox anyway."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    (resources / "pubsub.yaml").write_text(MQTT_NOWHERE % closed_port)
    data = tmp_path / "data"
    modules = tmp_path / "modules.txt"
    args = [*run_args(resources, data), "--disable-grpc-api"]
    args[1:3] = ["-c", DUMP_MODULES, str(modules)]  # instead of "-m edge_runtime"
    proc = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    procs.append(proc)
    port = wait_ready(proc, data)
    ports = json.loads((data / "runtime.json").read_text())["ports"]
    assert "grpc" not in ports
    base = f"http://127.0.0.1:{port}/v1.0"
    saved = httpx.post(f"{base}/state/statestore", json=[{"key": "k", "value": 1}])
    assert saved.status_code == 204
    assert httpx.post(f"{base}/publish/pubsub/t", json={"n": 1}).status_code == 204
    meta = httpx.get(f"{base}/metadata").json()
    assert "port.grpc" not in meta["extended"]
    assert httpx.get(f"http://127.0.0.1:{ports['metrics']}/metrics").status_code == 200
    proc.terminate()
    assert proc.wait(20) == 0
    names = set(modules.read_text().split())
    # The list is real: the runtime, the HTTP server and the MQTT client are in it.
    assert {"edge_runtime.runtime.runtime", HTTP_SERVER_MODULE, "paho.mqtt.client"} <= names
    loaded = sorted(n for n in names if any(n == m or n.startswith(m + ".") for m in LEAN_NEVER))
    assert loaded == [], f"the lean profile imported {loaded}"
