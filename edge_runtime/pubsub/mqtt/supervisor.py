"""The reconnect loop of one MQTT connection, and the accounting of its losses.

:meth:`Supervisor.run` (the body of a named task owned by the client) calls ``connect_once``,
waits until the connection is lost, sleeps a full-jitter backoff delay and starts again. It
stops for good, logging an error and leaving the client disconnected, when an attempt fails
with reason ``not_authorized``: retrying wrong credentials only fills the broker's log. A TLS
refusal (reason ``tls``: a certificate either side does not accept) is retried with backoff, as
certificates get fixed or rotated without a restart; it is logged as an error, and each
failure is logged once until it changes or a connection succeeds (:attr:`last_error` keeps it).

The client reports every accepted connection (:meth:`Supervisor.connected`) and every loss of
one (:meth:`Supervisor.lost`). A loss right after the CONNACK, several times in a row, is a
client-id takeover: it is logged as an error naming the client id, once per streak. A
connection that stayed up resets the backoff.

Concurrency: event-loop only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from edge_runtime.observability import metrics as M
from edge_runtime.pubsub.mqtt.backoff import Backoff, FlapDetector
from edge_runtime.pubsub.mqtt.model import ConnectFailedError

__all__ = ["Supervisor"]

log = logging.getLogger(__name__)


class Supervisor:
    """Keeps one connection alive; see the module docstring.

    ``connect_once`` returns once a CONNACK accepted the connection or raises
    :class:`ConnectFailedError`; the client sets ``lost`` when that connection ends.
    """

    def __init__(
        self,
        name: str,
        client_id: str,
        connect_once: Callable[[], Awaitable[None]],
        lost: asyncio.Event,
        backoff: Backoff,
        flap: FlapDetector | None = None,
    ) -> None:
        self.name = name
        self.client_id = client_id
        self.backoff = backoff
        self.flap = flap or FlapDetector()
        self.attempts = 0
        """Connection attempts made so far."""
        self.given_up: str | None = None
        """Why retrying stopped (the broker refused our credentials), else ``None``."""
        self.last_error = ""
        """Why the last attempt failed or the last connection ended; "" while connected."""
        self._connect_once = connect_once
        self._lost = lost
        self._now = False
        self._takeover_reported = False

    async def run(self) -> None:
        """Connect, wait for the loss, back off, repeat; returns only after giving up."""
        while True:
            if self.attempts:
                M.MQTT_RECONNECTS.labels(self.name).inc()
            self.attempts += 1
            self._lost.clear()
            try:
                await self._connect_once()
            except ConnectFailedError as exc:
                M.MQTT_CONNECT_FAILURES.labels(self.name, exc.reason).inc()
                changed, self.last_error = str(exc) != self.last_error, str(exc)
                if exc.reason == "not_authorized":
                    self.given_up = str(exc)
                    log.error(  # noqa: TRY400 - an expected refusal: a traceback adds nothing
                        "MQTT %s: %s; not retrying: fix the credentials and restart",
                        self.name, exc,
                    )
                    return
                # The first failure of an outage (or a new one) is worth a warning; the same
                # one again would flood. A refused certificate needs a person: an error.
                level = logging.ERROR if exc.reason == "tls" else logging.WARNING
                if not (changed or self.backoff.attempt == 0):
                    level = logging.DEBUG
                log.log(level, "MQTT %s: %s; retrying with backoff", self.name, exc)
            else:
                await self._lost.wait()
            if self._now:
                self._now = False
                continue
            await asyncio.sleep(self.backoff.next_delay())

    def reconnect_now(self) -> None:
        """The coming loss is ours (a forced reconnect): reconnect without delay."""
        self._now = True

    def connected(self) -> None:
        """A CONNACK accepted a connection."""
        self.last_error = ""
        self.flap.connected(time.monotonic())

    def lost(self, reason: str, *, taken_over: bool = False) -> None:
        """An accepted connection ended, not by our close; ``taken_over`` when the broker said
        so (MQTT 5 reason code 0x8E, Session taken over)."""
        if self._now:
            self.flap.forget()
            return
        M.MQTT_CONNECTION_LOSSES.labels(self.name).inc()
        self.last_error = f"connection lost: {reason}"
        if self.flap.lost(time.monotonic()):
            self.backoff.reset()
            self._takeover_reported = False
            log.warning("MQTT %s: connection lost: %s", self.name, reason)
            return
        if (taken_over or self.flap.flapping) and not self._takeover_reported:
            self._takeover_reported = True
            M.MQTT_TAKEOVERS.labels(self.name).inc()
            log.error(
                "MQTT %s: client id %r is being taken over: the broker closed %d connection(s)"
                " in a row within %gs of accepting them (last: %s). Another client uses the"
                " same id (a second sidecar with this app id, a replica, a stale process):"
                " give each its own consumerID.",
                self.name, self.client_id, max(self.flap.short_in_a_row, 1), self.flap.window,
                reason,
            )
        else:
            log.warning("MQTT %s: connection lost right after connecting: %s", self.name, reason)
