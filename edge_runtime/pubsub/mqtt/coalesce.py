"""paho's client with its socket reads and writes gathered: one ``recv`` per wake-up instead of
three per packet, one ``send`` per loop turn instead of one per packet.

paho 2.x reads a packet's fixed header one byte at a time (``recv(1)`` for the type, one per
remaining-length byte, then the rest), so a 4-byte PUBACK costs three system calls, and it
writes each queued packet with its own ``send``. At thousands of messages a second those calls
were a fifth of the outbox relay's time in profiles. :class:`CoalescingClient` overrides
paho's three socket primitives (and its connect, so an ASCII host skips the ``idna`` codec):

- ``_sock_recv`` serves paho from a buffer filled by one large ``recv``; :meth:`buffered` says
  how much is left, which the loop driver drains (the descriptor no longer signals those
  bytes, as with TLS's pending bytes);
- ``_packet_write`` lets paho hand over every queued packet into one buffer, then sends it with
  one ``send``; what the socket does not take stays buffered, and ``want_write`` stays true
  until it is sent, so the driver keeps waiting for the socket to be writable;
- ``_sock_close`` tries to send what is buffered (a DISCONNECT is queued just before it) and
  drops both buffers: a new connection starts clean.

A QoS 1/2 message counts as sent only when the broker acknowledges it, so bytes lost in the
buffer with a broken connection are resent like any other unacknowledged message.

Two more per-message costs go: a PUBACK in its short form (just the message id: every MQTT
3.1.1 one, and MQTT 5's success) is decoded without paho's generic decoder and its fresh
``ReasonCode`` and ``Properties`` objects (a shared success code and empty properties are
passed on), and paho's per-packet debug lines are not formatted unless debug logging is on.

And one that is not in the client: paho makes a ``threading.Condition`` for every message
(``MQTTMessageInfo``, for ``wait_for_publish``), a tenth of a publish's time in profiles.
:class:`SharedConditionInfo` takes its place in paho's module (paho builds its infos by that
global name), process-wide: every info shares one condition, notified to all, and
``wait_for_publish`` still waits for its own message (it loops on the message's own flag).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import LogLevel, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

__all__ = ["CoalescingClient", "SharedConditionInfo"]

READ_SIZE = 65536
_PUBACK_OK = ReasonCode(PacketTypes.PUBACK, "Success")
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]  # paho leaves it unannotated


class CoalescingClient(paho.Client):
    """A paho ``Client`` that gathers its socket calls; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = bytearray()
        self._wbuf = bytearray()
        self._retry = 0  # bytes of the last send that would have blocked: sent again as they were
        self._gathering = False

    def buffered(self) -> int:
        """Bytes received and not yet handed to paho."""
        return len(self._rbuf)

    def want_write(self) -> bool:
        """paho has packets queued, or bytes are waiting to be sent."""
        return super().want_write() or bool(self._wbuf)

    def _sock_recv(self, bufsize: int) -> bytes:
        buf = self._rbuf
        if not buf:
            data = super()._sock_recv(READ_SIZE)
            if len(data) <= bufsize:
                return data  # also end of stream (b"")
            buf += data
        out = bytes(buf[:bufsize])
        del buf[:bufsize]  # a bytearray drops its head without copying the rest
        return out

    def _sock_send(self, buf: bytes | bytearray) -> int:
        if self._gathering:
            self._wbuf += buf
            return len(buf)
        return super()._sock_send(buf)

    def _packet_write(self) -> MQTTErrorCode:
        if self._wbuf:  # what an earlier turn could not send goes first
            rc = self._flush()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        self._gathering = True
        try:
            rc = super()._packet_write()
        finally:
            self._gathering = False
        if self._wbuf and self._sock is not None:
            flushed = self._flush()
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                rc = flushed
        return rc

    def _flush(self) -> MQTTErrorCode:
        # TLS wants a write that would have blocked repeated with the same bytes, so the
        # bytes gathered since wait for the next send.
        size = self._retry or len(self._wbuf)
        try:
            sent = super()._sock_send(bytes(self._wbuf[:size]))
        except BlockingIOError:
            self._retry = size
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except (AttributeError, ValueError, ConnectionError) as err:
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            self._easy_log(paho.MQTT_LOG_ERR, "failed to send on socket: %s", err)
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        except OSError as err:
            self._easy_log(paho.MQTT_LOG_ERR, "failed to send on socket: %s", err)
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        self._retry = 0
        del self._wbuf[:sent]
        return MQTTErrorCode.MQTT_ERR_AGAIN if self._wbuf else MQTTErrorCode.MQTT_ERR_SUCCESS

    def _create_socket_connection(self) -> socket.socket:
        """paho's connect, with an ASCII host name passed as bytes: CPython encodes a ``str``
        host with the ``idna`` codec (importing it, ``stringprep`` and ``unicodedata``: ~0.4
        MiB of RSS for an address such as ``127.0.0.1``); bytes are resolved as they are.

        paho's proxy lookup is asked only when a proxy is set (``proxy_set`` or an
        ``mqtt_proxy`` environment variable, the one name it reads from ``getproxies``): its
        lookup runs ``urllib.request`` (see the package's docstring) even to find none."""
        host = self._host
        if (self._proxy_wanted() and self._get_proxy()) or not host.isascii():
            return super()._create_socket_connection()
        return socket.create_connection(
            (host.encode("ascii"), self._port),  # type: ignore[arg-type]  # bytes resolve too
            timeout=self._connect_timeout,
            source_address=(self._bind_address, self._bind_port))

    def _proxy_wanted(self) -> bool:
        """Whether paho's ``_get_proxy`` could find a proxy: one given to ``proxy_set``, or an
        ``mqtt_proxy`` variable (any case, as ``urllib.request.getproxies`` reads them)."""
        return bool(self._proxy) or any(k.lower() == "mqtt_proxy" for k in os.environ)

    def _sock_close(self) -> None:
        sock = self._sock
        if sock is not None and self._wbuf:
            with contextlib.suppress(OSError, ValueError):
                if isinstance(sock, socket.socket):
                    sock.send(self._wbuf)
                else:
                    sock.send(bytes(self._wbuf))
        self._wbuf.clear()
        self._rbuf.clear()
        self._retry = 0
        super()._sock_close()

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> MQTTErrorCode:
        packet = self._in_packet["packet"]
        if cmd != "PUBACK" or len(packet) != 2:
            return super()._handle_pubackcomp(cmd)
        mid = (packet[0] << 8) | packet[1]
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, _PUBACK_OK, _NO_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _easy_log(self, level: LogLevel, fmt: str, *args: Any) -> None:
        if (level == paho.MQTT_LOG_DEBUG and self.on_log is None
                and (self._logger is None or not self._logger.isEnabledFor(logging.DEBUG))):
            return
        super()._easy_log(level, fmt, *args)


_SHARED = threading.Condition()


class SharedConditionInfo(paho.MQTTMessageInfo):
    """paho's ``MQTTMessageInfo`` without a condition of its own; see the module docstring."""

    __slots__ = ()

    def __init__(self, mid: int) -> None:
        self.mid = mid
        self._published = False
        self._condition = _SHARED
        self.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        self._iterpos = 0

    def _set_as_published(self) -> None:
        with self._condition:
            self._published = True
            self._condition.notify_all()  # shared: wake every waiter, each checks its own


paho.MQTTMessageInfo = SharedConditionInfo  # type: ignore[misc]  # see the module docstring
