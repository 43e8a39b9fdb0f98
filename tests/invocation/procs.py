"""Sidecars as separate processes for invocation tests and the bench: ``edge-runtime run``
with port 0 everywhere, ports read from ``runtime.json``."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

from tests.support.sidecar import SidecarProcess

STATE = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: statestore}
spec:
  type: state.in-memory
  version: v1
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def name_table(path: Path, apps: dict[str, str]) -> Path:
    """A ``--config`` file with a static name table."""
    entries = "".join(f'        {k}: "{v}"\n' for k, v in apps.items())
    path.write_text(textwrap.dedent("""\
        apiVersion: dapr.io/v1alpha1
        kind: Configuration
        metadata: {name: edge}
        spec:
          nameResolution:
            component: static
            configuration:
              apps:
        """) + entries)
    return path


class Sidecar(SidecarProcess):
    """A sidecar named by its app id (the invocation tests' shape of :class:`SidecarProcess`)."""

    def __init__(
        self, root: Path, app_id: str, *, resources: str = STATE, args: tuple[str, ...] = (),
        env: dict[str, str] | None = None, prefix: tuple[str, ...] = (),
    ) -> None:
        super().__init__(
            root, app_id, resources, extra=args, app_id=app_id, env=env, prefix=prefix
        )
