"""CloudEvents 1.0 envelopes as Dapr builds them on publish (contract §5).

:func:`envelope` turns a publish request (bytes, content type, metadata) into the JSON bytes
that go to the broker. ``application/cloudevents+json`` bodies are taken as the envelope and
completed. :func:`parse` reads an envelope back (for routing, dedup and expiry on delivery).
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from edge_runtime.support import jsonbytes

SPEC_VERSION = "1.0"
DEFAULT_TYPE = "com.dapr.event.sent"
CLOUDEVENTS_JSON = "application/cloudevents+json"
_OVERRIDES = ("id", "source", "type", "subject", "traceparent", "traceid", "tracestate")


class EnvelopeError(ValueError):
    """The body cannot be made into (or read as) a CloudEvent."""


@dataclass(frozen=True, slots=True)
class PublishOptions:
    """The parts of a publish request's metadata that shape the envelope."""

    raw_payload: bool = False
    ttl_seconds: int | None = None
    overrides: Mapping[str, str] | None = None


NO_OPTIONS = PublishOptions()


def options_from_metadata(metadata: Mapping[str, str]) -> PublishOptions:
    """``rawPayload``, ``ttlInSeconds``/``ttl`` and ``cloudevent.*`` (case-insensitive).

    Raises :class:`ValueError` naming the key for a bad ``rawPayload`` or ttl value.
    """
    if not metadata:
        return NO_OPTIONS
    lower = {k.lower(): v for k, v in metadata.items()}
    raw_text = lower.get("rawpayload", "")
    if raw_text.lower() not in ("", "true", "false", "1", "0"):
        raise ValueError(f"rawPayload must be true or false, got {raw_text!r}")
    ttl_text = lower.get("ttlinseconds", lower.get("ttl", ""))
    ttl = None
    if ttl_text:
        try:
            ttl = int(ttl_text)
        except ValueError:
            raise ValueError(f"ttlInSeconds must be a whole number, got {ttl_text!r}") from None
        if ttl <= 0:
            raise ValueError(f"ttlInSeconds must be positive, got {ttl}")
    overrides = {
        key: lower[f"cloudevent.{key}"] for key in _OVERRIDES if f"cloudevent.{key}" in lower
    }
    return PublishOptions(raw_text.lower() in ("true", "1"), ttl, overrides)


def _json_type(content_type: str) -> bool:
    base = content_type.split(";", 1)[0].strip().lower()
    return base == "application/json" or base.endswith("+json")


_stamp: tuple[int, str, bytes] = (0, "", b"")


def _now_local() -> str:
    """Now, RFC 3339 with the local offset, second precision (built once per second: the
    time-zone lookup showed up in publish profiles)."""
    return _stamped()[1]


def _stamped() -> tuple[int, str, bytes]:
    """(second, :func:`_now_local`, ``,"time":"<it>"`` as JSON bytes), made once a second."""
    global _stamp
    second = int(time.time())
    if _stamp[0] != second:
        text = datetime.fromtimestamp(second).astimezone().isoformat()
        _stamp = (second, text, b',"time":' + _dumps(text))
    return _stamp


_POOL_IDS = 256
_pool = ""  # hex of random bytes for the next ids, taken 32 digits at a time
_pool_at = 0


def _reset_pool() -> None:
    global _pool, _pool_at
    _pool, _pool_at = "", 0


os.register_at_fork(after_in_child=_reset_pool)  # a child must not repeat the parent's ids


def _uuid4() -> str:
    """A random (version 4) UUID as text, as ``str(uuid.uuid4())`` but from one
    ``os.urandom`` call per 256 ids (the call per id was an eighth of a bulk publish's time
    in profiles; the UUID object was another share)."""
    global _pool, _pool_at
    at = _pool_at
    if at >= len(_pool):
        _pool, at = os.urandom(16 * _POOL_IDS).hex(), 0
    _pool_at = at + 32
    h = _pool[at:at + 32]
    # Version 4 in the 13th digit; the variant (binary 10) in the top bits of the 17th.
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _expiration(ttl: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=ttl)).strftime("%Y-%m-%dT%H:%M:%SZ")


