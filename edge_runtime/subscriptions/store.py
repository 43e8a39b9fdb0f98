"""The last known subscription list, kept in the data dir so the runtime can subscribe from
boot, before the app answers ``/dapr/subscribe`` (DESIGN.md §5).

:func:`save` writes JSON atomically (a temporary file, fsync, rename, fsync of the folder), so
a power cut leaves the old list or the new one, never half of one. Rule expressions are stored
as their text and compiled again by :func:`load`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_runtime.subscriptions.model import Subscription, SubscriptionType
from edge_runtime.subscriptions.parse import from_object
from edge_runtime.support.atomicfile import write_atomic

__all__ = ["FILE_NAME", "FORMAT", "SubscriptionFileError", "load", "save"]

FILE_NAME = "subscriptions.json"
FORMAT = 1

log = logging.getLogger(__name__)


class SubscriptionFileError(Exception):
    """The subscription file cannot be written (cause chained)."""


def _to_json(sub: Subscription) -> dict[str, Any]:
    return {
        "pubsubname": sub.pubsub_name,
        "topic": sub.topic,
        "routes": {
            "rules": [{"match": r.match.source, "path": r.path} for r in sub.rules],
            "default": sub.default_path or "",
        },
        "metadata": dict(sub.metadata),
        "deadLetterTopic": sub.dead_letter_topic or "",
        "bulkSubscribe": {
            "enabled": sub.bulk.enabled,
            "maxMessagesCount": sub.bulk.max_messages,
            "maxAwaitDurationMs": sub.bulk.max_await_ms,
        },
        "type": str(sub.type),
        "name": sub.name,
    }


def save(path: Path, subs: Sequence[Subscription]) -> None:
    """Replace the file at ``path`` with ``subs``, atomically and durably.

    Raises :class:`SubscriptionFileError` when the file cannot be written (the old one stays).
    """
    doc = {"format": FORMAT, "subscriptions": [_to_json(s) for s in subs]}
    data = json.dumps(doc, indent=1, ensure_ascii=False).encode()
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise SubscriptionFileError(f"cannot write {path}: {exc}") from exc


def load(path: Path) -> list[Subscription]:
    """The list saved at ``path``; ``[]`` when there is none. Never raises.

    An unreadable or damaged file is logged as an error and read as ``[]`` (the app's next
    ``/dapr/subscribe`` reply replaces it); a damaged entry is logged and left out.
    """
    items = _items(path)
    out: list[Subscription] = []
    for i, item in enumerate(items):
        kind, name = (item.get("type"), item.get("name")) if isinstance(item, dict) else ("", "")
        try:
            sub_type = SubscriptionType(kind or SubscriptionType.PROGRAMMATIC)
        except ValueError:
            sub_type = SubscriptionType.PROGRAMMATIC
        # empty_paths: the file holds lists already checked, a gRPC app's "" paths included
        sub, problems = from_object(
            item, f"{path}: item {i}", sub_type, name if isinstance(name, str) else "",
            empty_paths=True,
        )
        for p in problems:
            log.error("saved subscription left out: %s", p)
        if sub is not None:
            out.append(sub)
    return out


def _items(path: Path) -> list[Any]:
    problem = ""
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except OSError as exc:
        problem = f"cannot be read ({exc})"
    except (ValueError, RecursionError) as exc:
        problem = f"is not JSON ({exc})"
    else:
        items = doc.get("subscriptions") if isinstance(doc, dict) else None
        if isinstance(items, list) and doc.get("format") == FORMAT:
            return items
        problem = f"is not a format-{FORMAT} subscription list"
    log.error("the saved subscriptions %s %s; starting with none", path, problem)
    return []
