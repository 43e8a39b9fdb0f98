"""The method table of ``dapr.proto.runtime.v1.Dapr``, without the generated service module.

The dapr wheel's ``dapr_pb2_grpc`` (``add_DaprServicer_to_server``, the default servicer)
imports ``dapr_pb2``, which imports the messages of every Dapr API: actors, workflows, jobs,
crypto, AI, search, vectors ... and the package modules ``dapr.proto`` and
``dapr.proto.runtime.v1`` import all 42 modules as well. We serve nine of them, so the package
modules (and ``dapr``'s, which scans the installed distributions for legacy extensions) are
made without running their ``__init__`` (:mod:`edge_runtime.support.lazypkg`:
anyone else in the process asking for the rest still gets it) and the handlers are built here
from the message classes we serve: 1.4 MiB less RSS (docs/performance/footprint.md).

Every other method of the service is registered too, answering what the generated default
servicer answers (UNIMPLEMENTED, "Method not implemented!"), so a client sees the same service
and the metrics wrapper counts those calls as before. ``tests/api/test_grpc_service.py``
holds this table to the service's descriptor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc

from edge_runtime.api.grpc.rewrap import HandlerWrapper, wrap_all
from edge_runtime.support import daprproto

daprproto.prepare()

# After the package modules are in place (the imports below would run their __init__ otherwise).
from dapr.proto.common.v1 import common_pb2  # noqa: E402
from dapr.proto.runtime.v1 import (  # noqa: E402
    binding_pb2,
    configuration_pb2,
    invoke_pb2,
    metadata_pb2,
    pubsub_pb2,
    secret_pb2,
    state_pb2,
)
from google.protobuf import empty_pb2  # noqa: E402

SERVICE = "dapr.proto.runtime.v1.Dapr"

_UU, _US, _SU, _SS = "unary_unary", "unary_stream", "stream_unary", "stream_stream"
_st, _ps, _cf = state_pb2, pubsub_pb2, configuration_pb2

#: Served methods: name -> (kind, request class, response class).
SERVED: dict[str, tuple[str, Any, Any]] = {
    "InvokeService": (_UU, invoke_pb2.InvokeServiceRequest, common_pb2.InvokeResponse),
    "GetState": (_UU, _st.GetStateRequest, _st.GetStateResponse),
    "GetBulkState": (_UU, _st.GetBulkStateRequest, _st.GetBulkStateResponse),
    "SaveState": (_UU, _st.SaveStateRequest, empty_pb2.Empty),
    "QueryStateAlpha1": (_UU, _st.QueryStateRequest, _st.QueryStateResponse),
    "DeleteState": (_UU, _st.DeleteStateRequest, empty_pb2.Empty),
    "DeleteBulkState": (_UU, _st.DeleteBulkStateRequest, empty_pb2.Empty),
    "ExecuteStateTransaction": (_UU, _st.ExecuteStateTransactionRequest, empty_pb2.Empty),
    "PublishEvent": (_UU, _ps.PublishEventRequest, empty_pb2.Empty),
    "BulkPublishEventAlpha1": (_UU, _ps.BulkPublishRequest, _ps.BulkPublishResponse),
    "BulkPublishEvent": (_UU, _ps.BulkPublishRequest, _ps.BulkPublishResponse),
    "SubscribeTopicEventsAlpha1": (
        _SS, _ps.SubscribeTopicEventsRequestAlpha1, _ps.SubscribeTopicEventsResponseAlpha1),
    "InvokeBinding": (_UU, binding_pb2.InvokeBindingRequest, binding_pb2.InvokeBindingResponse),
    "GetSecret": (_UU, secret_pb2.GetSecretRequest, secret_pb2.GetSecretResponse),
    "GetBulkSecret": (_UU, secret_pb2.GetBulkSecretRequest, secret_pb2.GetBulkSecretResponse),
    "GetConfigurationAlpha1": (_UU, _cf.GetConfigurationRequest, _cf.GetConfigurationResponse),
    "GetConfiguration": (_UU, _cf.GetConfigurationRequest, _cf.GetConfigurationResponse),
    "SubscribeConfigurationAlpha1": (
        _US, _cf.SubscribeConfigurationRequest, _cf.SubscribeConfigurationResponse),
    "SubscribeConfiguration": (
        _US, _cf.SubscribeConfigurationRequest, _cf.SubscribeConfigurationResponse),
    "UnsubscribeConfigurationAlpha1": (
        _UU, _cf.UnsubscribeConfigurationRequest, _cf.UnsubscribeConfigurationResponse),
    "UnsubscribeConfiguration": (
        _UU, _cf.UnsubscribeConfigurationRequest, _cf.UnsubscribeConfigurationResponse),
    "GetMetadata": (_UU, metadata_pb2.GetMetadataRequest, metadata_pb2.GetMetadataResponse),
    "SetMetadata": (_UU, metadata_pb2.SetMetadataRequest, empty_pb2.Empty),
    # ShutdownRequest (in dapr_pb2 itself) has no fields: Empty reads the same bytes.
    "Shutdown": (_UU, empty_pb2.Empty, empty_pb2.Empty),
}

_UNARY_NOT_SERVED = """
        RegisterActorTimer UnregisterActorTimer RegisterActorReminder UnregisterActorReminder
        UnregisterActorRemindersByType ListActorReminders ListActorTimers GetActorState
        GetActorReminder GetActorTimer ExecuteActorStateTransaction InvokeActor TryLockAlpha1
        UnlockAlpha1 SubtleGetKeyAlpha1 SubtleEncryptAlpha1 SubtleDecryptAlpha1
        SubtleWrapKeyAlpha1 SubtleUnwrapKeyAlpha1 SubtleSignAlpha1 SubtleVerifyAlpha1
        StartWorkflowAlpha1 GetWorkflowAlpha1 PurgeWorkflowAlpha1 TerminateWorkflowAlpha1
        PauseWorkflowAlpha1 ResumeWorkflowAlpha1 RaiseEventWorkflowAlpha1 StartWorkflowBeta1
        GetWorkflowBeta1 PurgeWorkflowBeta1 TerminateWorkflowBeta1 PauseWorkflowBeta1
        ResumeWorkflowBeta1 RaiseEventWorkflowBeta1 ScheduleJobAlpha1 ScheduleJob GetJobAlpha1
        GetJob DeleteJobAlpha1 DeleteJob DeleteJobsByPrefixAlpha1 DeleteJobsByPrefix
        ListJobsAlpha1 ListJobs ConverseAlpha1 ConverseAlpha2 CreateIndexAlpha1 GetIndexAlpha1
        ListIndexesAlpha1 DeleteIndexAlpha1 IndexDocumentsAlpha1 GetDocumentsAlpha1
        DeleteDocumentsAlpha1 SearchAlpha1 CreateCollectionAlpha1 GetCollectionAlpha1
        ListCollectionsAlpha1 DeleteCollectionAlpha1 UpsertVectorsAlpha1 DeleteVectorsAlpha1
        GetVectorsAlpha1 QueryVectorsAlpha1 BatchQueryVectorsAlpha1 DeleteBinaryFileAlpha1