def restamp_expiration(data: bytes, remaining_s: float) -> bytes:
    """``data`` with its top-level ``expiration`` set to now plus ``remaining_s``; ``data``
    unchanged when it is not a JSON object with a string ``expiration`` (a raw payload).

    Why: the envelope's ``expiration`` is an absolute wall-clock time stamped at publish; a
    message that waited in the outbox across a wall-clock jump would arrive a year expired
    (or a year from expiring). The outbox keeps the true remaining time on the monotonic
    clock (DESIGN.md §5), so the relay restamps from it just before sending. Only the value's
    bytes are replaced: the rest of the envelope (JSON numbers in ``data`` included) is sent
    as it was stored.
    """
    if b'"expiration"' not in data:
        return data
    try:
        event = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return data
    old = event.get("expiration") if isinstance(event, dict) else None
    if not isinstance(old, str):
        return data
    fresh = _expiration(max(0.0, remaining_s))
    if fresh == old:
        return data
    token = b'"expiration":' + _dumps(old)
    return data.replace(token, b'"expiration":' + _dumps(fresh), 1)


def _dumps(value: Any) -> bytes:
    return jsonbytes.dumps(value)


# The part of an envelope that repeats for every event of a (source, content type, topic,
# pubsub): ``"specversion":...,"pubsubname":"..."`` as JSON bytes, built once.
_MIDDLES: dict[tuple[str, str, str, str], bytes] = {}
_MIDDLES_MAX = 1024
_NO_TRACE = b',"traceid":"","traceparent":"","tracestate":""'


def _middle(source: str, content_type: str, topic: str, pubsub: str) -> bytes:
    key = (source, content_type, topic, pubsub)
    got = _MIDDLES.get(key)
    if got is None:
        if len(_MIDDLES) >= _MIDDLES_MAX:
            _MIDDLES.clear()
        got = _MIDDLES[key] = _dumps({
            "specversion": SPEC_VERSION, "source": source, "type": DEFAULT_TYPE,
            "datacontenttype": content_type, "topic": topic, "pubsubname": pubsub,
        })[1:-1]
    return got


def envelope(
    data: bytes, content_type: str, *, topic: str, pubsub: str, source: str,
    options: PublishOptions | None = None, traceparent: str = "", tracestate: str = "",
    json_checked: bool = False,
) -> bytes:
    """The bytes to publish: the raw body with ``rawPayload``, else a CloudEvent.

    ``json_checked`` says ``data`` is known to be valid JSON (a bulk entry the caller just
    serialised), so it is not parsed again to check. Raises :class:`EnvelopeError` when a
    ``application/cloudevents+json`` body is not a JSON object.
    """
    opts = options or NO_OPTIONS
    if opts.raw_payload:
        return data
    if (not opts.overrides and opts.ttl_seconds is None and content_type
            and content_type.split(";", 1)[0].strip().lower() != CLOUDEVENTS_JSON):
        return _plain_envelope(data, content_type, topic, pubsub, source, traceparent,
                               tracestate, json_checked)
    return _full_envelope(data, content_type, topic, pubsub, source, opts, traceparent,
                          tracestate)


def _plain_envelope(
    data: bytes, content_type: str, topic: str, pubsub: str, source: str, traceparent: str,
    tracestate: str, json_checked: bool,
) -> bytes:
    """The common case (no ``cloudevent.*`` overrides, no TTL, not a CloudEvent body) from
    cached pieces: the same bytes as :func:`_full_envelope` makes, at a fraction of the cost
    (a dict and a ``json.dumps`` per event were a tenth of a publish's time)."""
    if traceparent or tracestate:
        trace = _dumps({"traceid": traceparent, "traceparent": traceparent,
                        "tracestate": tracestate})
        trace_part = b"," + trace[1:-1]
    else:
        trace_part = _NO_TRACE
    head = b'{"id":"' + _uuid4().encode() + b'",' + _middle(source, content_type, topic, pubsub)
    head += trace_part + _stamped()[2]
    if _json_type(content_type):
        if json_checked:
            return head + b',"data":' + data.strip() + b"}"
        try:
            json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):  # nested too deep: text
            return head + b',"data":' + _dumps(data.decode("utf-8", "replace")) + b"}"
        return head + b',"data":' + data.strip() + b"}"
    extra: dict[str, Any] = {}
    _put_data(extra, data, content_type)
    return head + b"," + _dumps(extra)[1:]


