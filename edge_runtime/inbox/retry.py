"""Retry schedules for inbound delivery: how long to wait after the n-th failure, and when to
stop trying.

The default (ours): exponential with full jitter, 0.5 s start, x2, at most 30 s, 10 retries
(11 attempts in all). A ``Resiliency`` inbound policy (``inbox.resiliency``) replaces it per
pubsub: ``constant`` waits ``duration`` each time; ``exponential`` starts at 0.5 s and grows
x1.5 (Dapr's fixed internals) up to ``maxInterval``; ``maxRetries`` -1 retries for ever.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

__all__ = ["DEFAULT_RETRY", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A retry schedule. ``max_retries`` < 0 means unlimited; 0 means one attempt only.
    ``timeout_s`` bounds each delivery attempt (a Resiliency target's ``inbound.timeout``);
    ``None``: the app channel's own timeout only."""

    kind: Literal["constant", "exponential"] = "exponential"
    duration_s: float = 5.0  # constant
    initial_s: float = 0.5  # exponential
    multiplier: float = 2.0
    max_interval_s: float = 30.0
    max_retries: int = 10
    name: str = ""
    timeout_s: float | None = None

    def exhausted(self, failures: int) -> bool:
        """Whether ``failures`` failed attempts used the retries up."""
        return 0 <= self.max_retries < failures

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (``failures`` >= 1).

        Exponential delays use full jitter: uniform in ``[0, min(max, initial·mult^(n-1))]``.
        """
        if self.kind == "constant":
            return max(0.0, self.duration_s)
        exponent = min(max(failures - 1, 0), 64)  # bounded: the cap is reached long before
        ceiling = min(self.max_interval_s, self.initial_s * self.multiplier**exponent)
        return (rng or random).uniform(0.0, max(0.0, ceiling))


DEFAULT_RETRY = RetryPolicy(name="default")
