"""API access: the token on every route (healthz excepted), no token or secret in the log even
at debug level, loopback by default (a warning when bound wider), and the HTTP API on a Unix
domain socket (daprd's ``--unix-domain-socket``). The token on every gRPC method is checked in
test_hostile_grpc.py."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from tests.faults._hostile import TOKEN, Sidecar, problems_in_log
from tests.faults.test_hostile_http import EXEMPT, route_table

APP_TOKEN = "app-token-never-logged-91c2"
SECRET = "secret-value-never-logged-5d1e"
WRONG = "wrong-token-never-logged-77aa"


def _fill(pattern: str) -> str:
    return "/".join("x" if p.startswith("{") else p for p in pattern.split("/"))


@pytest.fixture(scope="module")
def debug_sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    sc = Sidecar(tmp_path_factory.mktemp("access"), log_level="debug",
                 env={"DAPR_API_TOKEN": TOKEN, "APP_API_TOKEN": APP_TOKEN,
                      "HOSTILE_ONE": SECRET}).start()
    yield sc
    sc.stop()


def test_every_route_wants_the_token_but_healthz(debug_sidecar: Sidecar) -> None:
    checked = 0
    with httpx.Client(base_url=debug_sidecar.url, timeout=10) as http:
        for r in route_table():
            path = _fill(r.pattern)
            for method in sorted(r.methods):
                if path == "/v1.0/shutdown":
                    continue  # with a token it would stop the sidecar; 401 checked below
                for headers in ({}, {"dapr-api-token": WRONG}, {"dapr-api-token": ""}):
                    got = http.request(method, path, headers=headers).status_code
                    want = 204 if (method == "GET" and path in EXEMPT) else 401
                    assert got == want, (method, path, headers, got)
                    checked += 1
        assert http.post("/v1.0/shutdown").status_code == 401
        # the fallback (dapr-app-id on any other path) too
        assert http.get("/anything", headers={"dapr-app-id": "x"}).status_code == 401
    assert debug_sidecar.alive()
    print(f"token checked on {checked} route/method/header combinations")


def test_tokens_and_secrets_never_reach_the_log(debug_sidecar: Sidecar) -> None:
    """Debug logging; right and wrong tokens over HTTP and gRPC, a secret read: none of the
    four strings is anywhere in the log."""
    with httpx.Client(base_url=debug_sidecar.url, timeout=10) as http:
        ok = {"dapr-api-token": TOKEN}
        assert http.get("/v1.0/secrets/envsecrets/ONE", headers=ok).json() == {"ONE": SECRET}
        assert http.get("/v1.0/secrets/envsecrets/bulk", headers=ok).status_code == 200
        http.post("/v1.0/state/statestore", headers=ok, json=[{"key": "k", "value": SECRET}])
        http.get("/v1.0/state/statestore/k", headers={"dapr-api-token": WRONG})
        http.post("/v1.0/invoke/hostile/method/x", headers={**ok, "authorization": WRONG})
        http.get("/v1.0/metadata", headers={"dapr-api-token": WRONG})
    with grpc.insecure_channel(f"127.0.0.1:{debug_sidecar.ports['grpc']}") as ch:
        method = ch.unary_unary("/dapr.proto.runtime.v1.Dapr/GetMetadata")
        method(b"", metadata=(("dapr-api-token", TOKEN),), timeout=10)
        with pytest.raises(grpc.RpcError):
            method(b"", metadata=(("dapr-api-token", WRONG),), timeout=10)
    text = debug_sidecar.log_text()
    assert " DEBUG " in text or "DEBUG" in text  # debug logging was really on
    for needle in (TOKEN, APP_TOKEN, SECRET, WRONG):
        assert needle not in text, f"{needle} is in the log"
    assert problems_in_log(text) == []


def _listening(pid: int, port: int) -> list[str]:
    """Local addresses (hex, as /proc/net shows them) the process listens on at ``port``."""
    out = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            addr, state = fields[1], fields[3]
            if state == "0A" and int(addr.rsplit(":", 1)[1], 16) == port:
                out.append(addr.rsplit(":", 1)[0])
    return out


def test_the_api_ports_listen_on_loopback_by_default(debug_sidecar: Sidecar) -> None:
    assert debug_sidecar.proc is not None
    for name in ("http", "grpc", "metrics"):
        addrs = _listening(debug_sidecar.proc.pid, debug_sidecar.ports[name])
        # 127.0.0.1, as IPv4 or IPv4-mapped IPv6 (grpc's choice), and nothing else
        assert addrs, name
        assert all(a in ("0100007F", "0000000000000000FFFF00000100007F") for a in addrs), (
            name, addrs)
    assert "beyond this machine" not in debug_sidecar.log_text()


def test_listening_wider_logs_a_warning(tmp_path: Path) -> None:
    sc = Sidecar(tmp_path, extra=["--dapr-listen-addresses", "0.0.0.0"]).start()
    try:
        assert sc.proc is not None
        assert _listening(sc.proc.pid, sc.ports["http"]) == ["00000000"]
    finally:
        sc.stop()
    lines = [line for line in sc.log_text().splitlines() if "beyond this machine" in line]
    assert len(lines) == 1
    assert "WARN" in lines[0]
    assert "no DAPR_API_TOKEN" in lines[0]


# ------------------------------------------------------------------ Unix domain socket
def _uds_client(path: Path) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://sidecar",
                        timeout=10)


def test_the_http_api_on_a_unix_socket(tmp_path: Path) -> None:
    folder = tmp_path / "sock"
    folder.mkdir()
    path = folder / "dapr-http-hostile.socket"
    sc = Sidecar(tmp_path / "sc", extra=["--unix-domain-socket", str(folder)],
                 env={"DAPR_API_TOKEN": TOKEN}).start()
    try:
        assert "http" not in sc.ports  # instead of TCP, as daprd does
        assert sc.runtime["unixDomainSocket"] == str(path)
        mode = path.stat().st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o660
        with _uds_client(path) as http:
            assert http.get("/v1.0/healthz/outbound").status_code == 204
            assert http.get("/v1.0/metadata").status_code == 401
            r = http.get("/v1.0/metadata", headers={"dapr-api-token": TOKEN})
            assert r.status_code == 200
            assert r.json()["id"] == "hostile"
    finally:
        assert sc.stop() == 0
    assert not path.exists()  # removed on shutdown


def test_a_stale_socket_is_replaced_and_a_live_one_is_not(tmp_path: Path) -> None:
    folder = tmp_path / "sock"
    folder.mkdir()
    path = folder / "dapr-http-hostile.socket"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # what a kill -9 leaves behind: a socket file nobody serves
    stale.close()
    assert path.exists()
    sc = Sidecar(tmp_path / "a", extra=["--unix-domain-socket", str(folder)]).start()
    try:
        with _uds_client(path) as http:
            assert http.get("/v1.0/healthz/outbound").status_code == 204
        second = Sidecar(tmp_path / "b", extra=["--unix-domain-socket", str(folder)])
        with pytest.raises(AssertionError, match="another process serves"):
            second.start()
        with _uds_client(path) as http:  # the first one still serves
            assert http.get("/v1.0/healthz/outbound").status_code == 204
    finally:
        sc.stop()


def test_a_path_that_is_not_a_socket_is_not_deleted(tmp_path: Path) -> None:
    folder = tmp_path / "sock"
    folder.mkdir()
    path = folder / "dapr-http-hostile.socket"
    path.write_text("keep me")
    sc = Sidecar(tmp_path / "a", extra=["--unix-domain-socket", str(folder)])
    with pytest.raises(AssertionError, match="is not a socket"):
        sc.start()
    assert path.read_text() == "keep me"
    assert os.path.exists(path)
