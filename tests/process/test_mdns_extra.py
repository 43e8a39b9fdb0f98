"""``nameResolution.component: mdns`` needs the ``mdns`` extra (zeroconf): without it the
sidecar refuses to start and says what to install; and zeroconf is imported only for mDNS.

The sidecars here that could open mDNS sockets run in a fresh, empty network namespace
(``unshare --net``, loopback only), never on the machine's network.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CONFIG = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: edge}
spec:
  nameResolution:
    component: %s
"""

# zeroconf "not installed": an import of it (or of anything in it) fails as a missing module.
HIDE = "import sys; sys.modules['zeroconf'] = None; sys.modules['zeroconf.asyncio'] = None; "

PROBE = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path
    from edge_runtime.config.settings import Settings
    from edge_runtime.runtime.runtime import Runtime

    async def main() -> None:
        settings = Settings(
            app_id="probe", dapr_http_port=0, dapr_grpc_port=0, metrics_port=0,
            data_dir=Path(sys.argv[1]), config_path=Path(sys.argv[2]),
        )
        runtime = Runtime(settings, handle_signals=False)
        task = asyncio.create_task(runtime.run())
        await asyncio.wait_for(runtime.ready.wait(), 20)
        print(json.dumps("zeroconf" in sys.modules))
        runtime.request_shutdown()
        assert await asyncio.wait_for(task, 20) == 0

    asyncio.run(main())
""")


def isolated() -> list[str] | None:
    """argv prefix: a new network namespace with only loopback, up (multicast works there);
    ``None`` when one cannot be made (not root, no unshare)."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip") or "/usr/sbin/ip"
    if unshare is None or not Path(ip).exists() or subprocess.run(
        [unshare, "--net", "true"], capture_output=True, check=False
    ).returncode != 0:
        return None
    return [unshare, "--net", "sh", "-c", f'{ip} link set lo up && exec "$@"', "sh"]


def config(tmp_path: Path, component: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG % component)
    return path


def test_mdns_without_the_extra_is_a_clear_start_error(tmp_path: Path) -> None:
    # In a namespace when we can make one, so that even a failure to hide zeroconf could not
    # announce anything on this machine's network; hiding a module needs no privileges.
    out = subprocess.run(
        [*(isolated() or []), sys.executable, "-c",
         HIDE + "from edge_runtime.cli import main; sys.exit(main(sys.argv[1:]))",
         "run", "--app-id", "a", "--dapr-http-port", "0", "--dapr-grpc-port", "0",
         "--metrics-port", "0", "--data-dir", str(tmp_path / "data"),
         "--config", str(config(tmp_path, "mdns"))],
        capture_output=True, timeout=60, check=False,
    )
    err = out.stderr.decode()
    assert out.returncode == 1, err
    assert ("cannot start: nameResolution component mdns needs the mdns extra: pip install "
            "'edge-runtime[mdns]'") in err
    assert "zeroconf" in err


@pytest.mark.parametrize(("component", "loads"), [("static", False), ("mdns", True)])
def test_zeroconf_is_imported_only_for_mdns(tmp_path: Path, component: str, loads: bool) -> None:
    prefix = isolated()
    if prefix is None:
        pytest.skip("cannot make a network namespace here (needs root, unshare and ip)")
    out = subprocess.run(
        [*prefix, sys.executable, "-c", PROBE, str(tmp_path / "data"),
         str(config(tmp_path, component))],
        capture_output=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    assert json.loads(out.stdout.decode().strip().splitlines()[-1]) is loads
