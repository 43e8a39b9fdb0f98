"""The filters an MQTT client keeps subscribed across connections (no I/O, no paho).

:class:`SubscriptionTable` remembers every tracked filter with its QoS, filters dropped while
disconnected (to unsubscribe at the next CONNACK, since a persistent session keeps them on the
broker), and which SUBSCRIBE packet re-sent which filters, to report refusals by name.

Concurrency: event-loop only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from edge_runtime.observability import metrics as M

__all__ = ["SubscriptionTable"]

log = logging.getLogger(__name__)


class _Code(Protocol):
    """A SUBACK reason code (paho's ``ReasonCode``)."""

    @property
    def is_failure(self) -> bool: ...


class SubscriptionTable:
    """Tracked filters; see the module docstring. ``name`` labels logs and metrics."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.filters: dict[str, int] = {}
        """Filter → QoS, subscribed on every CONNACK."""
        self._dropped: set[str] = set()
        self._batches: dict[int, list[str]] = {}

    def track(self, topic_filter: str, qos: int) -> None:
        """Keep ``topic_filter`` subscribed from now on."""
        self.filters[topic_filter] = qos
        self._dropped.discard(topic_filter)

    def untrack(self, topic_filter: str) -> None:
        """Stop tracking; unsubscribed at the next CONNACK unless :meth:`unsubscribed` first."""
        self.filters.pop(topic_filter, None)
        self._dropped.add(topic_filter)

    def unsubscribed(self, topic_filter: str) -> None:
        """An UNSUBSCRIBE for ``topic_filter`` went out on the current connection."""
        self._dropped.discard(topic_filter)

    def refused(self, topic_filter: str, code: object) -> None:
        """The broker refused ``topic_filter``: stop tracking it, count it."""
        self.filters.pop(topic_filter, None)
        M.MQTT_SUBSCRIBE_FAILURES.labels(self.name).inc()
        log.error("MQTT %s: the broker refused the subscription to %r: %s",
                  self.name, topic_filter, code)

    def take_dropped(self) -> list[str]:
        """The filters to unsubscribe at this CONNACK (forgotten once taken)."""
        dropped, self._dropped = sorted(self._dropped), set()
        return dropped

    @property
    def settled(self) -> bool:
        """Whether every batch sent at the last CONNACK was answered."""
        return not self._batches

    def batch_sent(self, mid: int, filters: list[str]) -> None:
        """SUBSCRIBE ``mid`` re-sent ``filters`` at a CONNACK (an UNSUBSCRIBE: ``[]``)."""
        self._batches[mid] = filters

    def batch_acked(self, mid: int, codes: Sequence[_Code]) -> bool:
        """Handle the SUBACK/UNSUBACK of ``mid`` if it answers a batch; whether it did.

        A refused filter stays tracked: the next connection tries it again."""
        filters = self._batches.pop(mid, None)
        if filters is None:
            return False
        for topic_filter, code in zip(filters, codes, strict=False):
            if code.is_failure:
                M.MQTT_SUBSCRIBE_FAILURES.labels(self.name).inc()
                log.error("MQTT %s: the broker refused the subscription to %r: %s",
                          self.name, topic_filter, code)
        return True

    def connection_lost(self) -> None:
        """SUBACKs of the lost connection will never come."""
        self._batches.clear()
