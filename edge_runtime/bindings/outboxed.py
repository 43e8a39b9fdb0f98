"""An optional capability of output bindings: operations that go through the durable outbox.

A binding that publishes somewhere (``bindings.mqtt``'s ``create``) must not lose what it
acknowledged, exactly like a publish (DESIGN.md §5: acknowledged means durable). So it does
not send from ``invoke``: it appends to an outbox table of its own and returns once the row is
committed, and the runtime's relay (``edge_runtime.outbox.relay``) drains the table through
:attr:`OutboxedBinding.relay_target`, deleting each row after the far side acknowledged it.

The runtime (``runtime/build.py``) gives every binding that implements this protocol, and
whose direction allows output, the same outbox and relay a pub/sub component gets: table
``binding:<name>``, the component's ``maxMessages``/``maxBytes``/``onFull``/``drainRateLimit``
metadata, shown by ``edge-runtime outbox``. It calls :meth:`OutboxedBinding.attach_outbox`
before ``init``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from edge_runtime.outbox.store import Outbox
from edge_runtime.pubsub import PubSub

__all__ = ["OutboxedBinding"]


@runtime_checkable
class OutboxedBinding(Protocol):
    """An output binding whose operations append to an outbox that a relay drains."""

    @property
    def relay_target(self) -> PubSub | None:
        """What the relay sends each row through (``publish``, ``wait_connected``);
        ``None`` when the binding has no output side to relay."""
        ...

    def attach_outbox(self, outbox: Outbox) -> None:
        """The outbox table its operations append to (before ``init``)."""
        ...