def _full_envelope(
    data: bytes, content_type: str, topic: str, pubsub: str, source: str,
    opts: PublishOptions, traceparent: str, tracestate: str,
) -> bytes:
    """Any envelope, from a dict (overrides, TTL, a CloudEvent body, no content type)."""
    over = dict(opts.overrides or {})
    trace = over.get("traceparent", over.get("traceid", traceparent))
    if content_type.split(";", 1)[0].strip().lower() == CLOUDEVENTS_JSON:
        event = _parse_object(data)
        raw_json = None
        event.setdefault("source", over.get("source", "Dapr"))
        event.setdefault("type", over.get("type", DEFAULT_TYPE))
        event.setdefault("specversion", SPEC_VERSION)
        event.setdefault("time", _now_local())
        event.setdefault("traceid", trace)
        event.setdefault("traceparent", trace)
        event.setdefault("tracestate", over.get("tracestate", tracestate))
        event["topic"], event["pubsubname"] = topic, pubsub
    else:
        ct = content_type or "text/plain"
        event = {
            "id": over.get("id") or _uuid4(),
            "specversion": SPEC_VERSION,
            "source": over.get("source", source),
            "type": over.get("type", DEFAULT_TYPE),
            "datacontenttype": ct,
            "topic": topic,
            "pubsubname": pubsub,
            "traceid": trace,
            "traceparent": trace,
            "tracestate": over.get("tracestate", tracestate),
            "time": _now_local(),
        }
        raw_json = _put_data(event, data, ct)
    if "subject" in over:
        event["subject"] = over["subject"]
    if opts.ttl_seconds is not None and "expiration" not in event:
        event["expiration"] = _expiration(opts.ttl_seconds)
    out = _dumps(event)
    if raw_json is not None:
        # JSON data is spliced in as written, so numbers stay exact (Dapr keeps them exact too).
        out = out[:-1] + b',"data":' + raw_json + b"}"
    return out


def _put_data(event: dict[str, Any], data: bytes, content_type: str) -> bytes | None:
    """Put the body into ``event``; returns valid JSON bytes to splice in as ``data`` instead."""
    base = content_type.split(";", 1)[0].strip().lower()
    if _json_type(content_type):
        try:
            json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):  # nested too deep: text
            event["data"] = data.decode("utf-8", "replace")
            return None
        return data.strip()
    if base == "application/octet-stream" or base.startswith("application/protobuf"):
        event["data_base64"] = base64.b64encode(data).decode()
        return None
    try:
        event["data"] = data.decode()
    except UnicodeDecodeError:
        event["data_base64"] = base64.b64encode(data).decode()
    return None


def _parse_object(data: bytes) -> dict[str, Any]:
    try:
        event = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: JSON nested past the interpreter's stack, from any broker client.
        raise EnvelopeError(f"the body is not a JSON CloudEvent: {exc}") from None
    if not isinstance(event, dict):
        raise EnvelopeError("a CloudEvent must be a JSON object")
    return event


def parse(data: bytes) -> dict[str, Any]:
    """An envelope read back for routing and dedup; raises :class:`EnvelopeError`."""
    return _parse_object(data)


def expiration_of(event: Mapping[str, Any]) -> datetime | None:
    """The envelope's ``expiration`` as an aware datetime, or ``None`` (also when unreadable)."""
    text = event.get("expiration")
    if not isinstance(text, str) or not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
