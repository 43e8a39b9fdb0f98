"""Our method table of ``dapr.proto.runtime.v1.Dapr`` (built without the generated service
module, to load 9 of the dapr wheel's 42 message modules) against the service's descriptor:
every method is there with its streaming kind, served ones with the request and response
types the descriptor names; and the sidecar's gRPC package does not load the rest."""

from __future__ import annotations

from dapr.proto.runtime.v1 import dapr_pb2
from google.protobuf import empty_pb2

from edge_runtime.api.grpc import service
from edge_runtime.api.grpc.dapr import DaprServicer
from tests.support.fresh import run_python


def _kind(m: object) -> str:
    c, s = m.client_streaming, m.server_streaming  # type: ignore[attr-defined]
    return f"{'stream' if c else 'unary'}_{'stream' if s else 'unary'}"


def test_table_matches_the_service_descriptor() -> None:
    desc = dapr_pb2.DESCRIPTOR.services_by_name["Dapr"]
    assert desc.full_name == service.SERVICE
    ours = {name: kind for name, (kind, _, _) in service.SERVED.items()}
    for kind, names in service.NOT_SERVED.items():
        for name in names:
            assert name not in ours, name
            ours[name] = kind
    assert ours == {m.name: _kind(m) for m in desc.methods}
    for name, (_, req, resp) in service.SERVED.items():
        m = desc.methods_by_name[name]
        if name == "Shutdown":  # ShutdownRequest has no fields; Empty stands in for it
            assert not m.input_type.fields
            assert req is empty_pb2.Empty
        else:
            assert req.DESCRIPTOR.full_name == m.input_type.full_name, name
        assert resp.DESCRIPTOR.full_name == m.output_type.full_name, name


def test_every_served_method_is_implemented() -> None:
    for name in service.SERVED:
        assert callable(getattr(DaprServicer, name, None)), name
    handlers = service.method_handlers(object.__new__(DaprServicer))
    assert len(handlers) == len(dapr_pb2.DESCRIPTOR.services_by_name["Dapr"].methods)


CHECK = """
import sys
import edge_runtime.api.grpc
loaded = sorted(m.rsplit(".", 1)[1] for m in sys.modules
                if m.startswith("dapr.proto.") and m.endswith("_pb2"))
print(" ".join(loaded))
assert "importlib.metadata" not in sys.modules  # dapr's __init__ did not run
# The packages stay whole for whoever asks (the SDK uses dapr.proto.api_v1).
import dapr.proto
assert dapr.proto.api_v1.TryLockRequest is not None
from dapr.proto.runtime.v1 import DaprStub
import dapr
assert not hasattr(dapr, "no_such_name")  # any other name runs dapr's own __init__ first
assert "importlib.metadata" in sys.modules
"""


def test_the_grpc_package_loads_only_the_messages_it_serves() -> None:
    assert run_python(CHECK).split() == ["appcallback_pb2", "binding_pb2", "common_pb2",
                                  "configuration_pb2", "invoke_pb2", "metadata_pb2",
                                  "pubsub_pb2", "secret_pb2", "state_pb2"]


APP_CHANNEL = """
import sys
from edge_runtime.support import daprproto
daprproto.prepare()  # what `edge-runtime run --app-protocol grpc` does first
import edge_runtime.appchannel.grpc
loaded = sorted(m.rsplit(".", 1)[1] for m in sys.modules
                if m.startswith("dapr.proto.") and m.endswith("_pb2"))
print(" ".join(loaded))
"""


def test_the_grpc_app_channel_loads_only_its_messages() -> None:
    assert run_python(APP_CHANNEL).split() == ["appcallback_pb2", "common_pb2"]
