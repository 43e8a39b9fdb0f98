"""The contract every binding component implements (DESIGN.md §5 "Bindings contract").

A binding is one component with an output side, an input side, or both; the runtime finds out
which with ``isinstance`` against the two protocols and then narrows it by the component's
``direction`` metadata (contract §6.1).

* :class:`OutputBinding`: :meth:`~OutputBinding.operations` lists what it can do and
  :meth:`~OutputBinding.invoke` does one of them. The runtime checks the operation against the
  list before it calls ``invoke`` (so the API can name the supported ones), but a binding
  still raises :class:`UnsupportedOperationError` for one it does not know.
* :class:`InputBinding`: :meth:`~InputBinding.start` begins producing events, each handed to
  the runtime's :data:`InputHandler` as ``(data, metadata)``; :meth:`~InputBinding.stop` ends
  that.

Lifecycle, driven by the runtime: the factory builds the component; ``await init()`` checks
and opens what ``invoke`` needs and produces no events; ``await start(handler)`` runs at boot,
before the app is up (events are committed to the durable inbox, only their delivery waits
for the app); at shutdown ``await stop()`` then ``await close()``. A binding that connects
somewhere to receive (MQTT ingest) connects in ``start``, so its handler exists before the
first message can arrive.

The handler returns only once the event is committed to disk; only then may the binding
acknowledge it to its source (an MQTT PUBACK). If the handler raises, the event was **not**
stored: the binding must not acknowledge it. A source that redelivers (a broker) will send it
again; a source that cannot (a GPIO edge, a serial frame) must count and log the event as
dropped, never lose it silently. The handler may be awaited concurrently; a binding that must
keep its events in order awaits each call before making the next.

Errors: a binding raises only the exceptions defined here (library exceptions, such as
gpiod's, pyserial's or paho's, are translated inside the component). The API reports any of
them as ``ERR_INVOKE_OUTPUT_BINDING`` with the exception's message.

Concurrency: every method may be awaited by any number of coroutines on the loop that called
``init``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = [
    "Binding",
    "BindingError",
    "BindingResponse",
    "InputBinding",
    "InputHandler",
    "InvokeError",
    "OutputBinding",
    "UnsupportedOperationError",
]


class BindingError(Exception):
    """Base class of the errors a binding raises.

    ``metadata`` is response metadata the binding has even for a failure (Dapr sends it back
    as ``metadata.<key>`` headers on the error reply too).
    """

    def __init__(self, message: str, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.metadata: Mapping[str, str] = dict(metadata or {})


class UnsupportedOperationError(BindingError):
    """The operation is not one of :meth:`OutputBinding.operations`."""


class InvokeError(BindingError):
    """The operation failed: bad request metadata, a device or connection error, a missing
    item (the message says which)."""


@dataclass(frozen=True, slots=True)
class BindingResponse:
    """What an operation returns: bytes for the caller and response metadata.

    An operation with nothing to return returns ``None`` instead (the HTTP API answers 204).
    """

    data: bytes = b""
    metadata: Mapping[str, str] = field(default_factory=dict)


InputHandler = Callable[[bytes, Mapping[str, str]], Awaitable[None]]
"""The runtime's handler for one input event: the payload and its metadata (string values).
Returns once the event is durable; raising means it was not stored (see the module docs)."""


@runtime_checkable
class Binding(Protocol):
    """What every binding has: setup and teardown."""

    async def init(self) -> None:
        """Check the configuration and open what ``invoke`` needs; produce no events yet.

        Raises ``ComponentError`` (or ``MetadataError``) when it cannot be used.
        """
        ...

    async def close(self) -> None:
        """Release everything (stopping the input side first if running); idempotent."""
        ...


@runtime_checkable
class OutputBinding(Binding, Protocol):
    """A binding the app can invoke (``POST /v1.0/bindings/{name}``)."""

    def operations(self) -> Sequence[str]:
        """The operations :meth:`invoke` accepts, e.g. ``["create"]``."""
        ...

    async def invoke(
        self, operation: str, data: bytes, metadata: Mapping[str, str]
    ) -> BindingResponse | None:
        """Do ``operation`` with ``data`` and the request ``metadata``.

        Raises :class:`UnsupportedOperationError` or :class:`InvokeError` (any
        :class:`BindingError`).
        """
        ...


@runtime_checkable
class InputBinding(Binding, Protocol):
    """A binding that produces events for the app."""

    async def start(self, handler: InputHandler) -> None:
        """Begin handing events to ``handler`` (after :meth:`Binding.init`).

        Returns once reading has started (a connection may still be in progress: it is
        retried in the background). Raises :class:`BindingError` when already started.
        """
        ...

    async def stop(self) -> None:
        """Stop producing events; when it returns, no handler call is in progress and none
        will be made. Idempotent; ``start`` may be called again afterwards."""
        ...
