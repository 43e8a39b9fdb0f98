"""``dapr.proto.runtime.v1.Dapr``: messages in, core calls, messages out (contract §4.2).

Only translation lives here; validation, key prefixing and error classification are in
:mod:`edge_runtime.api.universal` and :mod:`edge_runtime.api.publishing`. Bulk publish and
streaming subscriptions come from :mod:`~edge_runtime.api.grpc.pubsub`, bulk delete, query
and secrets from :mod:`~edge_runtime.api.grpc.state_secrets`. The methods served are those of
:data:`edge_runtime.api.grpc.service.SERVED`; the others answer UNIMPLEMENTED, as the generated
default servicer does (the SDK's bulk-publish fallback relies on that).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from dapr.proto.runtime.v1 import binding_pb2, metadata_pb2, state_pb2
from google.protobuf import empty_pb2

from edge_runtime import errors as E
from edge_runtime.api.bindings import OutputBindings
from edge_runtime.api.configuration import Configurations
from edge_runtime.api.grpc import configuration as grpc_configuration
from edge_runtime.api.grpc.errors import handled
from edge_runtime.api.grpc.invoke import invoke_service
from edge_runtime.api.grpc.pubsub import PubSubRpcs, call_trace
from edge_runtime.api.grpc.state_secrets import (
    CONCURRENCY,
    CONSISTENCY,
    StateSecretRpcs,
    delete_item,
)
from edge_runtime.api.invoking import Invoking
from edge_runtime.api.publishing import Publisher
from edge_runtime.api.universal import StateItem, TransactionOp, Universal
from edge_runtime.errors import APIError
from edge_runtime.runtime.streaming import StreamHub


def _is_json(metadata: Mapping[str, str]) -> bool:
    ctype = next((v for k, v in metadata.items() if k.lower() == "contenttype"), "")
    return ctype.split(";", 1)[0].strip().lower() == "application/json"


def state_item(item: Any, *, need_value: bool = True) -> StateItem:
    """``common.v1.StateItem`` → :class:`StateItem`.

    gRPC values are bytes (stored binary) unless the item's metadata says
    ``contentType=application/json``: then they are JSON text (contract §4.2, §8.1).
    """
    metadata = dict(item.metadata)
    as_json = need_value and _is_json(metadata)
    if as_json:
        try:
            json.loads(item.value)
        except (ValueError, RecursionError) as exc:
            raise APIError(
                E.STATE_SAVE, f"failed saving state with key {item.key}: invalid JSON: {exc}"
            ) from None
    options = item.options if item.HasField("options") else None
    return StateItem(
        key=item.key,
        value=bytes(item.value),
        is_binary=not as_json,
        etag=item.etag.value if item.HasField("etag") and item.etag.value else None,
        metadata=metadata,
        concurrency=CONCURRENCY.get(options.concurrency, "") if options else "",
        consistency=CONSISTENCY.get(options.consistency, "") if options else "",
    )


def call_metadata(pairs: Any) -> dict[str, str]:
    """Incoming gRPC metadata as binding metadata (contract §2.5): gRPC's reserved names get a
    ``dapr-`` prefix (``:authority`` → ``dapr-authority``, ``grpc-timeout`` →
    ``dapr-grpc-timeout``); binary (``-bin``) values and the API token are left out."""
    out: dict[str, str] = {}
    for key, value in pairs or ():
        name = key.lower()
        if name.endswith("-bin") or name == "dapr-api-token" or not isinstance(value, str):
            continue
        if name.startswith(":"):
            name = "dapr-" + name[1:]
        elif name.startswith("grpc-"):
            name = "dapr-" + name
        out.setdefault(name, value)
    return out


def _subscription_type(name: str) -> Any:
    try:
        return metadata_pb2.PubsubSubscriptionType.Value(name.upper())
    except ValueError:
        return metadata_pb2.PubsubSubscriptionType.Value("UNKNOWN")


def metadata_response(doc: Mapping[str, Any]) -> Any:
    """The core's metadata document (HTTP field names) → ``GetMetadataResponse``."""
    conn = doc.get("appConnectionProperties", {})
    actor = doc.get("actorRuntime", {})
    return metadata_pb2.GetMetadataResponse(
        id=doc["id"],
        runtime_version=doc.get("runtimeVersion", ""),
        enabled_features=list(doc.get("enabledFeatures", [])),
        registered_components=[
            metadata_pb2.RegisteredComponents(
                name=c["name"],
                type=c["type"],
                version=c["version"],
                capabilities=list(c.get("capabilities", [])),
            )
            for c in doc.get("components", [])
        ],
        extended_metadata=dict(doc.get("extended", {})),
        subscriptions=[
            metadata_pb2.PubsubSubscription(
                pubsub_name=s["pubsubname"],
                topic=s["topic"],
                metadata=dict(s.get("metadata", {})),
                rules=metadata_pb2.PubsubSubscriptionRules(
                    rules=[
                        metadata_pb2.PubsubSubscriptionRule(match=r["match"], path=r["path"])
                        for r in s.get("rules", [])
                    ]
                ),
                dead_letter_topic=s.get("deadLetterTopic", ""),
                type=_subscription_type(str(s.get("type", ""))),
            )
            for s in doc.get("subscriptions", [])
        ],
        app_connection_properties=metadata_pb2.AppConnectionProperties(
            port=int(conn.get("port", 0)),
            protocol=conn.get("protocol", ""),
            channel_address=conn.get("channelAddress", ""),
        ),
        actor_runtime=metadata_pb2.ActorRuntime(
            runtime_status=metadata_pb2.ActorRuntime.ActorRuntimeStatus.Value(
                actor.get("runtimeStatus", "DISABLED")
            ),
            host_ready=bool(actor.get("hostReady", False)),
            placement=actor.get("placement", ""),
        ),
    )


