"""What a subscription is once parsed, and how an event picks its route (contract §3.1).

A :class:`Subscription` is immutable and comes from one of three places (its ``type``): the
app's ``GET /dapr/subscribe`` reply (PROGRAMMATIC), a ``kind: Subscription`` resource
(DECLARATIVE), or a streaming subscription over gRPC (STREAMING). Its :attr:`~Subscription.key`
(``pubsub|topic``) names it in the inbox: dedup, ordering and retry state are per key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from edge_runtime.subscriptions.rules import Rule

__all__ = [
    "DEFAULT_BULK_AWAIT_MS",
    "DEFAULT_BULK_MESSAGES",
    "BulkSettings",
    "RouteRule",
    "Subscription",
    "SubscriptionType",
    "route_for",
    "subscription_key",
]

DEFAULT_BULK_MESSAGES = 100
DEFAULT_BULK_AWAIT_MS = 1000


class SubscriptionType(StrEnum):
    """Where a subscription came from; Dapr's names as ``/v1.0/metadata`` reports them."""

    DECLARATIVE = "DECLARATIVE"
    PROGRAMMATIC = "PROGRAMMATIC"
    STREAMING = "STREAMING"


@dataclass(frozen=True, slots=True)
class RouteRule:
    """``match`` → ``path``: the first rule whose predicate holds picks the path."""

    match: Rule
    path: str


@dataclass(frozen=True, slots=True)
class BulkSettings:
    """``bulkSubscribe``: whether events are batched, and the batch's bounds."""

    enabled: bool = False
    max_messages: int = DEFAULT_BULK_MESSAGES
    max_await_ms: int = DEFAULT_BULK_AWAIT_MS


def subscription_key(pubsub_name: str, topic: str) -> str:
    """The inbox key of a subscription: ``pubsub|topic`` (``|`` cannot occur in a name)."""
    return f"{pubsub_name}|{topic}"


@dataclass(frozen=True, slots=True)
class Subscription:
    """One subscription of the app to a topic (a filter, wildcards allowed) on a pubsub.

    ``rules`` are checked in order, then ``default_path``; with neither matching the event is
    dropped as success (:func:`route_for` returns ``None``). ``metadata`` goes to the
    component's subscribe call (``rawPayload`` ...). ``name`` is the resource name of a
    declarative subscription (``""`` otherwise). Not hashable (``metadata`` is a dict): use
    :attr:`key`.
    """

    pubsub_name: str
    topic: str
    rules: tuple[RouteRule, ...] = ()
    default_path: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    dead_letter_topic: str | None = None
    bulk: BulkSettings = BulkSettings()
    type: SubscriptionType = SubscriptionType.PROGRAMMATIC
    name: str = ""

    @property
    def key(self) -> str:
        """``pubsub|topic``: the stable name the inbox keeps this subscription's rows under."""
        return subscription_key(self.pubsub_name, self.topic)

    @property
    def component(self) -> str:
        """The pubsub: the component whose inbound retry policy applies to delivery."""
        return self.pubsub_name

    @property
    def raw_payload(self) -> bool:
        """Whether ``metadata.rawPayload`` is true (case-insensitive key, as Dapr reads it)."""
        for k, v in self.metadata.items():
            if k.lower() == "rawpayload":
                return v.strip().lower() in ("true", "1")
        return False

    def paths(self) -> list[str]:
        """Every path an event may be posted to (rules, then the default)."""
        out = [r.path for r in self.rules]
        if self.default_path:
            out.append(self.default_path)
        return out


def route_for(sub: Subscription, envelope: Mapping[str, Any]) -> str | None:
    """The path to post ``envelope`` to: the first matching rule's, else the default.

    ``None`` means no rule matched and there is no default: the event is dropped and counted as
    a success (dead-lettered when a dead-letter topic is set), as Dapr does. Never raises.
    """
    for rule in sub.rules:
        if rule.match(envelope):
            return rule.path
    return sub.default_path or None
