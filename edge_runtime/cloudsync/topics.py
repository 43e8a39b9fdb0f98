"""Which published events go to the cloud: ``pubsub/topic`` filters with MQTT wildcards.

A filter is ``<pubsub>/<topic filter>``: ``pubsub/sensors/+``, ``pubsub/alarms/#``, ``*/#``
is not special (``+/#`` matches every pubsub and topic). ``+`` matches one level, ``#`` the
rest (including nothing), as in MQTT (§4.7), over the name ``<pubsub>/<topic>``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["TopicFilters", "validate"]


def validate(text: str) -> str:
    """``text`` when it is a valid filter; raises ``ValueError`` saying why not."""
    levels = text.split("/")
    if len(levels) < 2 or not levels[0] or not text.strip():
        raise ValueError(f"a cloud topic filter is <pubsub>/<topic filter>, got {text!r}")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"'#' must be the whole last level of a filter: {text!r}")
        if "+" in level and level != "+":
            raise ValueError(f"'+' must be a whole level of a filter: {text!r}")
    return text


def _match(flt: Sequence[str], name: Sequence[str]) -> bool:
    for i, f in enumerate(flt):
        if f == "#":
            return True
        if i >= len(name) or (f != "+" and f != name[i]):
            return False
    return len(flt) == len(name)


class TopicFilters:
    """A set of filters; :meth:`matches` answers for one pubsub and topic."""

    def __init__(self, filters: Sequence[str]) -> None:
        self.filters = tuple(validate(f) for f in filters)
        self._split = [f.split("/") for f in self.filters]

    def __bool__(self) -> bool:
        return bool(self.filters)

    def matches(self, pubsub: str, topic: str) -> bool:
        """Whether events of ``topic`` on ``pubsub`` are sent to the cloud."""
        name = [pubsub, *topic.split("/")]
        return any(_match(f, name) for f in self._split)

    def pubsubs(self) -> set[str] | None:
        """The pubsub names the filters can match (``None``: any, a ``+``/``#`` first level)."""
        firsts = {f[0] for f in self._split}
        return None if firsts & {"+", "#"} else firsts
