"""The client side of ``edge_runtime.internal.v1.Invocation/CallLocal``: one gRPC channel per
peer address, reused across calls.

Before each call the channel must be connected: a connection that fails (refused, TLS
handshake refused, nothing answering within ``connect_timeout_s``) raises
:class:`~edge_runtime.invocation.PeerUnreachableError` and the channel is dropped, so the next
attempt dials afresh rather than waiting out grpc's own reconnect backoff. Only then is the
request sent; any error status after that is a :class:`~edge_runtime.invocation.PeerError`
(the request may have reached the app). No grpc exception leaves this module.

With mutual TLS, grpc says only that the channel failed; a failure then gets one diagnostic
handshake (:mod:`edge_runtime.support.tlsprobe`, at most one per peer every few seconds) so
the error names a refused certificate and which side refused it. The PEM files are read again
when a new channel is made after one of them changed (rotation: a channel is made after a
failed connection, so a refused certificate, once renewed on disk, is used at the next call).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc
from dapr.proto.common.v1 import common_pb2

from edge_runtime.appchannel import InvokeCall, InvokeResult
from edge_runtime.errors import GrpcCode
from edge_runtime.invocation import (
    CALL_LOCAL,
    MD_CALLEE,
    MD_CALLER,
    MD_CALLER_NAMESPACE,
    MD_TOKEN,
    PeerError,
    PeerUnreachableError,
    TlsFiles,
)
from edge_runtime.invocation.wire import request_of, result_of
from edge_runtime.support.filestamp import Stamp, stamp
from edge_runtime.support.tlserrors import explain, is_tls_error
from edge_runtime.support.tlsprobe import probe

__all__ = ["PeerClient", "channel_options"]

log = logging.getLogger("edge_runtime.invocation")

_READY = grpc.ChannelConnectivity.READY
_FAILED = (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN)
# Headers travel in metadata: allow more than grpc's 8 KiB default (HTTP servers take ~64 KiB).
MAX_METADATA = 256 * 1024
# Room for the message framing around a body of --max-body-size.
ENVELOPE = 64 * 1024
_PROBE_EVERY_S = 5.0  # a peer that keeps failing is probed again at most this often


def channel_options(max_body_size: int) -> list[tuple[str, Any]]:
    """Options shared by the internal server and client: message and metadata limits."""
    limit = max_body_size + ENVELOPE
    return [
        ("grpc.max_send_message_length", limit),
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_metadata_size", MAX_METADATA),
    ]


class PeerClient:
    """Calls peer sidecars. Coroutine-safe; ``close()`` ends every channel."""

    def __init__(
        self,
        *,
        token: str | None,
        tls: TlsFiles | None = None,
        server_name: str | None = None,
        max_body_size: int,
        connect_timeout_s: float = 3.0,
        namespace: str = "",
    ) -> None:
        self._token = token
        self._namespace = namespace
        self._connect_timeout_s = connect_timeout_s
        self._options = channel_options(max_body_size)
        if server_name:
            self._options.append(("grpc.ssl_target_name_override", server_name))
        self._credentials: Any = None
        self._server_name = server_name or ""
        self._tls = tls
        self._tls_stamp: Stamp = ()
        self._pem: tuple[bytes, bytes, bytes] | None = None  # ca, cert, key: for the probe
        if tls is not None:  # read now: a missing file stops the start, not the first call
            self._read_tls(tls)
        self._peers: dict[str, tuple[Any, Any]] = {}
        self._probed: dict[str, tuple[float, str | None]] = {}

    def _read_tls(self, tls: TlsFiles) -> None:
        """Read the PEM files; ``OSError`` when one cannot be read."""
        paths = (tls.ca, tls.cert, tls.key)
        self._tls_stamp = stamp(paths)  # before reading: a change meanwhile is seen next time
        ca, cert, key = (p.read_bytes() for p in paths)
        self._pem = (ca, cert, key)
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert)

    def _refresh_tls(self) -> None:
        """Read the PEM files again when they changed; a failure is logged, the old kept."""
        tls = self._tls
        if tls is None or stamp((tls.ca, tls.cert, tls.key)) == self._tls_stamp:
            return
        try:
            self._read_tls(tls)
        except OSError as exc:
            log.error("invocation: the certificate files changed but cannot be read, keeping"  # noqa: TRY400 - a traceback adds nothing
                      " the previous ones: %s", exc)
            return
        self._probed.clear()
        log.info("invocation: certificate files changed: reloaded from %s, %s, %s", tls.cert,
                 tls.key, tls.ca)

    def _peer(self, address: str) -> tuple[Any, Any]:
        """The channel to ``address`` and its ``CallLocal`` callable (made on first use)."""
        peer = self._peers.get(address)
        if peer is None:
            self._refresh_tls()
            if self._credentials is not None:
                channel = grpc.aio.secure_channel(address, self._credentials, self._options)
            else:
                channel = grpc.aio.insecure_channel(address, self._options)
            stub = channel.unary_unary(
                CALL_LOCAL,
                request_serializer=common_pb2.InvokeRequest.SerializeToString,
                response_deserializer=common_pb2.InvokeResponse.FromString,
            )
            peer = self._peers[address] = (channel, stub)
        return peer

    async def _drop(self, address: str, peer: tuple[Any, Any]) -> None:
        if self._peers.get(address) is peer:
            del self._peers[address]
        await peer[0].close()

    async def _connected(self, address: str) -> Any:
        """``CallLocal`` on a connected channel to ``address``."""
        peer = self._peer(address)
        channel = peer[0]
        state = channel.get_state(try_to_connect=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_timeout_s
        while state is not _READY:
            if state in _FAILED:
                await self._drop(address, peer)
                why = await self._tls_failure(address)
                raise PeerUnreachableError(f"cannot connect to the sidecar at {address}{why}")
            try:
                async with asyncio.timeout_at(deadline):
                    await channel.wait_for_state_change(state)
            except TimeoutError:
                await self._drop(address, peer)
                raise PeerUnreachableError(
                    f"no connection to the sidecar at {address} within "
                    f"{self._connect_timeout_s:g}s"
                ) from None
            state = channel.get_state()
        return peer[1]

    async def _tls_failure(self, address: str) -> str:
        """``": TLS ..."`` when a handshake with ``address`` fails on a certificate, else ""."""
        if self._pem is None:
            return ""
        now = time.monotonic()
        last = self._probed.get(address)
        if last is None or now - last[0] > _PROBE_EVERY_S:
            host, _, port = address.rpartition(":")
            found = None
            if host and port.isdigit():
                ca, cert, key = self._pem
                found = await asyncio.to_thread(probe, host.strip("[]"), int(port), ca=ca,
                                                cert=cert, key=key,
                                                server_name=self._server_name)
            if len(self._probed) > 256:
                self._probed.clear()
            self._probed[address] = last = (now, found)
            if found is not None and is_tls_error(found):
                log.warning("invocation: TLS with the sidecar at %s failed: %s (%s)", address,
                            explain(found) or "refused", found)
        found = last[1]
        if found is None or not is_tls_error(found):
            return ""
        return f": TLS failed: {explain(found) or 'refused'} ({found})"

    async def call(
        self, address: str, call: InvokeCall, *, caller: str, callee: str
    ) -> InvokeResult:
        """See :class:`~edge_runtime.invocation.RemoteInvoker`."""
        call_local = await self._connected(address)
        message, metadata = request_of(call)
        metadata += [(MD_CALLER, caller), (MD_CALLEE, callee)]
        if self._namespace:
            metadata.append((MD_CALLER_NAMESPACE, self._namespace))
        if self._token:
            metadata.append((MD_TOKEN, self._token))
        rpc = call_local(message, metadata=tuple(metadata))
        try:
            reply = await rpc
            trailing = await rpc.trailing_metadata()
        except grpc.aio.AioRpcError as exc:
            code = GrpcCode(exc.code().value[0])
            raise PeerError(code, exc.details() or code.name) from None
        return result_of(reply, tuple(trailing or ()))

    async def close(self) -> None:
        """Close every channel; idempotent."""
        peers, self._peers = list(self._peers.values()), {}
        for channel, _stub in peers:
            await channel.close()
