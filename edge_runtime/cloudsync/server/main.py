"""``edge-runtime cloud serve``: the store, the gRPC sync endpoint and the HTTP API.

Runs until SIGTERM/SIGINT. With port 0 the chosen ports are logged and written to
``--ports-file`` (JSON ``{"grpc": n, "http": n}``), as the sidecar's runtime.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from edge_runtime.api.http.server import HttpServer, bind
from edge_runtime.cloudsync.hlc import HLC
from edge_runtime.cloudsync.protocol import sync_pb2_grpc
from edge_runtime.cloudsync.server.fleet import StaticPages
from edge_runtime.cloudsync.server.http import TokenGate, cloud_app
from edge_runtime.cloudsync.server.service import ServiceLimits, SyncService
from edge_runtime.cloudsync.server.sqlite import SqliteCloudStore, open_store
from edge_runtime.support.atomicfile import write_atomic

__all__ = ["CloudOptions", "CloudServer", "serve"]

log = logging.getLogger("edge_runtime.cloud")


@dataclass(frozen=True, slots=True)
class CloudOptions:
    """The command line of ``cloud serve``."""

    store_url: str
    token: str
    device_token: str = ""
    grpc_port: int = 50051
    http_port: int = 8080
    host: str = "0.0.0.0"  # noqa: S104 - devices connect from the network
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    ports_file: Path | None = None
    limits: ServiceLimits = field(default_factory=ServiceLimits)


class CloudServer:
    """Owns the store, the gRPC server and the HTTP server; ``start`` then ``stop``."""

    def __init__(self, options: CloudOptions) -> None:
        self.options = options
        self.store = open_store(options.store_url)
        self.ports: dict[str, int] = {}
        self._grpc: Any = None
        self._http: HttpServer | None = None
        self.service: SyncService | None = None

    async def start(self) -> None:
        """Open the store and both ports; raises ``OSError``/``ValueError`` when it cannot."""
        o = self.options
        tls = o.tls_cert is not None
        if not tls and not o.device_token:
            raise ValueError("devices need a way in: --device-token (or env "
                             "EDGE_CLOUD_DEVICE_TOKEN), or --tls-cert/--tls-key/--tls-ca")
        await self.store.open()
        # A PostgreSQL store has no file beside it: its clock starts above the stored HLCs.
        path = self.store.path if isinstance(self.store, SqliteCloudStore) else None
        hlc = HLC(path.with_suffix(".hlc") if path is not None else None)
        hlc.update(await self.store.max_hlc())
        self.service = SyncService(self.store, hlc, device_token=o.device_token, tls=tls,
                                   limits=o.limits)
        server = grpc.aio.server(options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 1000),
        ], compression=grpc.Compression.Gzip)
        sync_pb2_grpc.add_CloudSyncServicer_to_server(self.service, server)  # type: ignore[no-untyped-call]
        address = f"{o.host}:{o.grpc_port}"
        if tls:
            assert o.tls_key is not None
            assert o.tls_ca is not None
            assert o.tls_cert is not None
            creds = grpc.ssl_server_credentials(
                [(o.tls_key.read_bytes(), o.tls_cert.read_bytes())],
                root_certificates=o.tls_ca.read_bytes(), require_client_auth=True)
            port = server.add_secure_port(address, creds)
        else:
            port = server.add_insecure_port(address)
        await server.start()
        self._grpc = server
        self.ports["grpc"] = port
        app = cloud_app(self.store, hlc, desired_changed=self.service.desired_changed,
                        slow=self.service.slow)
        pages = StaticPages(TokenGate(app, o.token))
        self._http = HttpServer(pages, bind(o.host, o.http_port),  # type: ignore[arg-type]
                                name="cloud-http", graceful_s=5.0)
        await self._http.start()
        self.ports["http"] = self._http.port
        log.info("cloud runtime listening: grpc=%d http=%d store=%s", port, self.ports["http"],
                 o.store_url)
        if o.ports_file is not None:
            write_atomic(o.ports_file, json.dumps(self.ports).encode())

    async def stop(self) -> None:
        """Stop serving and close the store."""
        if self._http is not None:
            await self._http.stop()
        if self._grpc is not None:
            await self._grpc.stop(2.0)
        await self.store.close()


async def serve(options: CloudOptions) -> int:
    """Run until a signal; the exit code."""
    server = CloudServer(options)
    try:
        await server.start()
    except (OSError, ValueError, RuntimeError) as exc:
        log.error("cannot start the cloud runtime: %s", exc)  # noqa: TRY400 - the whole story
        await server.stop()
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("stopping")
    await server.stop()
    return 0
