"""The Dapr gRPC API (``dapr.proto.runtime.v1.Dapr``) over the transport-neutral core.

This package is the only place that imports ``grpc``, ``grpc_status``, ``google.protobuf``
and the ``dapr`` SDK's generated stubs, so an HTTP-only device never loads them: the runtime
imports it lazily when it opens the gRPC port.

The ``dapr`` and ``dapr.proto`` package modules are made here, before any module of this
package imports a message module, without running their ``__init__``: ``dapr``'s looks for
legacy extension installs through ``importlib.metadata`` (0.8 MiB of RSS and a scan of every
installed distribution), ``dapr.proto``'s import every Dapr API's messages (see
:mod:`edge_runtime.api.grpc.service`).
"""

from __future__ import annotations

from edge_runtime.support import daprproto

daprproto.prepare()

from edge_runtime.api.grpc.server import GrpcServer  # noqa: E402 - after the packages

__all__ = ["GrpcServer"]
