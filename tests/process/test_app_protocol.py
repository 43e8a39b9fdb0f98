"""``--app-protocol``: the unsupported values are a clear error, and grpc stays out of memory
unless the app or the API needs it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.appchannel.grpcapp import free_port

PROBE = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path
    from edge_runtime.config.settings import Settings
    from edge_runtime.runtime.runtime import Runtime

    async def main() -> None:
        settings = Settings(
            app_id="probe", app_port=int(sys.argv[1]), app_protocol=sys.argv[2],
            disable_grpc_api=True, dapr_http_port=0, dapr_grpc_port=0, metrics_port=0,
            data_dir=Path(sys.argv[3]),
        )
        runtime = Runtime(settings, handle_signals=False)
        task = asyncio.create_task(runtime.run())
        await asyncio.wait_for(runtime.ready.wait(), 20)
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "grpc")))
        runtime.request_shutdown()
        await asyncio.wait_for(task, 20)

    asyncio.run(main())
""")


@pytest.mark.parametrize(("protocol", "loads_grpc"), [("http", False), ("grpc", True)])
def test_grpc_is_imported_only_for_a_grpc_app(
    tmp_path: Path, protocol: str, loads_grpc: bool
) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(free_port()), protocol, str(tmp_path / "data")],
        capture_output=True, timeout=60, check=True,
    )
    modules = json.loads(out.stdout.decode().strip().splitlines()[-1])
    assert bool(modules) is loads_grpc


@pytest.mark.parametrize("protocol", ["grpcs", "https", "h2c"])
def test_unsupported_app_protocols_are_a_clear_error(protocol: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edge_runtime", "run", "--app-id", "a", "--app-port", "1",
         "--app-protocol", protocol],
        capture_output=True, timeout=60, check=False,
    )
    assert out.returncode == 2
    assert f"{protocol} (daprd's TLS/h2c channel to the app) is not supported" in (
        out.stderr.decode())
