"""MQTT topic names and topic filters: validation and matching (MQTT 3.1.1 §4.7, MQTT 5 §4.7-4.8).

Pure functions, no I/O. A *topic* is what a message is published on (no wildcards); a *filter*
is what is subscribed to: levels split by ``/``, ``+`` matching exactly one level (an empty one
too), ``#`` matching the parent level and any number of levels below it, only as the last level.
A shared filter ``$share/<group>/<filter>`` (MQTT 5 §4.8.2) delivers each message to one member
of the group; for matching, the ``$share/<group>/`` prefix is ignored.

Topics starting with ``$`` (``$SYS/...``) are not matched by a filter whose first level is a
wildcard (§4.7.2), so ``#`` does not see broker statistics.

Every validation error is a :class:`ValueError` whose message says what is wrong, for a person.
"""

from __future__ import annotations

__all__ = [
    "MAX_LENGTH",
    "SHARE_PREFIX",
    "matches",
    "shared",
    "split_shared",
    "validate_filter",
    "validate_topic",
]

MAX_LENGTH = 65535
"""The longest topic or filter, in UTF-8 bytes (a two-byte length prefix on the wire)."""

SHARE_PREFIX = "$share/"


def _check_text(text: str, what: str) -> None:
    """Checks common to topics and filters: not empty, no NUL, at most 65535 UTF-8 bytes."""
    if not text:
        raise ValueError(f"{what} must not be empty")
    if "\x00" in text:
        raise ValueError(f"{what} must not contain the NUL character")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid UTF-8 (it holds a lone surrogate)") from None
    if size > MAX_LENGTH:
        raise ValueError(f"{what} is {size} bytes long; MQTT allows at most {MAX_LENGTH}")


def validate_topic(topic: str) -> None:
    """Check a topic name to publish on; raise :class:`ValueError` when it is not valid.

    A topic name is not empty, holds no ``+``, ``#`` or NUL, and is at most 65535 UTF-8 bytes.
    """
    _check_text(topic, "a topic")
    if "+" in topic or "#" in topic:
        raise ValueError(f"a topic to publish on must not contain the wildcards + or #: {topic!r}")


def split_shared(topic_filter: str) -> tuple[str | None, str]:
    """``("group", "a/b")`` for ``"$share/group/a/b"``, else ``(None, topic_filter)``.

    It does not validate; a malformed shared filter (no group, no filter) gives an empty part.
    """
    if not topic_filter.startswith(SHARE_PREFIX):
        return None, topic_filter
    group, _, rest = topic_filter[len(SHARE_PREFIX):].partition("/")
    return group, rest


def shared(group: str, topic_filter: str) -> str:
    """``$share/<group>/<topic_filter>``; a filter already shared is returned unchanged.

    Raises :class:`ValueError` for a group name that is empty or holds ``/``, ``+`` or ``#``.
    """
    if topic_filter.startswith(SHARE_PREFIX):
        return topic_filter
    _check_group(group)
    return f"{SHARE_PREFIX}{group}/{topic_filter}"


def _check_group(group: str) -> None:
    if not group:
        raise ValueError("a shared subscription needs a group name: $share/<group>/<filter>")
    for ch in "/+#":
        if ch in group:
            raise ValueError(f"a share group name must not contain {ch!r}: {group!r}")


def validate_filter(topic_filter: str) -> None:
    """Check a topic filter to subscribe to; raise :class:`ValueError` when it is not valid.

    ``+`` must fill a whole level, ``#`` must fill the last level, and ``$share/<group>/``
    needs a group name without ``/ + #`` and a valid filter after it.
    """
    _check_text(topic_filter, "a topic filter")
    group, rest = split_shared(topic_filter)
    if group is not None:
        _check_group(group)
        if not rest:
            raise ValueError(
                f"a shared subscription needs a filter after the group: {topic_filter!r}"
            )
        _check_text(rest, "a topic filter")
    levels = rest.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"'#' must be the whole last level of a filter: {topic_filter!r}")
        if "+" in level and level != "+":
            raise ValueError(f"'+' must be a whole level of a filter: {topic_filter!r}")


def matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches ``topic_filter`` (a ``$share/<group>/`` prefix is ignored).

    Both are assumed valid (see :func:`validate_filter`, :func:`validate_topic`); for invalid
    input the answer is unspecified but it never raises.
    """
    _, topic_filter = split_shared(topic_filter)
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    if topic.startswith("$") and f_levels[0] in ("+", "#"):
        return False
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels):
            return False
        if f != "+" and f != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)
