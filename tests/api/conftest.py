"""A sidecar in the test's event loop, serving on real loopback sockets (port 0)."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_runtime.config.settings import Settings
from edge_runtime.runtime.runtime import Runtime
from tests.support.components import SQLITE_STATESTORE, component

COMPONENTS = "\n" + SQLITE_STATESTORE + "---\n" + component("memstore", "state.in-memory")


@dataclass
class Sidecar:
    """A running sidecar and an HTTP client pointed at it."""

    runtime: Runtime
    task: asyncio.Task[int]
    client: httpx.AsyncClient
    data_dir: Path

    @property
    def port(self) -> int:
        return self.runtime.view.ports["http"]


StartSidecar = Callable[..., Any]


@pytest.fixture
async def start_sidecar(tmp_path: Path) -> AsyncIterator[StartSidecar]:
    """Start sidecars with given component YAML and settings; all are stopped at the end."""
    started: list[Sidecar] = []

    async def start(components: str = COMPONENTS, **overrides: Any) -> Sidecar:
        n = len(started)
        res = tmp_path / f"resources{n}"
        res.mkdir()
        (res / "components.yaml").write_text(textwrap.dedent(components))
        data_dir = overrides.pop("data_dir", tmp_path / f"data{n}")
        settings = Settings(
            app_id="app",
            dapr_http_port=0,
            dapr_grpc_port=0,
            metrics_port=0,
            resources_paths=(res,),
            data_dir=data_dir,
        )
        settings = replace(settings, **overrides)
        runtime = Runtime(settings, handle_signals=False)
        task = asyncio.create_task(runtime.run())
        ready = asyncio.create_task(runtime.ready.wait())
        await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED, timeout=20)
        if not runtime.ready.is_set():
            ready.cancel()
            code = await task if task.done() else None
            raise RuntimeError(f"the sidecar did not start (exit code {code})")
        headers = {"dapr-api-token": settings.api_token} if settings.api_token else {}
        client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{runtime.view.ports['http']}", headers=headers, timeout=10
        )
        sidecar = Sidecar(runtime, task, client, data_dir)
        started.append(sidecar)
        return sidecar

    yield start
    for s in started:
        await s.client.aclose()
        if not s.task.done():
            s.runtime.request_shutdown()
        await asyncio.wait_for(s.task, 20)


@pytest.fixture
async def sidecar(start_sidecar: StartSidecar) -> Sidecar:
    """A sidecar with a SQLite store `statestore` and an in-memory store `memstore`."""
    result: Sidecar = await start_sidecar()
    return result


@pytest.fixture
async def http(sidecar: Sidecar) -> httpx.AsyncClient:
    """The default sidecar's client."""
    return sidecar.client
