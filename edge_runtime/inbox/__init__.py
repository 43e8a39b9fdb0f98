"""The durable inbox: incoming events committed before the broker's ack, delivered to the app
with retries, dead-lettered rather than lost (DESIGN.md §5 "Outbox, inbox, delivery").

* :mod:`~edge_runtime.inbox.store`: :class:`Inbox` (``<data-dir>/inbox.db``: add with dedup
  and back-pressure, rows in order, dead letters);
* :mod:`~edge_runtime.inbox.deliver`: :class:`Deliverer` (one task per subscription, retries,
  dead letters), with the ``deliver``/``dead_letter`` callables the runtime provides;
* :mod:`~edge_runtime.inbox.retry` and :mod:`~edge_runtime.inbox.resiliency`: retry
  schedules, from the ``Resiliency`` resources' inbound policies;
* :mod:`~edge_runtime.inbox.appdelivery`: the glue to an HTTP app channel;
* :mod:`~edge_runtime.inbox.bulk`: bulk subscribe delivery to an HTTP app (one POST a batch);
* :mod:`~edge_runtime.inbox.grpcdelivery`: single and bulk delivery to a gRPC app;
* :mod:`~edge_runtime.inbox.deadletters`: the ``edge-runtime deadletters`` command.

The delivery loop does not depend on HTTP or gRPC: only ``appdelivery``, ``bulk`` and
``grpcdelivery`` do.
"""

from edge_runtime.inbox.deliver import (
    DeadLetter,
    Deliver,
    DeliverBulk,
    Deliverer,
    DropEventError,
    PoisonEventError,
    RetryEventError,
    RetryLookup,
    Target,
)
from edge_runtime.inbox.resiliency import InboundRetry, inbound_retry
from edge_runtime.inbox.retry import DEFAULT_RETRY, RetryPolicy
from edge_runtime.inbox.store import Inbox, InboxError, InboxFullError, InboxLimits, InboxRow

__all__ = [
    "DEFAULT_RETRY",
    "DeadLetter",
    "Deliver",
    "DeliverBulk",
    "Deliverer",
    "DropEventError",
    "InboundRetry",
    "Inbox",
    "InboxError",
    "InboxFullError",
    "InboxLimits",
    "InboxRow",
    "PoisonEventError",
    "RetryEventError",
    "RetryLookup",
    "RetryPolicy",
    "Target",
    "inbound_retry",
]
