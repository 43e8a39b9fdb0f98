"""Subscriptions from a gRPC app's ``ListTopicSubscriptions`` reply (contract §4.5).

Each ``TopicSubscription`` message is turned into the ``/dapr/subscribe`` JSON shape and read
by :func:`~edge_runtime.subscriptions.parse.from_object`, so one set of parsing rules serves
both kinds of app. What differs for gRPC, as daprd reads the reply:

* a subscription whose ``routes`` has neither rules nor a default gets one rule that always
  matches, with the path ``""`` (the app looks its handler up by topic); paths may be empty;
* ``bulk_subscribe`` counts of 0 mean "not given" (proto3 has no absent integers), so the
  defaults (100 messages, 1000 ms) apply.

Pure: works on the message's attributes, so it needs neither ``grpc`` nor the stubs imported.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from edge_runtime.subscriptions.model import Subscription
from edge_runtime.subscriptions.parse import combine, from_object

__all__ = ["LABEL", "as_subscribe_json", "from_topic_subscriptions"]

LABEL = "ListTopicSubscriptions"


def as_subscribe_json(sub: Any) -> dict[str, Any]:
    """One ``TopicSubscription`` message as a ``/dapr/subscribe`` item."""
    item: dict[str, Any] = {
        "pubsubname": sub.pubsub_name,
        "topic": sub.topic,
        "metadata": dict(sub.metadata),
    }
    if sub.dead_letter_topic:
        item["deadLetterTopic"] = sub.dead_letter_topic
    rules: list[dict[str, str]] = []
    default = ""
    if sub.HasField("routes"):
        rules = [{"match": r.match, "path": r.path} for r in sub.routes.rules]
        default = sub.routes.default
    if not rules and not default:
        rules = [{"match": "", "path": ""}]  # daprd's implicit route for gRPC apps
    item["routes"] = {"rules": rules, "default": default}
    if sub.HasField("bulk_subscribe"):
        b = sub.bulk_subscribe
        bulk: dict[str, Any] = {"enabled": b.enabled}
        if b.max_messages_count:
            bulk["maxMessagesCount"] = b.max_messages_count
        if b.max_await_duration_ms:
            bulk["maxAwaitDurationMs"] = b.max_await_duration_ms
        item["bulkSubscribe"] = bulk
    return item


def from_topic_subscriptions(subs: Iterable[Any]) -> tuple[list[Subscription], list[str]]:
    """The subscriptions in a ``ListTopicSubscriptionsResponse.subscriptions`` list and the
    problems found (each names the item); a subscription with a problem is left out, and a
    second one to the same pubsub and topic is a problem. Never raises."""
    out: list[Subscription] = []
    problems: list[str] = []
    for i, message in enumerate(subs):
        sub, found = from_object(as_subscribe_json(message), f"{LABEL}: item {i}",
                                 empty_paths=True)
        problems.extend(found)
        if sub is not None:
            out.append(sub)
    out, dups = combine(out)
    problems.extend(f"{LABEL}: {p}" for p in dups)
    return out, problems
