"""Pure helpers of the reconnect loop: full-jitter backoff and takeover (flap) detection.

No I/O and no clock of their own: callers pass monotonic times, tests pass numbers.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backoff", "FlapDetector"]


@dataclass(slots=True)
class Backoff:
    """Delays between connection attempts: "full jitter" between ``minimum`` and a cap that
    doubles with every failed attempt up to ``maximum``.

    The ``n``-th delay (from 0) is uniform in ``[minimum, min(maximum, minimum * 2**n)]``; the
    floor keeps a fleet of devices from hammering a broker that just came back, the jitter
    spreads their reconnects. :meth:`reset` after a connection that proved stable.
    """

    minimum: float
    maximum: float
    uniform: Callable[[float, float], float] = field(default=random.uniform, repr=False)
    attempt: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.minimum <= self.maximum:
            raise ValueError(f"need 0 < minimum <= maximum, got {self.minimum}, {self.maximum}")

    def next_delay(self) -> float:
        """The delay before the next attempt, in seconds; counts the attempt."""
        # The exponent is capped so 2**n stays a small float however long the outage lasts.
        cap = min(self.maximum, self.minimum * 2.0 ** min(self.attempt, 60))
        self.attempt += 1
        return self.uniform(self.minimum, cap)

    def reset(self) -> None:
        """Start again from ``minimum`` (after a stable connection)."""
        self.attempt = 0


@dataclass(slots=True)
class FlapDetector:
    """Notices a broker closing us right after accepting us, again and again.

    That is what a client-id *takeover* looks like on MQTT 3.1.1: two clients with the same id
    (two sidecars with one app id, a replica, a stale process) each connect, and the broker
    closes the older connection every time (MQTT 3.1.1 §3.1.4). A connection that ends within
    ``window`` seconds of its CONNACK is short; ``threshold`` short ones in a row are a flap.
    """

    window: float = 5.0
    threshold: int = 3
    short_in_a_row: int = 0
    _since: float | None = None

    def connected(self, now: float) -> None:
        """A CONNACK accepted the connection at ``now``."""
        self._since = now

    def lost(self, now: float) -> bool:
        """The connection accepted last ended at ``now``; whether it was a stable one.

        A loss without a preceding :meth:`connected` (a failed attempt) changes nothing and
        returns ``False``.
        """
        since, self._since = self._since, None
        if since is None:
            return False
        if now - since < self.window:
            self.short_in_a_row += 1
            return False
        self.short_in_a_row = 0
        return True

    def forget(self) -> None:
        """The connection accepted last ends on our own request: it says nothing about flaps."""
        self._since = None

    @property
    def flapping(self) -> bool:
        """Whether the last ``threshold`` (or more) accepted connections were all short."""
        return self.short_in_a_row >= self.threshold

    @property
    def just_started(self) -> bool:
        """True exactly when the streak reaches ``threshold`` (to log the takeover once)."""
        return self.short_in_a_row == self.threshold
