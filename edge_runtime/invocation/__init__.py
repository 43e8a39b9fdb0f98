"""Service invocation across sidecars: the parts the API core (``api/invoking.py``) builds on.

* :mod:`~edge_runtime.invocation.headers`: which headers are forwarded, caller/callee ids and
  W3C trace context;
* :mod:`~edge_runtime.invocation.nameresolution`: daprd's ``--config`` ``Configuration`` with
  our ``static`` name resolution (app id → ``host:port`` of the peer's internal gRPC port);
* :mod:`~edge_runtime.invocation.resiliency` and :mod:`~edge_runtime.invocation.breaker`:
  ``Resiliency`` ``targets.apps`` policies (timeout, retry, circuit breaker);
* :mod:`~edge_runtime.invocation.peers` (client) and :mod:`~edge_runtime.invocation.internal`
  (server): our internal gRPC service ``edge_runtime.internal.v1.Invocation/CallLocal``. These
  two are the only modules here that import grpc, and they are imported only when invocation
  across devices is configured (``--disable-grpc-api`` never loads them).

This module holds the grpc-free contract between the core and the peer client.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from edge_runtime.appchannel import InvokeCall, InvokeResult
from edge_runtime.errors import GrpcCode

__all__ = ["PeerError", "PeerUnreachableError", "RemoteInvoker", "TlsFiles"]

SERVICE = "edge_runtime.internal.v1.Invocation"
METHOD = "CallLocal"
CALL_LOCAL = f"/{SERVICE}/{METHOD}"

# Call metadata of CallLocal (the request and reply messages are dapr.proto.common.v1's
# InvokeRequest and InvokeResponse). Headers travel as JSON [[name, value], ...] in a -bin key,
# so any header name and value survives the trip.
MD_TOKEN = "edge-internal-token"  # noqa: S105 - a metadata key, not a secret
MD_CALLER = "edge-caller-app-id"
MD_CALLER_NAMESPACE = "edge-caller-namespace"
MD_CALLEE = "edge-callee-app-id"
MD_VERB = "edge-http-verb"
MD_HEADERS = "edge-headers-bin"
MD_STATUS = "edge-status"  # trailing metadata of the reply: the app's HTTP status


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files for mutual TLS on the internal port: our certificate chain and key, and the
    CA that signed the peers' certificates."""

    cert: Path
    key: Path
    ca: Path


class PeerError(Exception):
    """The peer sidecar was reached and answered the call with an error status.

    ``code`` is the gRPC status; the message is the peer's. The request may have reached the
    app, so this is never retried by the built-in policy.
    """

    def __init__(self, code: GrpcCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class PeerUnreachableError(Exception):
    """No connection to the peer sidecar could be made, so the request was never sent.

    Safe to retry: the app cannot have seen it.
    """


@runtime_checkable
class RemoteInvoker(Protocol):
    """Calls ``CallLocal`` on a peer sidecar. Coroutine-safe."""

    async def call(
        self, address: str, call: InvokeCall, *, caller: str, callee: str
    ) -> InvokeResult:
        """Deliver ``call`` to app ``callee`` through the peer sidecar at ``address``
        (``host:port``); the app's answer whatever its status.

        Raises :class:`PeerUnreachableError` when no connection could be made and
        :class:`PeerError` for any error status from the peer. Cancelling the awaiting task
        cancels the call on the peer (and the peer's call to its app).
        """
        ...

    async def close(self) -> None:
        """Close every connection; idempotent."""
        ...
