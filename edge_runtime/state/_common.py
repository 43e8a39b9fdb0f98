"""Rules every state store shares: etags, TTL bounds and expiry arithmetic."""

from __future__ import annotations

import uuid

from edge_runtime.state import InvalidRequestError

# Dapr accepts ttlInSeconds from -1 to MaxInt32 (contract §2.3).
MAX_TTL_SECONDS = 2**31 - 1


def new_etag() -> str:
    """A fresh random etag (a UUIDv4 string, as state.sqlite makes; contract §8.1)."""
    return str(uuid.uuid4())


def has_etag(etag: str | None) -> bool:
    """Whether a request carries an etag; an empty string counts as none (as in Dapr)."""
    return bool(etag)


def expire_at(ttl_seconds: int | None, now: float) -> float | None:
    """Wall-clock expiry (unix seconds) for a write at ``now``; ``None`` never expires.

    ``None``, -1 and 0 mean never; other values outside 1..MaxInt32 raise
    :class:`InvalidRequestError`.
    """
    if ttl_seconds is None or ttl_seconds in (0, -1):
        return None
    if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
        raise InvalidRequestError(
            f"ttlInSeconds must be -1 (never), 0 or a whole number up to {MAX_TTL_SECONDS},"
            f" got {ttl_seconds}"
        )
    return now + ttl_seconds
