"""The Dapr configuration RPCs (stable and Alpha1): messages in, core calls, messages out.

``SubscribeConfiguration`` answers first with the subscription id and no items (what the SDK
waits for), then one message per update, until the client goes away or
``UnsubscribeConfiguration`` ends it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import configuration_pb2

from edge_runtime.api.configuration import ConfigItem, Configurations
from edge_runtime.api.grpc.errors import abort
from edge_runtime.errors import APIError

__all__ = ["get", "subscribe", "unsubscribe"]


def _items(items: Mapping[str, ConfigItem]) -> dict[str, Any]:
    return {
        k: common_pb2.ConfigurationItem(value=v.value, version=v.version,
                                        metadata=dict(v.metadata))
        for k, v in items.items()
    }


async def get(configurations: Configurations, request: Any) -> Any:
    """``GetConfiguration`` → ``GetConfigurationResponse``."""
    items = await configurations.get(request.store_name, list(request.keys),
                                     dict(request.metadata))
    return configuration_pb2.GetConfigurationResponse(items=_items(items))


async def subscribe(configurations: Configurations, request: Any,
                    context: Any) -> AsyncIterator[Any]:
    """``SubscribeConfiguration``: the id first, then every update."""
    try:
        sub = configurations.subscribe(request.store_name, list(request.keys),
                                       dict(request.metadata))
    except APIError as err:
        await abort(context, err)
    try:
        yield configuration_pb2.SubscribeConfigurationResponse(id=sub.id)
        while (items := await sub.updates.get()) is not None:
            yield configuration_pb2.SubscribeConfigurationResponse(id=sub.id,
                                                                   items=_items(items))
    finally:
        configurations.end(sub)


async def unsubscribe(configurations: Configurations, request: Any) -> Any:
    """``UnsubscribeConfiguration``: ``ok`` false with the reason for an unknown id."""
    try:
        configurations.unsubscribe(request.store_name, request.id)
    except APIError as err:
        return configuration_pb2.UnsubscribeConfigurationResponse(ok=False, message=err.message)
    return configuration_pb2.UnsubscribeConfigurationResponse(ok=True)
