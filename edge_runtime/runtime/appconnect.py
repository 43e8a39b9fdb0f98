"""The channel to the app, picked by ``--app-protocol``: HTTP (``HttpAppChannel``, events
POSTed) or gRPC (``GrpcAppChannel``, the ``AppCallback`` service), with the matching event
deliverers and subscription discovery.

``grpc`` is imported only for a gRPC app (and by the gRPC API), so an HTTP-only device with
``--disable-grpc-api`` never loads it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from edge_runtime.appchannel.http import HttpAppChannel
from edge_runtime.config.settings import Settings
from edge_runtime.inbox.appdelivery import AppDelivery
from edge_runtime.inbox.bulk import BulkAppDelivery
from edge_runtime.inbox.deliver import Deliver, DeliverBulk
from edge_runtime.subscriptions import Subscription, from_app_json

if TYPE_CHECKING:
    from edge_runtime.appchannel.grpc import GrpcAppChannel

__all__ = ["APP_CALL_TIMEOUT_S", "AppChannelKind", "AppConnection", "Discover", "connect_app"]

APP_CALL_TIMEOUT_S = 60.0

AppChannelKind: TypeAlias = "HttpAppChannel | GrpcAppChannel"
"""Whichever channel is configured. Both have ``close()``; the gRPC one already has
``invoke``, ``accepts_binding``, ``binding_event`` and ``health_check`` (the
``Invoker``/``BindingTarget`` protocols in :mod:`edge_runtime.appchannel`)."""

Discover = Callable[[], Awaitable[tuple[list[Subscription], list[str]]]]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AppConnection:
    """The channel, the deliverer's callables, and how to ask the app for its subscriptions
    (``discover`` returns them and the problems found; it raises ``AppChannelError``)."""

    channel: AppChannelKind
    deliver: Deliver[Subscription]
    deliver_bulk: DeliverBulk[Subscription]
    discover: Discover


def connect_app(settings: Settings) -> AppConnection | None:
    """The connection to the app at ``app_channel_address:app_port``; ``None`` without an
    app port. Call inside the running event loop (the gRPC channel binds to it)."""
    s = settings
    if s.app_port is None:
        return None
    if s.app_protocol == "grpc":
        # Imported here: only a gRPC app (or the gRPC API) loads grpc.
        from edge_runtime.appchannel.grpc import GrpcAppChannel
        from edge_runtime.inbox.grpcdelivery import GrpcAppDelivery

        grpc_channel = GrpcAppChannel(
            s.app_channel_address, s.app_port, api_token=s.app_api_token,
            timeout_s=APP_CALL_TIMEOUT_S, max_message_size=s.max_body_size,
        )
        delivery = GrpcAppDelivery(grpc_channel)
        return AppConnection(grpc_channel, delivery, delivery.bulk,
                             grpc_channel.discover_subscriptions)
    http = HttpAppChannel(
        s.app_channel_address, s.app_port, api_token=s.app_api_token,
        timeout_s=APP_CALL_TIMEOUT_S, app_id=s.app_id,
    )

    async def discover() -> tuple[list[Subscription], list[str]]:
        body = await http.get_subscriptions()
        return from_app_json(body) if body is not None else ([], [])

    return AppConnection(http, AppDelivery(http), BulkAppDelivery(http), discover)
