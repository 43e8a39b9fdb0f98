"""Calling the app (sidecar → app): the contract the HTTP and gRPC channels share.

A channel translates its transport's failures into :class:`AppUnavailableError` (the app
cannot be reached, or did not answer in time) and never lets a library exception out. What a
delivery's reply means is an :class:`Outcome`; each channel has its own mapping from replies
to outcomes (``appchannel.http.classify`` for HTTP, contract §3.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

__all__ = [
    "AppChannel",
    "AppChannelError",
    "AppReply",
    "AppStatusError",
    "AppUnavailableError",
    "BindingEvent",
    "BindingTarget",
    "InvokeCall",
    "InvokeResult",
    "Invoker",
    "Outcome",
]


class Outcome(StrEnum):
    """What to do with a delivered event: ack it, try again later, or drop it (acked)."""

    SUCCESS = "success"
    RETRY = "retry"
    DROP = "drop"


class AppChannelError(Exception):
    """Base class of the errors a channel raises."""


class AppUnavailableError(AppChannelError):
    """The app could not be reached, or did not answer within the timeout (cause chained)."""


class AppStatusError(AppChannelError):
    """The app answered a discovery call with an unexpected status (``status`` holds it)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class AppReply:
    """The app's answer: the status code and the body as received."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InvokeCall:
    """One service invocation to deliver to the app (contract §2.6, §3.8), transport-neutral.

    ``method`` is the path after ``/method/`` without a leading slash; ``query`` is the raw
    query string without ``?``; ``headers`` are already filtered to what may be forwarded
    (lower-case names).
    """

    method: str
    http_verb: str = "POST"
    data: bytes = b""
    content_type: str = ""
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InvokeResult:
    """The app's answer to an invocation: an HTTP status (gRPC apps: 200 for OK, else the
    status mapped from the gRPC code), the body, its content type and response headers."""

    status: int
    data: bytes = b""
    content_type: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BindingEvent:
    """One input-binding event for the app (contract §3.5): raw payload plus metadata."""

    name: str
    route: str
    data: bytes
    metadata: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class AppChannel(Protocol):
    """What the runtime needs from a channel to the app. Coroutine-safe."""

    async def get_subscriptions(self) -> bytes | None:
        """The app's subscription list as sent (``None``: the app has none).

        Raises :class:`AppUnavailableError` or :class:`AppStatusError`.
        """
        ...

    async def post_event(
        self, path: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> AppReply:
        """Deliver one event to ``path``; the reply whatever its status.

        Raises :class:`AppUnavailableError` only.
        """
        ...

    async def close(self) -> None:
        """Release connections; idempotent."""
        ...


@runtime_checkable
class Invoker(Protocol):
    """Service invocation into the app; both channels implement it. Coroutine-safe."""

    async def invoke(self, call: InvokeCall) -> InvokeResult:
        """Deliver one service invocation; the app's answer whatever its status.

        Raises :class:`AppUnavailableError` only.
        """
        ...


@runtime_checkable
class BindingTarget(Protocol):
    """Input-binding delivery into the app; both channels implement it. Coroutine-safe."""

    async def accepts_binding(self, name: str, route: str) -> bool:
        """Whether the app takes events of input binding ``name`` (HTTP: the ``OPTIONS
        /{route}`` probe; gRPC: ``ListInputBindings``). Raises :class:`AppUnavailableError`."""
        ...

    async def binding_event(self, event: BindingEvent) -> Outcome:
        """Deliver one input-binding event: SUCCESS when the app accepted it, RETRY otherwise.

        Raises :class:`AppUnavailableError` only.
        """
        ...