class DaprServicer(PubSubRpcs, StateSecretRpcs):
    """The implemented slice of the Dapr service."""

    def __init__(
        self, core: Universal, publisher: Publisher, invoking: Invoking | None = None, *,
        bindings: OutputBindings | None = None, streams: StreamHub | None = None,
        configurations: Configurations | None = None,
    ) -> None:
        self.core = core
        self.publisher = publisher
        self.invoking = invoking
        self.bindings = bindings or OutputBindings(core.components)
        self.streams = streams
        self.configurations = configurations or Configurations(core.components.configuration)

    # ----------------------------------------------------------------- state
    @handled
    async def GetState(self, request: Any, context: Any) -> Any:  # noqa: N802
        result = await self.core.get_state(
            request.store_name,
            request.key,
            consistency=CONSISTENCY.get(request.consistency, ""),
            metadata=dict(request.metadata),
        )
        if result is None:
            return state_pb2.GetStateResponse()
        return state_pb2.GetStateResponse(
            data=result.value, etag=result.etag, metadata=result.metadata
        )

    @handled
    async def GetBulkState(self, request: Any, context: Any) -> Any:  # noqa: N802
        items = await self.core.bulk_get_state(
            request.store_name, list(request.keys), dict(request.metadata)
        )
        out = []
        for item in items:
            if item.result is None:
                out.append(state_pb2.BulkStateItem(key=item.key, error=item.error))
            else:
                out.append(
                    state_pb2.BulkStateItem(
                        key=item.key,
                        data=item.result.value,
                        etag=item.result.etag,
                        metadata=item.result.metadata,
                        error=item.error,
                    )
                )
        return state_pb2.GetBulkStateResponse(items=out)

    @handled
    async def SaveState(self, request: Any, context: Any) -> Any:  # noqa: N802
        items = [state_item(s) for s in request.states]
        await self.core.save_state(request.store_name, items, http=False)
        return empty_pb2.Empty()

    @handled
    async def DeleteState(self, request: Any, context: Any) -> Any:  # noqa: N802
        await self.core.delete_state(request.store_name, delete_item(request))
        return empty_pb2.Empty()

    @handled
    async def ExecuteStateTransaction(self, request: Any, context: Any) -> Any:  # noqa: N802
        ops = [
            TransactionOp(
                op.operationType,
                state_item(op.request, need_value=op.operationType == "upsert"),
            )
            for op in request.operations
        ]
        await self.core.transaction(request.storeName, ops)
        return empty_pb2.Empty()

    # --------------------------------------------------------------- publish
    @handled
    async def PublishEvent(self, request: Any, context: Any) -> Any:  # noqa: N802
        await self.publisher.publish(
            request.pubsub_name,
            request.topic,
            bytes(request.data),
            request.data_content_type,
            dict(request.metadata),
            call_trace(context),
        )
        return empty_pb2.Empty()

    # -------------------------------------------------------------- bindings
    @handled
    async def InvokeBinding(self, request: Any, context: Any) -> Any:  # noqa: N802
        metadata = dict(request.metadata)
        for key, value in call_metadata(context.invocation_metadata()).items():
            metadata.setdefault(key, value)  # explicit keys win
        result = await self.bindings.invoke(
            request.name, request.operation, bytes(request.data), metadata
        )
        if result is None:
            return binding_pb2.InvokeBindingResponse()
        return binding_pb2.InvokeBindingResponse(data=result.data, metadata=dict(result.metadata))
    # ------------------------------------------------------------ invocation
    @handled
    async def InvokeService(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await invoke_service(self.invoking, request, context)

    # --------------------------------------------------------- configuration
    @handled
    async def GetConfiguration(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await grpc_configuration.get(self.configurations, request)

    GetConfigurationAlpha1 = GetConfiguration

    async def SubscribeConfiguration(  # noqa: N802
        self, request: Any, context: Any
    ) -> AsyncIterator[Any]:
        # grpc.aio serves a response stream only from an async generator function.
        async for response in grpc_configuration.subscribe(self.configurations, request,
                                                           context):
            yield response

    SubscribeConfigurationAlpha1 = SubscribeConfiguration

    @handled
    async def UnsubscribeConfiguration(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await grpc_configuration.unsubscribe(self.configurations, request)

    UnsubscribeConfigurationAlpha1 = UnsubscribeConfiguration

    # ---------------------------------------------- metadata and shutdown
    @handled
    async def GetMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        return metadata_response(self.core.metadata())

    @handled
    async def SetMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.core.set_metadata(request.key, request.value)
        return empty_pb2.Empty()

    @handled
    async def Shutdown(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.core.shutdown(force=False)
        return empty_pb2.Empty()
