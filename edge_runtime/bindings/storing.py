"""Handing an input binding's event to the runtime (the inbox), with a few retries.

A refusal is often brief (the inbox at its limit while the app catches up, a database busy or
full for a moment), and an event a binding read from a device cannot be read again: so a
refused event is offered again, :data:`STORE_ATTEMPTS` times in all with a doubling pause from
:data:`STORE_BACKOFF_S` (0.1 + 0.2 + 0.4 + 0.8 s), before the binding counts it as lost. The
binding's own queue holds what it reads meanwhile. Once ``stopping`` is set no more attempts are
made.
"""

from __future__ import annotations

import asyncio
import contextlib

from edge_runtime.bindings.contract import InputHandler

__all__ = ["STORE_ATTEMPTS", "STORE_BACKOFF_S", "store"]

STORE_ATTEMPTS = 5
STORE_BACKOFF_S = 0.1


async def store(
    handler: InputHandler, body: bytes, metadata: dict[str, str], *, stopping: asyncio.Event,
) -> Exception | None:
    """Offer the event to ``handler`` until it takes it; ``None`` once stored, else the last
    refusal (the caller counts and logs the loss)."""
    for attempt in range(1, STORE_ATTEMPTS + 1):
        try:
            await handler(body, metadata)
        except Exception as exc:  # noqa: BLE001 - any failure means "not stored"
            if attempt == STORE_ATTEMPTS or stopping.is_set():
                return exc
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), STORE_BACKOFF_S * 2 ** (attempt - 1))
        else:
            return None
    raise AssertionError("unreachable")  # pragma: no cover
