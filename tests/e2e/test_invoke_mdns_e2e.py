"""mDNS name resolution across two sidecar processes in two network namespaces.

Sidecar A runs in namespace ``a`` with ``nameResolution.component: mdns`` and no table;
sidecar B (with its echo app) runs in namespace ``b`` and announces its internal port. The
namespaces are joined by a veth pair and nothing else (:mod:`tests.invocation.netns`), so
no mDNS packet reaches the machine's network. Skipped where namespaces cannot be made.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.invocation.netns import ADDRESSES, NetnsError, NetnsPair, NsSidecar, unavailable

pytestmark = pytest.mark.slow

TOKEN = "s3cret-shared"
ROOT = Path(__file__).resolve().parents[2]
ENV = {
    "EDGE_RUNTIME_INTERNAL_TOKEN": TOKEN,
    # for `python -m tests.invocation.echoapp` (B's app)
    "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
}
RETRIES = "edge_runtime_invocation_retries_total"


def mdns_config(path: Path, apps: dict[str, str] | None = None) -> Path:
    text = textwrap.dedent("""\
        apiVersion: dapr.io/v1alpha1
        kind: Configuration
        metadata: {name: edge}
        spec:
          nameResolution:
            component: mdns
        """)
    if apps:
        text += "    configuration:\n      apps:\n" + "".join(
            f'        {k}: "{v}"\n' for k, v in apps.items()
        )
    path.write_text(text)
    return path


@pytest.fixture
def netns() -> Iterator[NetnsPair]:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    pair = NetnsPair()
    try:
        pair.create()
    except NetnsError as exc:
        pytest.skip(f"cannot make network namespaces here: {exc}")
    yield pair
    pair.delete()


@pytest.fixture
def app_b(netns: NetnsPair) -> Iterator[None]:
    """B's echo app on 127.0.0.1:8080 in namespace b (apart from the sidecar, which the
    tests kill and restart)."""
    app = subprocess.Popen(
        [*netns.prefix("b"), sys.executable, "-m", "tests.invocation.echoapp"],
        env={**os.environ, **ENV, "APP_ID": "b", "APP_PORT": "8080"},
    )
    yield
    app.terminate()
    app.wait(10)


@pytest.fixture
async def sidecars(netns: NetnsPair) -> AsyncIterator[list[NsSidecar]]:
    """Sidecars to stop (before the namespaces go)."""
    started: list[NsSidecar] = []
    yield started
    for s in started:
        await s.stop()
        s.close_bridges()


async def side_a(
    tmp_path: Path, netns: NetnsPair, sidecars: list[NsSidecar],
    apps: dict[str, str] | None = None,
) -> NsSidecar:
    config = mdns_config(tmp_path / "a-config.yaml", apps)
    a = NsSidecar(tmp_path, "a", netns, "a", args=("--config", str(config)), env=ENV)
    sidecars.append(a)
    return await a.start()


async def side_b(tmp_path: Path, netns: NetnsPair, sidecars: list[NsSidecar]) -> NsSidecar:
    config = mdns_config(tmp_path / "b-config.yaml")
    b = NsSidecar(tmp_path, "b", netns, "b", env=ENV, args=(
        "--app-port", "8080", "--internal-grpc-port", "0", "--config", str(config),
    ))
    sidecars.append(b)
    return await start_announced(b)


def announcements(b: NsSidecar) -> int:
    try:
        return b.log.read_text().count("mDNS: announcing app b as b-")
    except FileNotFoundError:
        return 0


async def start_announced(b: NsSidecar, limit_s: float = 30) -> NsSidecar:
    """Start ``b`` and wait until its log says it announces itself."""
    before = announcements(b)
    await b.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while announcements(b) == before:
        if loop.time() > deadline:
            raise AssertionError(f"b did not announce itself:\n{b.log.read_text()[-3000:]}")
        await asyncio.sleep(0.05)
    return b


async def call_b(client: httpx.AsyncClient, path: str = "orders/1") -> httpx.Response:
    return await client.post(f"/v1.0/invoke/b/method/{path}", content=b"payload",
                             headers={"content-type": "text/plain"})


async def until(client: httpx.AsyncClient, done: str, limit_s: float = 30) -> httpx.Response:
    """Call b until the answer's status or error message contains ``done``."""
    deadline = asyncio.get_running_loop().time() + limit_s
    while True:
        r = await call_b(client)
        if done in f"{r.status_code} {r.text}":
            return r
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still {r.status_code} {r.text} after {limit_s}s")
        await asyncio.sleep(0.2)


async def test_a_finds_b_over_mdns_and_forgets_it_on_goodbye(
    tmp_path: Path, netns: NetnsPair, app_b: None, sidecars: list[NsSidecar]
) -> None:
    b = await side_b(tmp_path, netns, sidecars)
    a = await side_a(tmp_path, netns, sidecars)
    async with a.client(timeout=30) as client:
        r = await until(client, "200")
        got = r.json()
        assert (got["method"], got["path"], got["body"]) == ("POST", "/orders/1", "payload")
        assert got["headers"]["dapr-caller-app-id"] == "a"
        assert got["headers"]["dapr-callee-app-id"] == "b"
        assert r.headers["x-app"] == "b"
        r = await client.get("/items/3", headers={"dapr-app-id": "b"})
        assert (r.status_code, r.json()["path"]) == (200, "/items/3")

        r = await client.post("/v1.0/invoke/nobody/method/x")
        assert r.status_code == 500
        assert r.json() == {
            "errorCode": "ERR_DIRECT_INVOKE",
            "message": "failed to invoke, id: nobody, err: app nobody not found via mDNS (no "
                       "sidecar announced it within 3s)",
        }

        await b.stop()  # goodbye packets: A forgets B rather than dialing a closed port
        r = await until(client, "not found via mDNS")
        assert r.status_code == 500
    log = b.log.read_text()
    assert "mDNS: announcing app b as b-" in log
    assert "mDNS: stopped announcing b-" in log
    assert "said goodbye" in a.log.read_text()


async def test_a_restarted_peer_is_resolved_again(
    tmp_path: Path, netns: NetnsPair, app_b: None, sidecars: list[NsSidecar]
) -> None:
    b = await side_b(tmp_path, netns, sidecars)
    a = await side_a(tmp_path, netns, sidecars)
    async with a.client(timeout=30) as client:
        await until(client, "200")
        old = b.ports["internal"]
        await b.kill()  # no goodbye: A still holds the old address
        await start_announced(b)  # a new instance, on a new internal port
        assert b.ports["internal"] != old
        await until(client, "200")
        # The old address (still listed: no goodbye) costs one failed attempt at most, then
        # is avoided; taking turns without that would try it on every other call.
        retries = await a.metric(RETRIES, 'reason="unreachable"')
        for _ in range(6):
            assert (await call_b(client)).status_code == 200
        assert await a.metric(RETRIES, 'reason="unreachable"') <= retries + 1


async def test_static_entries_win_over_mdns(
    tmp_path: Path, netns: NetnsPair, app_b: None, sidecars: list[NsSidecar]
) -> None:
    b = await side_b(tmp_path, netns, sidecars)
    wrong = f"{ADDRESSES['b']}:1"  # B's namespace, a port nothing listens on
    a = await side_a(tmp_path, netns, sidecars, apps={"b": wrong})
    async with a.client(timeout=30) as client:
        r = await call_b(client)
    assert r.status_code == 500
    reason = f"after 4 attempts: cannot connect to the sidecar at {wrong}"
    assert reason in r.json()["message"]
    assert b.ports["internal"] != 1
