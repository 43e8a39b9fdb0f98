"""Which published events go to the cloud: ``pubsub/topic`` filters with MQTT wildcards.

A filter is ``<pubsub>/<topic filter>``: ``pubsub/sensors/+``, ``pubsub/alarms/#``, ``*/#``
is not special (``+/#`` matches every pubsub and topic). ``+`` matches one level, ``#`` the
rest (including nothing), as in MQTT (§4.7), over the name ``<pubsub>/<topic>``.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge_runtime.pubsub.mqtt import topics as mqtt_topics

__all__ = ["TopicFilters", "validate"]


def validate(text: str) -> str:
    """``text`` when it is a valid filter; raises ``ValueError`` saying why not."""
    levels = text.split("/")
    if len(levels) < 2 or not levels[0] or not text.strip():
        raise ValueError(f"a cloud topic filter is <pubsub>/<topic filter>, got {text!r}")
    mqtt_topics.validate_filter(text)
    return text


class TopicFilters:
    """A set of filters; :meth:`matches` answers for one pubsub and topic."""

    def __init__(self, filters: Sequence[str]) -> None:
        self.filters = tuple(validate(f) for f in filters)

    def __bool__(self) -> bool:
        return bool(self.filters)

    def matches(self, pubsub: str, topic: str) -> bool:
        """Whether events of ``topic`` on ``pubsub`` are sent to the cloud."""
        name = f"{pubsub}/{topic}"
        return any(mqtt_topics.matches(f, name) for f in self.filters)

    def pubsubs(self) -> set[str] | None:
        """The pubsub names the filters can match (``None``: any, a ``+``/``#`` first level)."""
        firsts = {f.split("/", 1)[0] for f in self.filters}
        return None if firsts & {"+", "#"} else firsts
