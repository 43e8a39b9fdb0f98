"""The Dapr gRPC API (``dapr.proto.runtime.v1.Dapr``) over the transport-neutral core.

This package is the only place that imports ``grpc``, ``grpc_status``, ``google.protobuf``
and the ``dapr`` SDK's generated stubs, so an HTTP-only device never loads them: the runtime
imports it lazily when it opens the gRPC port.
"""

from __future__ import annotations

from edge_runtime.api.grpc.server import GrpcServer

__all__ = ["GrpcServer"]