"""

#: The service's other methods, by kind: answered UNIMPLEMENTED, their requests never parsed.
NOT_SERVED: dict[str, tuple[str, ...]] = {
    _UU: tuple(_UNARY_NOT_SERVED.split()),
    _US: ("GetBinaryFileAlpha1",),
    _SU: ("SetBinaryFileAlpha1",),
    _SS: ("SubscribeActorEventsAlpha1", "EncryptAlpha1", "DecryptAlpha1"),
}

_MAKERS: dict[str, Callable[..., grpc.RpcMethodHandler]] = {
    _UU: grpc.unary_unary_rpc_method_handler,
    _US: grpc.unary_stream_rpc_method_handler,
    _SU: grpc.stream_unary_rpc_method_handler,
    _SS: grpc.stream_stream_rpc_method_handler,
}


def not_implemented(request: Any, context: Any) -> Any:
    """What a generated servicer's default method does."""
    context.set_code(grpc.StatusCode.UNIMPLEMENTED)
    context.set_details("Method not implemented!")
    raise NotImplementedError("Method not implemented!")


def method_handlers(servicer: Any) -> dict[str, grpc.RpcMethodHandler]:
    """Every method of the service: ``servicer``'s for :data:`SERVED`, the default for the
    rest."""
    out = {
        name: _MAKERS[kind](getattr(servicer, name), request_deserializer=req.FromString,
                            response_serializer=resp.SerializeToString)
        for name, (kind, req, resp) in SERVED.items()
    }
    for kind, names in NOT_SERVED.items():
        for name in names:
            out[name] = _MAKERS[kind](not_implemented)
    return out


def add_to_server(
    servicer: Any, server: Any, wrappers: Sequence[HandlerWrapper] = ()
) -> None:
    """Register the service on a ``grpc.aio`` server, as ``add_DaprServicer_to_server``
    would, each method's handler wrapped by ``wrappers`` (the first outermost)."""
    handlers = wrap_all(method_handlers(servicer), wrappers)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
