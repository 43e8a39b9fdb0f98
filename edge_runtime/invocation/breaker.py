"""A circuit breaker with Dapr's (gobreaker's) semantics, for ``Resiliency`` circuitBreakers.

* **closed**: calls pass; each result updates the counts ``requests``, ``totalSuccesses``,
  ``totalFailures``, ``consecutiveSuccesses`` and ``consecutiveFailures``. After a failure the
  ``trip`` expression is evaluated over them; true opens the breaker. With ``interval`` > 0 the
  counts start again every ``interval`` while closed.
* **open**: calls are refused at once; after ``timeout`` the breaker is half-open.
* **half-open**: up to ``maxRequests`` trial calls pass (others are refused); a failure opens
  the breaker again, ``maxRequests`` consecutive successes close it.

``trip`` is a CEL comparison over those five names (``consecutiveFailures > 5``, the default;
``&&``, ``||``, ``!`` and parentheses combine them). A result from before a state change is
ignored. Single-threaded: call it from the event loop only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from edge_runtime.subscriptions.rules import Rule, RuleError, compile_rule

__all__ = ["BreakerPolicy", "CircuitBreaker", "State", "compile_trip"]

COUNTS = (
    "requests", "totalSuccesses", "totalFailures", "consecutiveSuccesses", "consecutiveFailures"
)
DEFAULT_TRIP = "consecutiveFailures > 5"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def compile_trip(expression: str) -> Rule:
    """Compile a trip expression; raises :class:`ValueError` saying what is wrong."""
    if not expression.strip():
        raise ValueError("a trip expression is required, e.g. consecutiveFailures > 5")
    if "'" in expression or '"' in expression:
        raise ValueError(f"trip {expression!r}: strings are not supported")
    for m in _NAME.finditer(expression):
        if m.group() not in COUNTS and m.group() not in ("true", "false"):
            raise ValueError(
                f"trip {expression!r}: unknown name {m.group()!r}; use {', '.join(COUNTS)}"
            )
    # The rule compiler reads fields of `event`; the counts are passed as that object.
    rewritten = _NAME.sub(lambda m: "event." + m.group() if m.group() in COUNTS else m.group(),
                          expression)
    try:
        return compile_rule(rewritten)
    except RuleError as exc:
        raise ValueError(f"trip {expression!r}: {exc.problem}") from None


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """A named ``circuitBreakers`` entry (defaults as Dapr's)."""

    name: str = ""
    max_requests: int = 1
    interval_s: float = 0.0
    timeout_s: float = 60.0
    trip: Rule = field(default_factory=lambda: compile_trip(DEFAULT_TRIP))


class State(StrEnum):
    """Where the breaker is."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """One breaker (per target app). :meth:`allow` before a call, :meth:`record` after it."""

    def __init__(
        self, policy: BreakerPolicy, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._state = State.CLOSED
        self._generation = 0
        self._counts = dict.fromkeys(COUNTS, 0)
        self._expiry = self._next_expiry()

    def _next_expiry(self) -> float:
        if self._state is State.CLOSED:
            return self._clock() + self.policy.interval_s if self.policy.interval_s > 0 else 0.0
        if self._state is State.OPEN:
            return self._clock() + self.policy.timeout_s
        return 0.0

    def _to(self, state: State) -> None:
        self._state = state
        self._generation += 1
        self._counts = dict.fromkeys(COUNTS, 0)
        self._expiry = self._next_expiry()

    @property
    def state(self) -> State:
        """The state now (an open breaker whose timeout passed is half-open)."""
        now = self._clock()
        if self._state is State.CLOSED and self._expiry and now >= self._expiry:
            self._to(State.CLOSED)  # a new counting interval
        elif self._state is State.OPEN and now >= self._expiry:
            self._to(State.HALF_OPEN)
        return self._state

    def allow(self) -> int | None:
        """Reserve a call: a ticket for :meth:`record`, or ``None`` when refused."""
        state = self.state
        if state is State.OPEN:
            return None
        if state is State.HALF_OPEN and self._counts["requests"] >= self.policy.max_requests:
            return None
        self._counts["requests"] += 1
        return self._generation

    def record(self, ticket: int, *, ok: bool) -> None:
        """The result of the call ``ticket`` was given for (stale tickets are ignored)."""
        state = self.state
        if ticket != self._generation:
            return
        c = self._counts
        if ok:
            c["totalSuccesses"] += 1
            c["consecutiveSuccesses"] += 1
            c["consecutiveFailures"] = 0
            if state is State.HALF_OPEN and c["consecutiveSuccesses"] >= self.policy.max_requests:
                self._to(State.CLOSED)
            return
        c["totalFailures"] += 1
        c["consecutiveFailures"] += 1
        c["consecutiveSuccesses"] = 0
        if state is State.HALF_OPEN or self.policy.trip(c):
            self._to(State.OPEN)
