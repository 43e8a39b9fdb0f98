"""The HTTP API without httptools (and without uvloop), as on 32-bit ARM where neither has a
wheel: uvicorn's pure-Python h11 serves the same API. A ``sitecustomize`` on the sidecar's
PYTHONPATH makes both imports fail, as if they were not installed; the process's memory map
shows which parser is loaded."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.components import SQLITE_STATESTORE
from tests.support.sidecar import ManagedProcess, SidecarProcess, stopped_at_the_end

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = "\n" + SQLITE_STATESTORE
HAS_HTTPTOOLS = importlib.util.find_spec("httptools") is not None


@pytest.fixture
async def procs() -> AsyncIterator[list[ManagedProcess]]:
    async for started in stopped_at_the_end():
        yield started


def without_httptools(tmp_path: Path) -> dict[str, str]:
    """Environment in which ``import httptools`` and ``import uvloop`` fail."""
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(
        "import sys\n"
        "for name in ('httptools', 'uvloop'):\n"
        "    sys.modules[name] = None  # import raises; find_spec says absent\n"
    )
    paths = [str(block), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(paths)}


def loaded(pid: int, library: str) -> bool:
    return library in Path(f"/proc/{pid}/maps").read_text()


def test_the_parser_is_h11_when_httptools_is_absent(tmp_path: Path) -> None:
    code = "from edge_runtime.api.http.server import HTTP_PARSER; print(HTTP_PARSER)"
    env = {**os.environ, **without_httptools(tmp_path)}
    blocked = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, timeout=60, env=env)
    assert blocked.stdout.strip() == "h11"
    normal = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert normal.stdout.strip() == ("httptools" if HAS_HTTPTOOLS else "h11")


async def test_the_api_serves_on_h11(tmp_path: Path, procs: list[ManagedProcess]) -> None:
    sidecar = SidecarProcess(tmp_path, "h11", COMPONENTS, env=without_httptools(tmp_path))
    procs.append(sidecar)
    await sidecar.start()
    assert sidecar.proc is not None
    assert not loaded(sidecar.proc.pid, "httptools")
    async with sidecar.client() as client:
        r = await client.post("/v1.0/state/statestore",
                              json=[{"key": "k", "value": {"n": 1, "s": "é" * 5000}}])
        assert r.status_code == 204, r.text
        r = await client.get("/v1.0/state/statestore/k", params={"metadata.x": "1"})
        assert r.status_code == 200
        assert r.json() == {"n": 1, "s": "é" * 5000}
        assert r.headers["etag"]
        r = await client.get("/v1.0/nothing-here")
        assert r.status_code == 404
    assert "event loop: asyncio" in sidecar.log.read_text()


@pytest.mark.skipif(not HAS_HTTPTOOLS, reason="httptools is not installed here")
async def test_httptools_is_used_where_installed(tmp_path: Path,
                                                 procs: list[ManagedProcess]) -> None:
    sidecar = SidecarProcess(tmp_path, "httptools", COMPONENTS)
    procs.append(sidecar)
    await sidecar.start()
    assert sidecar.proc is not None
    assert loaded(sidecar.proc.pid, "httptools")
