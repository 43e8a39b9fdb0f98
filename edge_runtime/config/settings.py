"""Process settings: daprd's flags and ours, after parsing (see ``cli.py``)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

DEFAULT_MAX_BODY = 4 * 1024 * 1024
_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?|[kmgt]b?|[KMGT]B)?\s*$")
_FACTORS = {
    "": 1,
    "k": 1000,
    "kb": 1000,
    "K": 1000,
    "KB": 1000,
    "Ki": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "M": 1000**2,
    "MB": 1000**2,
    "Mi": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "G": 1000**3,
    "GB": 1000**3,
    "Gi": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "T": 1000**4,
    "TB": 1000**4,
    "Ti": 1024**4,
}


def parse_quantity(text: str) -> int:
    """A size like daprd's ``--max-body-size``: ``4Mi``, ``4MB``, ``512Ki`` or plain bytes."""
    m = _QUANTITY.match(text)
    if m is None:
        raise ValueError(f"expected a size such as 4Mi, 512Ki or 1048576, got {text!r}")
    return int(float(m.group(1)) * _FACTORS[m.group(2) or ""])


def default_data_dir() -> Path:
    """``$STATE_DIRECTORY`` when systemd sets it (first entry), else ``./.edge-runtime``."""
    state_dir = os.environ.get("STATE_DIRECTORY", "")
    if state_dir:
        return Path(state_dir.split(":")[0])
    return Path(".edge-runtime")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the runtime needs from the command line and environment."""

    app_id: str
    app_port: int | None = None
    app_protocol: Literal["http", "grpc"] = "http"
    app_channel_address: str = "127.0.0.1"
    dapr_http_port: int = 3500
    dapr_grpc_port: int = 50001
    disable_grpc_api: bool = False
    dapr_listen_address: str = "127.0.0.1"
    # daprd's --unix-domain-socket: a folder; the HTTP API then listens on
    # <dir>/dapr-http-<app-id>.socket instead of TCP.
    unix_domain_socket: Path | None = None
    metrics_port: int = 9090
    enable_metrics: bool = True
    resources_paths: tuple[Path, ...] = ()
    max_body_size: int = DEFAULT_MAX_BODY
    log_level: str = "info"
    log_as_json: bool = False
    data_dir: Path = field(default_factory=default_data_dir)
    durability: Literal["full", "normal"] = "full"
    commit_window_ms: float = 2.0  # docs/performance.md: the wear/latency trade-off
    max_disk_mb: float | None = None
    graceful_shutdown_s: float = 5.0
    api_token: str | None = None
    app_api_token: str | None = None
    namespace: str = ""
    app_command: tuple[str, ...] = ()
    app_ready_timeout_s: float | None = None
    # Service invocation across sidecars (runtime/invocation.py).
    config_path: Path | None = None
    internal_grpc_port: int | None = None
    internal_grpc_listen_address: str = "0.0.0.0"  # noqa: S104 - peers on other devices call it
    internal_token: str | None = None
    internal_tls_cert: Path | None = None
    internal_tls_key: Path | None = None
    internal_tls_ca: Path | None = None
    internal_tls_server_name: str | None = None
