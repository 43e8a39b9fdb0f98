"""``Dapr/SubscribeTopicEventsAlpha1`` (contract §4.4): the bidirectional stream of a
streaming subscription, translated to and from :mod:`edge_runtime.runtime.streaming`.

1. The client's first message must be ``initial_request`` (pubsub, topic, metadata,
   dead-letter topic); anything else, or a stream that ends first, is INVALID_ARGUMENT. An
   unknown pubsub or an empty name or topic gets the publish API's errors, a second stream
   for the same pubsub and topic ALREADY_EXISTS.
2. The server answers ``initial_response`` before anything else (the SDKs discard the first
   message they read).
3. Events go out as ``event_message`` (a ``TopicEventRequest`` built as for a gRPC app, path
   ``/``); the client answers each with ``event_processed{id, status}``: SUCCESS, RETRY or
   DROP, mapped like an app's reply (an unknown status value is a RETRY). Any other message
   after the first ends the stream with INVALID_ARGUMENT.
4. The stream ends when the client half-closes or cancels it, or when the sidecar shuts down
   (status OK: the SDKs then reconnect). Unanswered events stay in the inbox for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from dapr.proto.runtime.v1 import appcallback_pb2, pubsub_pb2

from edge_runtime import errors as E
from edge_runtime.appchannel import Outcome
from edge_runtime.errors import APIError
from edge_runtime.inbox.grpcdelivery import topic_event_request
from edge_runtime.runtime.streaming import StreamHub, StreamRequest, StreamSession

__all__ = ["subscribe_topic_events"]

log = logging.getLogger(__name__)

_KIND = "subscribe_topic_events_request_type"
_STATUS = appcallback_pb2.TopicEventResponse.TopicEventResponseStatus
_OUTCOMES = {
    _STATUS.Value("SUCCESS"): Outcome.SUCCESS,
    _STATUS.Value("RETRY"): Outcome.RETRY,
    _STATUS.Value("DROP"): Outcome.DROP,
}


def _render(sub: Any, row: Any, envelope: Any, path: str) -> Any:
    return pubsub_pb2.SubscribeTopicEventsResponseAlpha1(
        event_message=topic_event_request(sub, row, envelope, path)
    )


def _bad_request(message: str) -> APIError:
    return APIError(E.PUBSUB_STREAM_REQUEST, message)


async def _read_answers(requests: AsyncIterator[Any], session: StreamSession) -> None:
    async for msg in requests:
        if msg.WhichOneof(_KIND) != "event_processed":
            raise _bad_request("after the initial request a stream takes only event_processed")
        answer = msg.event_processed
        outcome = _OUTCOMES.get(answer.status.status, Outcome.RETRY)
        if not session.processed(answer.id, outcome):
            log.debug("streaming subscription %s: answer for %r, which is not awaiting one",
                      session.sub.key, answer.id)


async def _send_events(session: StreamSession, context: Any) -> None:
    while (message := await session.next_message()) is not None:
        await context.write(message)


async def subscribe_topic_events(
    hub: StreamHub | None, request_iterator: Any, context: Any
) -> None:
    """Serve one stream; raises :class:`APIError` for the caller's wrapper to render."""
    if hub is None:
        raise APIError(E.PUBSUB_NOT_CONFIGURED, "streaming subscriptions are not available")
    requests: AsyncIterator[Any] = request_iterator.__aiter__()
    try:
        first = await anext(requests)
    except StopAsyncIteration:
        raise _bad_request("initial request is required") from None
    if first.WhichOneof(_KIND) != "initial_request":
        raise _bad_request("initial request is required")
    init = first.initial_request
    session = await hub.open(
        StreamRequest(init.pubsub_name, init.topic, dict(init.metadata), init.dead_letter_topic),
        _render,
    )
    tasks: list[asyncio.Task[None]] = []
    try:
        await context.write(pubsub_pb2.SubscribeTopicEventsResponseAlpha1(
            initial_response=pubsub_pb2.SubscribeTopicEventsResponseInitialAlpha1()
        ))
        tasks = [
            asyncio.create_task(_read_answers(requests, session),
                                name=f"stream-read:{session.sub.key}"),
            asyncio.create_task(_send_events(session, context),
                                name=f"stream-send:{session.sub.key}"),
        ]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if isinstance(exc, APIError):
                raise exc
            if exc is not None:  # the transport failed: the stream is gone
                log.info("streaming subscription %s ended: %s", session.sub.key, exc)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await session.close()
