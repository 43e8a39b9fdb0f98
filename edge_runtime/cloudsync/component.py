"""``cloudsync.grpc``: the device's cloud sync component.

Metadata: ``endpoint`` (``host:port`` of the cloud's gRPC port, required); ``deviceID``
(default ``$BALENA_DEVICE_UUID``, else ``/etc/machine-id``, else the app id); ``token``, or
``caCert`` + ``clientCert`` + ``clientKey`` for mutual TLS (PEM text, or a file path; relative
paths resolve under the data dir) with ``serverName`` to expect in the cloud's certificate
(files are read again at the next connection attempt once one of them changed: rotation);
``stateStores`` (comma-separated ``state.sqlite`` component names whose changes sync);
``topics`` (comma-separated ``pubsub/topic`` filters with MQTT wildcards: events published on
them also go to the cloud); ``drainRateLimit`` (records/s), ``batchSize``, ``keepalive``,
``retryMinDelay``/``retryMaxDelay`` (reconnect backoff), and the cloud outbox's
``maxMessages``/``maxBytes``/``onFull``/``durability`` (DESIGN.md §5).

The component owns the desired-state store (``<data-dir>/cloud.db``, a configuration store
named after the component) and the clock; the runtime (``runtime/cloud.py``) attaches the
sources and starts the client once every component is built.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.api.configuration import ConfigItem, Handler
from edge_runtime.cloudsync.desired import DesiredStore
from edge_runtime.cloudsync.hlc import HLC
from edge_runtime.cloudsync.sources import Source
from edge_runtime.cloudsync.status import SyncStatus
from edge_runtime.cloudsync.topics import TopicFilters
from edge_runtime.config.metadata import MetadataError, declare_metadata, decode, meta, problem
from edge_runtime.errors import ComponentError
from edge_runtime.outbox.limits import OutboxMetadata, outbox_metadata
from edge_runtime.registry import ComponentContext

__all__ = ["CloudSyncComponent", "CloudSyncMetadata", "create", "default_device_id"]

MACHINE_ID = Path("/etc/machine-id")


@dataclass(frozen=True)
class CloudSyncMetadata:
    """The decoded ``spec.metadata`` (durations in seconds)."""

    endpoint: str = meta("endpoint", required=True, help="host:port of the cloud's gRPC port")
    device_id: str = meta("deviceID", default="")
    token: str = meta("token", default="")
    ca_cert: str = meta("caCert", default="")
    client_cert: str = meta("clientCert", default="")
    client_key: str = meta("clientKey", default="")
    server_name: str = meta("serverName", default="")
    state_stores: str = meta("stateStores", default="")
    topics: str = meta("topics", default="")
    drain_rate_limit: float | None = meta("drainRateLimit", kind="float", minimum=0.001)
    batch_size: int = meta("batchSize", kind="int", default=500, minimum=1, maximum=10_000)
    keepalive: float = meta("keepalive", kind="duration", default=30.0, minimum=0.2)
    retry_min_delay: float = meta("retryMinDelay", kind="duration", default=1.0, minimum=0.01)
    retry_max_delay: float = meta("retryMaxDelay", kind="duration", default=60.0, minimum=0.01)

    def stores(self) -> list[str]:
        """The synced state store names."""
        return [s.strip() for s in self.state_stores.split(",") if s.strip()]

    def filters(self) -> list[str]:
        """The topic filters as written."""
        return [t.strip() for t in self.topics.split(",") if t.strip()]


def default_device_id(app_id: str, environ: os._Environ[str] | dict[str, str] = os.environ,
                      machine_id: Path = MACHINE_ID) -> str:
    """``BALENA_DEVICE_UUID``, else ``/etc/machine-id``, else the app id (DESIGN.md §5)."""
    balena = environ.get("BALENA_DEVICE_UUID", "").strip()
    if balena:
        return balena
    try:
        text = machine_id.read_text().strip()
    except OSError:
        text = ""
    return text or app_id


class CloudSyncComponent:
    """The component instance: settings, clock, desired state, and (once started) the client.

    Implements :class:`~edge_runtime.api.configuration.ConfigurationStore` over the desired
    state.
    """

    def __init__(self, ctx: ComponentContext, settings: CloudSyncMetadata,
                 outbox: OutboxMetadata, filters: TopicFilters, pem: dict[str, bytes]) -> None:
        self.name = ctx.manifest.name
        self.ctx = ctx
        self.settings = settings
        self.outbox_settings = outbox
        self.filters = filters
        self.pem = pem
        self.device_id = settings.device_id or default_device_id(ctx.app_id)
        self.hlc = HLC(ctx.data_dir / "cloudsync.hlc")
        self.desired = DesiredStore(ctx.data_dir / "cloud.db", durability=ctx.durability,
                                    quarantine_dir=ctx.data_dir / "quarantine")
        self.status = SyncStatus(self.name, self.device_id, settings.endpoint)
        self.client: object | None = None  # a cloudsync.client.SyncClient once started

    @property
    def quarantined(self) -> list[str]:
        """Corrupt files moved aside at init (for the metadata endpoint)."""
        return list(self.desired.db.quarantined)

    async def init(self) -> None:
        """Open the desired-state database."""
        await self.desired.open()
        self.status.desired_seq = self.desired.seq

    async def start(self, sources: Sequence[Source]) -> None:
        """Start the client over ``sources`` (called by the runtime after every component
        is built)."""
        from edge_runtime.cloudsync.client import (  # grpc: only now
            CredentialFiles,
            Credentials,
            SyncClient,
        )
        from edge_runtime.pubsub.mqtt.backoff import Backoff

        s = self.settings

        def credentials(pem: dict[str, bytes]) -> Credentials:
            return Credentials(token=s.token, ca=pem.get("caCert"), cert=pem.get("clientCert"),
                               key=pem.get("clientKey"), server_name=s.server_name)

        creds = credentials(self.pem)
        files = {k: v for k, v in self._tls_entries().items() if not _is_pem(v)}
        reread = CredentialFiles(
            tuple(self.ctx.resolve_path(v) for v in files.values()),
            lambda: credentials({k: _pem(self.ctx, k, v) for k, v in self._tls_entries().items()
                                 if v}),
        ) if files else None
        client = SyncClient(
            endpoint=s.endpoint, device_id=self.device_id, credentials=creds, sources=sources,
            desired=self.desired, hlc=self.hlc, status=self.status, data_dir=self.ctx.data_dir,
            batch_size=s.batch_size, rate_limit=s.drain_rate_limit,
            backoff=Backoff(s.retry_min_delay, max(s.retry_min_delay, s.retry_max_delay)),
            keepalive_s=s.keepalive, credential_files=reread,
        )
        self.status.streams = []
        client.start()
        self.client = client

    def _tls_entries(self) -> dict[str, str]:
        s = self.settings
        return {k: v for k, v in (("caCert", s.ca_cert), ("clientCert", s.client_cert),
                                  ("clientKey", s.client_key)) if v}

    async def stop_client(self) -> None:
        """Stop the client (idempotent); the runtime calls it before closing the stores."""
        client, self.client = self.client, None
        if client is not None:
            await client.stop()  # type: ignore[attr-defined]

    async def close(self) -> None:
        """Stop the client and close the desired-state database."""
        await self.stop_client()
        await self.desired.close()

    async def get_configuration(self, keys: Sequence[str]) -> dict[str, ConfigItem]:
        """Desired-state items (see ``api/configuration.py``)."""
        return await self.desired.get_configuration(keys)

    def watch_configuration(self, keys: Sequence[str], handler: Handler) -> Callable[[], None]:
        """Changes of desired-state keys (see ``api/configuration.py``)."""
        return self.desired.watch_configuration(keys, handler)


def _is_pem(value: str) -> bool:
    return value.lstrip().startswith("-----BEGIN")


def _pem(ctx: ComponentContext, name: str, value: str) -> bytes:
    if _is_pem(value):
        return value.encode()
    path = ctx.resolve_path(value)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ComponentError(f"cannot read {name} {path}: {exc}") from None


@declare_metadata(CloudSyncMetadata)
def create(ctx: ComponentContext) -> CloudSyncComponent:
    """The ``cloudsync.grpc`` factory; raises ``MetadataError`` (``file:line``) on bad
    metadata and ``ComponentError`` when a certificate file cannot be read."""
    md, manifest = ctx.metadata, ctx.manifest
    settings = decode(CloudSyncMetadata, md, manifest)
    outbox = outbox_metadata(md, manifest)
    try:
        filters = TopicFilters(settings.filters())
    except ValueError as exc:
        raise problem(manifest, md, "topics", str(exc)) from None
    tls = {"caCert": settings.ca_cert, "clientCert": settings.client_cert,
           "clientKey": settings.client_key}
    given = {k for k, v in tls.items() if v}
    if given and given != set(tls):
        missing = sorted(set(tls) - given)
        raise problem(manifest, md, missing[0],
                      "mutual TLS needs all of caCert, clientCert and clientKey")
    if not given and not settings.token:
        raise MetadataError(problem(manifest, md, "token",
                                    "give a token, or caCert, clientCert and clientKey").problems)
    pem = {k: _pem(ctx, k, v) for k, v in tls.items() if v}
    return CloudSyncComponent(ctx, settings, outbox, filters, pem)
