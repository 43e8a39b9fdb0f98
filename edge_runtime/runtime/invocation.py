"""Wiring service invocation into a sidecar: the app channel for invocations, the name
table from ``--config``, ``Resiliency`` app policies, the peer client and the internal port.

Across-device invocation is off unless configured: the peer client exists only when the name
table lists apps or mDNS is configured, the internal server only with ``--internal-grpc-port``.
Both need gRPC, which ``--disable-grpc-api`` never loads: calls to other apps then answer a
clear error, and an internal port is a start error. The internal port also refuses to start
without a token or mutual TLS. grpc is imported only here, lazily; so is zeroconf, only for
``component: mdns`` (a start error without the ``mdns`` extra). mDNS browses from
:meth:`InvocationSetup.open`, announces once the internal port listens and says goodbye when
it stops.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from edge_runtime.api.invoking import Invoking
from edge_runtime.api.universal import RuntimeView
from edge_runtime.appchannel import Invoker
from edge_runtime.appchannel.http import HttpAppChannel
from edge_runtime.config.manifest import RawResource
from edge_runtime.config.settings import Settings
from edge_runtime.invocation import RemoteInvoker, TlsFiles
from edge_runtime.invocation.discovery import MdnsStartError
from edge_runtime.invocation.nameresolution import NameResolution, load_configuration
from edge_runtime.invocation.resiliency import app_policies
from edge_runtime.runtime.build import StartError

if TYPE_CHECKING:
    from edge_runtime.appchannel.grpc import GrpcAppChannel

log = logging.getLogger("edge_runtime.invocation")

# daprd puts no limit on an invocation; this only stops a hung app from holding a connection
# for ever. Resiliency timeouts are the way to bound calls.
APP_CALL_TIMEOUT_S = 300.0
GRPC_OFF = (
    "remote invocation is off: this sidecar runs with --disable-grpc-api and sidecars call "
    "each other over gRPC"
)


class InvocationSetup:
    """Owns the invocation parts of one sidecar: :meth:`open`, :meth:`start_server`,
    :meth:`stop_server`, :meth:`close`, in that order."""

    def __init__(self, settings: Settings, view: RuntimeView, others: Sequence[RawResource]):
        self.settings = settings
        self.view = view
        self.others = others
        self.invoking: Invoking | None = None
        self._channel: HttpAppChannel | GrpcAppChannel | None = None
        self._remote: RemoteInvoker | None = None
        self._server: Any = None
        self._mdns: Any = None  # edge_runtime.invocation.mdns.MdnsDiscovery, imported lazily

    def _tls(self) -> TlsFiles | None:
        s = self.settings
        cert, key, ca = s.internal_tls_cert, s.internal_tls_key, s.internal_tls_ca
        if cert is None and key is None and ca is None:
            return None
        if cert is None or key is None or ca is None:
            raise StartError("mutual TLS needs all of --internal-tls-cert, --internal-tls-key "
                             "and --internal-tls-ca")
        return TlsFiles(cert, key, ca)

    def _names(self) -> NameResolution:
        s = self.settings
        if s.config_path is None:
            return NameResolution(namespace=s.namespace)
        names, problems = load_configuration(s.config_path, namespace=s.namespace)
        if problems:
            for p in problems:
                log.error("%s", p)
            raise StartError(f"{len(problems)} problem(s) in --config {s.config_path}")
        return names

    def _local(self) -> Invoker | None:
        s = self.settings
        if s.app_port is None:
            return None
        if s.app_protocol == "grpc":
            # Imported here: only a gRPC app (or the gRPC API) loads grpc.
            from edge_runtime.appchannel.grpc import GrpcAppChannel

            self._channel = GrpcAppChannel(
                s.app_channel_address, s.app_port, api_token=s.app_api_token,
                timeout_s=APP_CALL_TIMEOUT_S, max_message_size=s.max_body_size,
            )
            return self._channel
        self._channel = HttpAppChannel(
            s.app_channel_address, s.app_port, api_token=s.app_api_token,
            timeout_s=APP_CALL_TIMEOUT_S, app_id=s.app_id, max_reply_bytes=s.max_body_size,
        )
        return self._channel

    def open(self) -> Invoking:
        """Read the configuration and build the core; raises :class:`StartError`."""
        s = self.settings
        names = self._names()
        policies, problems = app_policies(self.others, s.app_id)
        if problems:
            for p in problems:
                log.error("%s", p)
            raise StartError(f"{len(problems)} problem(s) in the Resiliency resources")
        remote_off = ""
        mdns_class = _mdns_class() if names.mdns else None
        if not names.apps and mdns_class is None:
            remote_off = "no other app is known: give --config a nameResolution table"
        elif s.disable_grpc_api:
            remote_off = GRPC_OFF
        else:
            self._remote = self._peer_client()
            if mdns_class is not None:
                try:
                    self._mdns = mdns_class(s.app_id, s.namespace)
                except MdnsStartError as exc:
                    raise StartError(f"cannot start mDNS name resolution: {exc}") from None
        self.invoking = Invoking(
            self.view, local=self._local(), names=names, remote=self._remote,
            remote_off=remote_off, policies=policies, discovery=self._mdns,
        )
        if names.apps:
            log.info("apps reachable through other sidecars: %s", ", ".join(sorted(names.apps)))
        if self._mdns is not None:
            log.info("mDNS name resolution: other apps are looked up on the local network")
        return self.invoking

    def _peer_client(self) -> RemoteInvoker:
        s = self.settings
        from edge_runtime.invocation.peers import PeerClient  # grpc: only when configured

        try:
            return PeerClient(
                token=s.internal_token, tls=self._tls(), server_name=s.internal_tls_server_name,
                max_body_size=s.max_body_size, namespace=s.namespace,
            )
        except OSError as exc:
            raise StartError(f"cannot read the internal TLS files: {exc}") from None

    async def start_server(self) -> None:
        """Open ``--internal-grpc-port`` when given (and announce it over mDNS when
        configured); raises :class:`StartError`."""
        s = self.settings
        if s.internal_grpc_port is None:
            return
        if s.disable_grpc_api:
            raise StartError("--internal-grpc-port needs gRPC: drop --disable-grpc-api")
        tls = self._tls()
        if not s.internal_token and tls is None:
            raise StartError("--internal-grpc-port needs --internal-token (or env "
                             "EDGE_RUNTIME_INTERNAL_TOKEN) or mutual TLS (--internal-tls-*)")
        assert self.invoking is not None, "open() comes first"
        from edge_runtime.invocation.internal import InternalServer  # grpc: only when configured

        server = InternalServer(
            self.invoking.call_from_peer, app_id=s.app_id,
            host=s.internal_grpc_listen_address, port=s.internal_grpc_port,
            token=s.internal_token, tls=tls, max_body_size=s.max_body_size,
            graceful_s=s.graceful_shutdown_s,
        )
        try:
            await server.start()
        except OSError as exc:
            raise StartError(
                f"cannot listen on {s.internal_grpc_listen_address}:{s.internal_grpc_port} "
                f"for the internal invocation port: {exc}"
            ) from None
        self._server = server
        self.view.ports["internal"] = server.port
        if self._mdns is not None:
            try:
                self._mdns.announce(server.port, s.internal_grpc_listen_address)
            except ValueError as exc:
                raise StartError(f"cannot announce the internal port over mDNS: {exc}") from None

    async def stop_server(self) -> None:
        """Stop announcing over mDNS, then stop the internal port (in-flight calls finish
        within the grace period)."""
        if self._mdns is not None:
            await self._mdns.withdraw()
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop()

    async def close(self) -> None:
        """Stop mDNS, close the peer channels and the app channel; idempotent."""
        if self._mdns is not None:
            await self._mdns.close()
        if self._remote is not None:
            await self._remote.close()
        if self._channel is not None:
            await self._channel.close()


def _mdns_class() -> Any:
    """:class:`~edge_runtime.invocation.mdns.MdnsDiscovery`; raises :class:`StartError`
    without the ``mdns`` extra."""
    try:
        from edge_runtime.invocation.mdns import MdnsDiscovery  # zeroconf: only when configured
    except ImportError as exc:
        raise StartError(
            "nameResolution component mdns needs the mdns extra: pip install "
            f"'edge-runtime[mdns]' ({exc})"
        ) from None
    return MdnsDiscovery
