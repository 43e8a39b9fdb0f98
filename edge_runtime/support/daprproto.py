"""The dapr wheel's package modules, made without running their ``__init__``.

``dapr/__init__`` scans the installed distributions for legacy extensions (through
``importlib.metadata``: 0.8 MiB of RSS), ``dapr/proto/__init__`` and
``dapr/proto/runtime/v1/__init__`` import the messages of every Dapr API (42 modules). The gRPC
API and the gRPC app channel use a few of them: :func:`prepare`, called before either imports a
message module, lets them load only those (:mod:`edge_runtime.support.lazypkg`: anyone asking
the packages for anything else still gets it). See :mod:`edge_runtime.api.grpc.service`.
"""

from __future__ import annotations

from edge_runtime.support import pbruntime
from edge_runtime.support.lazypkg import without_init

PACKAGES = ("dapr", "dapr.proto", "dapr.proto.common.v1", "dapr.proto.runtime.v1")


def prepare() -> None:
    """Put the package modules in place (a no-op for those already imported), and the
    protobuf runtime's deferred module (:mod:`edge_runtime.support.pbruntime`)."""
    pbruntime.prepare()
    for name in PACKAGES:
        without_init(name)
