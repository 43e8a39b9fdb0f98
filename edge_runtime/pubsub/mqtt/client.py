"""paho-mqtt 2.x driven from the asyncio loop: the only module that imports paho.

No paho thread: paho's socket hooks put its socket on the loop (``add_reader`` → ``loop_read``,
``add_writer`` → ``loop_write``) and a named task calls ``loop_misc`` each second. Only the
blocking ``connect()`` (DNS, TCP, TLS handshake) runs in an executor thread; meanwhile the loop
leaves paho alone (every entry point checks the connection first), hooks fired in that thread
are ignored, and the socket is put on the loop once ``connect()`` returned.

A named task runs the :class:`~edge_runtime.pubsub.mqtt.supervisor.Supervisor` (reconnects,
gives up on refused credentials, detects takeovers). Every CONNACK re-subscribes all tracked
filters in one SUBSCRIBE; filters tracked before the first CONNECT and ``on_message`` set before
it mean a persistent session's queued messages find their handler.

TLS: the context comes from the component (``metadata.py``); a handshake the broker refuses
after it completed on our side (TLS 1.3 sends the verdict on our client certificate later)
shows up as a socket error while reading the CONNACK. paho logs socket errors itself; its log
goes through :class:`_PahoLog`, which keeps the last one so the failure names it (a refused
connection is :class:`ConnectFailedError` ``tls`` with an explanation from
:mod:`edge_runtime.support.tlserrors`) and logs it at debug (the supervisor reports it once).
Rotation: before each attempt, when the PEM files the context came from changed, a new context
is built from them and used from this attempt on (a file that does not make one is logged and
the previous context kept).

Waits for acks go through :class:`~edge_runtime.pubsub.mqtt.acks.AckWaiters`. A connection
loss fails them all with :class:`NotConnectedError` and drops paho's resend queue: the outbox
owns republishing (so a QoS 2 publish, resent under a new id, may arrive twice).

Incoming messages reach ``on_message`` as :class:`Incoming`; nothing is acknowledged before
:meth:`MqttClient.ack`, which skips messages from an earlier connection (the broker redelivers
them; their id may name another message by now). paho sends PUBREC for incoming QoS 2 on
arrival, so a failed handler cannot get a QoS 2 message back: use QoS 1, the default.

Concurrency: every method runs on the loop that called :meth:`MqttClient.start`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
from collections.abc import Callable
from typing import Any, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_runtime.observability import metrics as M
from edge_runtime.pubsub import NotConnectedError, PublishError, PubSubError
from edge_runtime.pubsub.mqtt import topics
from edge_runtime.pubsub.mqtt.acks import AckWaiters
from edge_runtime.pubsub.mqtt.backoff import Backoff
from edge_runtime.pubsub.mqtt.coalesce import CoalescingClient
from edge_runtime.pubsub.mqtt.loopio import SocketDriver
from edge_runtime.pubsub.mqtt.model import ClientOptions, ConnectFailedError, Incoming
from edge_runtime.pubsub.mqtt.subscriptions import SubscriptionTable
from edge_runtime.pubsub.mqtt.supervisor import Supervisor
from edge_runtime.pubsub.mqtt.window import Window
from edge_runtime.support.tlserrors import explain, is_tls_error

__all__ = ["ClientOptions", "Incoming", "MqttClient"]

log = logging.getLogger(__name__)

_AUTH_REFUSED = (134, 135, 140)  # bad user name or password, not authorized, bad auth method
_SESSION_TAKEN_OVER = 142
_SESSION_NEVER_EXPIRES = 0xFFFFFFFF  # MQTT 5: keep the session as 3.1.1 cleanSession=false does
_CLOSE_GRACE_S = 1.0
_SOCKET_ERRORS = ("failed to receive on socket", "failed to send on socket", "timeout on socket")


class _PahoLog(logging.LoggerAdapter[logging.Logger]):
    """paho's logger, except that its socket errors are handed to ``keep`` and logged at
    debug: the client reports them once, in its own words, instead of paho at every attempt.
    Formatting happens only for those (paho logs every packet at debug)."""

    def __init__(self, logger: logging.Logger, keep: Callable[[str], None]) -> None:
        super().__init__(logger, {})
        self._keep = keep

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        """See :class:`logging.Logger`; paho calls ``log(level, fmt, *args)``."""
        if isinstance(msg, str) and msg.startswith(_SOCKET_ERRORS):
            text = msg % args if args else msg
            self._keep(text.split(": ", 1)[-1])
            level = logging.DEBUG
        self.logger.log(level, msg, *args, **kwargs)


class MqttClient:
    """One MQTT connection kept alive in the background; see the module docstring."""

    def __init__(self, options: ClientOptions, on_message: Callable[[Incoming], None]) -> None:
        self.options = options
        self.name = options.name or options.client_id
        self._on_incoming = on_message
        self._connected = False
        self._closed = False
        self._epoch = 0
        self._connected_evt = asyncio.Event()
        self._lost_evt = asyncio.Event()
        self._closed_evt = asyncio.Event()
        self._connack: asyncio.Future[ReasonCode] | None = None
        self._thread: asyncio.Future[None] | None = None
        self._acks = AckWaiters(options.ack_timeout)
        self._subs = SubscriptionTable(self.name)
        self._window = Window(options.inflight)
        self._tasks: list[asyncio.Task[None]] = []
        self._socket_error: str | None = None  # the last one paho logged on this connection
        self._tls_stamp = options.tls_files.built_at if options.tls_files else ()
        self.supervisor = Supervisor(
            self.name, options.client_id, self._connect_once, self._lost_evt,
            Backoff(options.reconnect_min, options.reconnect_max),
        )
        self._paho = self._make_paho()
        self._io = SocketDriver(self.name, self._paho)
        self._paho.on_socket_open = self._io.on_socket_open
        self._paho.on_socket_close = self._io.on_socket_close
        self._paho.on_socket_register_write = self._io.on_register_write
        self._paho.on_socket_unregister_write = self._io.on_unregister_write

    def _make_paho(self) -> CoalescingClient:
        o = self.options
        client = CoalescingClient(
            CallbackAPIVersion.VERSION2,
            client_id=o.client_id,
            clean_session=None if o.mqtt5 else o.clean_session,
            protocol=MQTTProtocolVersion.MQTTv5 if o.mqtt5 else MQTTProtocolVersion.MQTTv311,
            reconnect_on_failure=False,  # reconnecting is the supervisor's job
            manual_ack=True,
        )
        client.max_inflight_messages = 0  # our Window is the limit; paho must never queue
        client.connect_timeout = o.connect_timeout
        # paho only calls ``log``; the adapter stands in for the Logger it is typed to take.
        client.enable_logger(cast(logging.Logger, _PahoLog(logging.getLogger(f"{__name__}.paho"),
                                                           self._keep_socket_error)))
        if o.username is not None:
            client.username_pw_set(o.username, o.password)
        if o.tls is not None:
            client.tls_set_context(o.tls)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_suback
        client.on_unsubscribe = self._on_unsuback
        client.on_message = self._on_message
        return client

    # --- public API ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a CONNACK accepted the current connection."""
        return self._connected

    @property
    def subscribed(self) -> bool:
        """Connected, and the broker answered the (UN)SUBSCRIBE sent at the CONNACK: every
        tracked filter is in place (a refused one is logged)."""
        return self._connected and self._subs.settled

    @property
    def last_error(self) -> str:
        """Why the last connection attempt failed or the last connection ended ("" once
        connected again)."""
        return self.supervisor.last_error

    @property
    def in_flight(self) -> int:
        """Publishes holding a window slot: sent and not yet acknowledged, or being sent."""
        return self._window.used

    @property
    def subscriptions(self) -> dict[str, int]:
        """The tracked filters and their QoS (re-subscribed on every CONNACK)."""
        return dict(self._subs.filters)

    def start(self) -> None:
        """Start connecting in the background; returns at once. Idempotent; needs a loop."""
        if self._tasks or self._closed:
            return
        self._io.bind(asyncio.get_running_loop())
        self._tasks = [
            asyncio.create_task(self.supervisor.run(), name=f"mqtt[{self.name}] connect"),
            asyncio.create_task(self._io.run_misc(), name=f"mqtt[{self.name}] keepalive"),
        ]

    async def wait_connected(self) -> None:
        """Return once connected; raise :class:`NotConnectedError` if closed first.

        A connection may be lost between the CONNACK that woke us and our turn to run (a
        flapping broker, a CONNACK timeout on a slow device): then wait for the next one.
        """
        while not self._connected:
            if self._closed:
                raise NotConnectedError(f"MQTT client {self.options.client_id!r} is closed")
            waits = [asyncio.ensure_future(e.wait())
                     for e in (self._connected_evt, self._closed_evt)]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        """Publish; return on PUBACK/PUBCOMP (QoS 1/2) or once written to the socket (QoS 0).

        Raises :class:`NotConnectedError` when disconnected now or before the ack (the message
        may or may not have arrived) and :class:`PublishError` for an invalid topic or payload,
        a refusal (an MQTT 5 reason code) or no ack within ``ack_timeout``. At most
        ``inflight`` publishes (or the broker's Receive Maximum) wait at a time; the others
        queue in call order.
        """
        await (await self.start_publish(topic, payload, qos=qos, retain=retain))

    async def start_publish(
        self, topic: str, payload: bytes, *, qos: int, retain: bool
    ) -> asyncio.Future[None]:
        """Send now (once a window slot is free); a future that resolves on PUBACK.

        The pipelined form of :meth:`publish` for the outbox relay: no task waits per
        message. Raises :class:`NotConnectedError` or :class:`PublishError` (invalid topic or
        payload) at once; the future fails with the errors :meth:`publish` would raise later
        (connection lost, refusal, no ack in time). Cancelling the future frees its slot.
        """
        if not self._connected:
            raise self._not_connected()
        await self._window.acquire()
        try:
            info = self._send_publish(topic, payload, qos, retain)
        except BaseException:
            self._window.release()
            raise

        def check(reason: ReasonCode) -> BaseException | None:
            if reason.is_failure:
                M.MQTT_PUBLISH_FAILURES.labels(self.name, "refused").inc()
                return PublishError(f"the broker refused the publish to {topic!r}: {reason}")
            return None

        fut = self._acks.track(info.mid, "PUBACK", check)
        fut.add_done_callback(self._publish_settled)
        return fut

    def _send_publish(self, topic: str, payload: bytes, qos: int,
                      retain: bool) -> paho.MQTTMessageInfo:
        """paho's publish, with the acks it fires during the call kept for the waiter."""
        if not self._connected:
            raise self._not_connected()
        self._acks.begin_call()
        try:
            info = self._paho.publish(topic, payload, qos=qos, retain=retain)
        except ValueError as exc:
            M.MQTT_PUBLISH_FAILURES.labels(self.name, "invalid").inc()
            raise PublishError(f"cannot publish to {topic!r}: {exc}") from None
        finally:
            self._acks.end_call()
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            raise self._not_connected()
        return info

    def _publish_settled(self, fut: asyncio.Future[None]) -> None:
        self._window.release()
        if fut.cancelled():
            return
        exc = fut.exception()
        if isinstance(exc, NotConnectedError):
            M.MQTT_PUBLISH_FAILURES.labels(self.name, "not_connected").inc()
        elif isinstance(exc, PublishError) and "no PUBACK" in str(exc):
            M.MQTT_PUBLISH_FAILURES.labels(self.name, "timeout").inc()

    async def subscribe(self, topic_filter: str, qos: int) -> None:
        """Track ``topic_filter`` (subscribed on every CONNACK from now on); when connected,
        subscribe now and wait for the SUBACK.

        Returns once granted, or at once when disconnected (the next CONNACK subscribes it).
        Raises :class:`PubSubError` for an invalid filter or QoS, or when the broker refuses it
        (it is then no longer tracked).
        """
        try:
            topics.validate_filter(topic_filter)
        except ValueError as exc:
            raise PubSubError(f"cannot subscribe to {topic_filter!r}: {exc}") from None
        if qos not in (0, 1, 2):
            raise PubSubError(f"QoS must be 0, 1 or 2, got {qos}")
        self._subs.track(topic_filter, qos)
        if not self._connected:
            return
        try:
            with self._acks.calling():
                rc, mid = self._paho.subscribe(self._sub_list([topic_filter]))
        except ValueError as exc:  # paho's own filter checks
            self._subs.refused(topic_filter, exc)
            raise PubSubError(f"cannot subscribe to {topic_filter!r}: {exc}") from None
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            return  # lost meanwhile: the next CONNACK subscribes it
        try:
            codes: list[ReasonCode] = await self._acks.wait(mid, "SUBACK")
        except (NotConnectedError, PublishError) as exc:
            log.warning("MQTT %s: subscription to %r not confirmed (%s); it is sent again on"
                        " the next connection", self.name, topic_filter, exc)
            return
        if codes and codes[0].is_failure:
            self._subs.refused(topic_filter, codes[0])
            raise PubSubError(f"the broker refused the subscription to {topic_filter!r}:"
                              f" {codes[0]}")

    async def unsubscribe(self, topic_filter: str) -> None:
        """Stop tracking ``topic_filter`` and unsubscribe: now, or on the next CONNACK."""
        self._subs.untrack(topic_filter)
        if not self._connected:
            return
        try:
            with self._acks.calling():
                rc, mid = self._paho.unsubscribe(topic_filter)
        except ValueError as exc:
            self._subs.unsubscribed(topic_filter)
            raise PubSubError(f"cannot unsubscribe from {topic_filter!r}: {exc}") from None
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
            self._subs.unsubscribed(topic_filter)
            with contextlib.suppress(NotConnectedError, PublishError):
                await self._acks.wait(mid, "UNSUBACK")

    def ack(self, message: Incoming) -> bool:
        """Acknowledge ``message`` (PUBACK; PUBCOMP for QoS 2); whether an ack was sent.

        Nothing is sent for QoS 0, nor when the message's connection is gone (the broker
        redelivers it on the new one).
        """
        if message.qos == 0:
            return False
        if not self._connected or message.epoch != self._epoch:
            log.debug("MQTT %s: not acknowledging mid %d: its connection is gone; the broker"
                      " redelivers it", self.name, message.mid)
            return False
        if self._paho.ack(message.mid, message.qos) != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        M.MQTT_MESSAGES_ACKED.labels(self.name).inc()
        return True

    async def reconnect(self) -> None:
        """Drop the connection and reconnect at once (no backoff). With a persistent session
        the broker then redelivers every message not acknowledged yet."""
        if self._connected:
            self.supervisor.reconnect_now()
            await self._disconnect()

    async def _disconnect(self) -> None:
        """DISCONNECT after every packet already queued (acks included), then wait for paho to
        close the socket; drop it if that takes longer than a second.

        Once the loss is reported the supervisor may already be connecting again in its
        thread, so paho is not touched after that: only on the timeout path.
        """
        self._paho.disconnect()
        try:
            async with asyncio.timeout(_CLOSE_GRACE_S):
                await self._lost_evt.wait()
        except TimeoutError:
            self._io.drop()

    async def close(self) -> None:
        """Send DISCONNECT when connected, stop the tasks, fail waiting calls; idempotent.

        A persistent session (cleanSession false) and its subscriptions stay on the broker.
        """
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._connack is not None and not self._connack.done():
            self._connack.cancel()  # nobody waits for it any more
        thread = self._thread
        if thread is not None:  # a connect() cancelled mid-way: let its thread finish first
            await asyncio.wait([thread], timeout=self.options.connect_timeout + 1.0)
            if thread.done() and not thread.cancelled():
                thread.exception()  # retrieved: that attempt no longer matters
        if self._connected:
            await self._disconnect()
        self._io.drop()
        self._io.detach()
        self._acks.fail_all("the MQTT client is closed")
        self._closed_evt.set()
        M.MQTT_CONNECTED.labels(self.name).set(0)

    # --- connecting -----------------------------------------------------------------------------

    async def _connect_once(self) -> None:
        """One attempt: connect in a thread, then wait for the CONNACK on the loop."""
        o = self.options
        loop = asyncio.get_running_loop()
        self._connack = connack = loop.create_future()
        self._socket_error = None
        self._thread = thread = loop.run_in_executor(None, self._blocking_connect)
        try:
            # shielded: when we are cancelled the thread runs on; close() waits for it
            await asyncio.shield(thread)
        except (OSError, ValueError) as exc:  # DNS, refused, timeout, TLS (SSLError is OSError)
            if isinstance(exc, ssl.SSLError | ssl.CertificateError) or (
                    o.tls is not None and is_tls_error(str(exc))):
                raise self._tls_refused(str(exc)) from None
            if o.tls is not None and isinstance(exc, ConnectionResetError):
                # The TCP connection was accepted, so the reset came with our ClientHello.
                raise ConnectFailedError(
                    "tls", f"TLS with {o.host}:{o.port} failed: the server reset the connection"
                    f" during the TLS handshake (is it a TLS listener? check the url scheme and"
                    f" port) ({exc})") from None
            raise ConnectFailedError("network", f"cannot connect to {o.host}:{o.port}: {exc}") \
                from None
        finally:
            if thread.done():
                self._thread = None
        if not self._io.attach():
            raise ConnectFailedError("network", "the connection closed while opening")
        try:
            async with asyncio.timeout(o.connect_timeout):
                reason = await connack
        except TimeoutError:
            # The CONNACK may have come in the same loop turn as the timeout (a loop blocked
            # past it, as on a slow device at startup): a connection accepted is kept.
            if not connack.done() or connack.cancelled() or connack.exception() is not None:
                self._io.drop()
                raise ConnectFailedError(
                    "timeout", f"no CONNACK from {o.host}:{o.port} in {o.connect_timeout:g}s"
                ) from None
            reason = connack.result()
        if reason.is_failure:
            kind = "not_authorized" if reason.value in _AUTH_REFUSED else "refused"
            raise ConnectFailedError(
                kind, f"{o.host}:{o.port} refused client id {o.client_id!r}: {reason}"
            )

    def _tls_refused(self, error: str) -> ConnectFailedError:
        o = self.options
        why = explain(error) or "the TLS handshake failed"
        return ConnectFailedError("tls", f"TLS with {o.host}:{o.port} failed: {why} ({error})")

    def _keep_socket_error(self, error: str) -> None:
        self._socket_error = error

    def _refresh_tls(self) -> None:
        """Use a new TLS context when its PEM files changed since the current one was built.

        Runs in the connect thread, while the loop leaves paho alone.
        """
        files = self.options.tls_files
        if files is None:
            return
        stamp = files.stamp()
        if stamp == self._tls_stamp:
            return
        self._tls_stamp = stamp  # a bad file is reported once, not at every attempt
        try:
            context = files.build()
        except ValueError as exc:
            log.error(  # noqa: TRY400 - the message says it all; a traceback adds nothing
                "MQTT %s: the certificate files changed but cannot be used, keeping the"
                " previous ones: %s", self.name, exc)
            return
        # paho 2.x offers no way to replace a context once set (tls_set_context refuses), and
        # reads this attribute at every handshake.
        self._paho._ssl_context = context
        log.info("MQTT %s: certificate files changed: TLS reloaded from %s", self.name,
                 ", ".join(str(p) for p in files.paths))

    def _blocking_connect(self) -> None:
        """In an executor thread: DNS, TCP connect, TLS handshake; CONNECT is queued."""
        o = self.options
        self._refresh_tls()
        keepalive = math.ceil(o.keepalive)
        if not o.mqtt5:
            self._paho.connect(o.host, o.port, keepalive)
            return
        props = None
        if not o.clean_session:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it unannotated
            props.SessionExpiryInterval = _SESSION_NEVER_EXPIRES
        self._paho.connect(o.host, o.port, keepalive, clean_start=o.clean_session,
                           properties=props)

    # --- paho callbacks (on the loop, from inside loop_read/loop_write) ------------------------

    def _on_connect(self, _client: paho.Client, _userdata: Any, flags: paho.ConnectFlags,
                    reason: ReasonCode, properties: Properties | None) -> None:
        if not reason.is_failure:
            self._connected = True
            self._epoch += 1
            self.supervisor.connected()
            receive_max = getattr(properties, "ReceiveMaximum", None) or self.options.inflight
            self._window.resize(min(self.options.inflight, receive_max))
            self._resubscribe()
            self._connected_evt.set()
            M.MQTT_CONNECTED.labels(self.name).set(1)
            log.info("MQTT %s: connected to %s:%d as %r (session present: %s)", self.name,
                     self.options.host, self.options.port, self.options.client_id,
                     flags.session_present)
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(reason)

    def _resubscribe(self) -> None:
        """One UNSUBSCRIBE for filters dropped while offline, one SUBSCRIBE for all tracked."""
        # Filters were validated when tracked; a ValueError here is a bug, and it must not
        # escape into paho's CONNACK handling.
        try:
            dropped = self._subs.take_dropped()
            if dropped:
                rc, mid = self._paho.unsubscribe(dropped)
                if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                    self._subs.batch_sent(mid, [])
            filters = list(self._subs.filters)
            if filters:
                rc, mid = self._paho.subscribe(self._sub_list(filters))
                if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                    self._subs.batch_sent(mid, filters)
        except ValueError:
            log.exception("MQTT %s: re-subscribing failed", self.name)

    def _sub_list(self, filters: list[str]) -> list[tuple[str, int]]:
        return [(f, self._subs.filters[f]) for f in filters]  # paho makes v5 options of these

    def _on_disconnect(self, _client: paho.Client, _userdata: Any, _flags: paho.DisconnectFlags,
                       reason: ReasonCode, _properties: Properties | None) -> None:
        was_connected, self._connected = self._connected, False
        self._connected_evt.clear()
        M.MQTT_CONNECTED.labels(self.name).set(0)
        self._io.detach()
        self._paho.drop_out_messages()  # their publish() calls fail below; the outbox resends
        self._subs.connection_lost()
        self._acks.fail_all(f"the connection to the MQTT broker was lost ({reason})")
        error, self._socket_error = self._socket_error, None
        if self._connack is not None and not self._connack.done():
            if error is not None and self.options.tls is not None and is_tls_error(error):
                failure = self._tls_refused(error)
            else:
                failure = ConnectFailedError(
                    "network", f"the broker closed the connection: {error or reason}")
            self._connack.set_exception(failure)
        if was_connected and not self._closed:
            self.supervisor.lost(f"{reason}: {error}" if error else str(reason),
                                 taken_over=reason.value == _SESSION_TAKEN_OVER)
        self._lost_evt.set()

    def _on_publish(self, _client: paho.Client, _userdata: Any, mid: int, reason: ReasonCode,
                    _properties: Properties | None) -> None:
        self._acks.resolve(mid, reason)

    def _on_suback(self, _client: paho.Client, _userdata: Any, mid: int,
                   codes: list[ReasonCode], _properties: Properties | None) -> None:
        if not self._subs.batch_acked(mid, codes):
            self._acks.resolve(mid, codes)

    def _on_unsuback(self, _client: paho.Client, _userdata: Any, mid: int,
                     codes: list[ReasonCode], _properties: Properties | None) -> None:
        if not self._subs.batch_acked(mid, codes):
            self._acks.resolve(mid, codes)

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        M.MQTT_MESSAGES_RECEIVED.labels(self.name).inc()
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            # It can never be routed: acknowledging is the only way to stop its redelivery.
            M.MQTT_MESSAGES_DROPPED.labels(self.name, "bad_topic").inc()
            log.warning("MQTT %s: dropped a message whose topic is not UTF-8", self.name)
            self._paho.ack(msg.mid, msg.qos)
            return
        incoming = Incoming(topic, bytes(msg.payload), msg.qos, bool(msg.retain), bool(msg.dup),
                            msg.mid, self._epoch)
        try:
            self._on_incoming(incoming)
        except Exception:
            log.exception("MQTT %s: routing a message on %r failed; not acknowledged",
                          self.name, topic)

    def _not_connected(self) -> NotConnectedError:
        M.MQTT_PUBLISH_FAILURES.labels(self.name, "not_connected").inc()
        o, given_up = self.options, self.supervisor.given_up
        why = f": {given_up}" if given_up else f" at {o.host}:{o.port}"
        return NotConnectedError(f"not connected to the MQTT broker{why}")
