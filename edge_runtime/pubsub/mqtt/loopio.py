"""Driving a paho client's socket from the asyncio loop: no paho thread, no ``select``.

:class:`SocketDriver` registers the socket with ``loop.add_reader`` (→ ``loop_read``) and, while
paho has bytes to send, ``loop.add_writer`` (→ ``loop_write``); :meth:`SocketDriver.run_misc`
calls ``loop_misc`` (keep-alive) every second. Its ``on_*`` methods are paho's socket hooks.
Hooks fired from another thread (the executor running the blocking ``connect()``) are ignored:
the caller :meth:`SocketDriver.attach`-es the socket on the loop once ``connect()`` returned.

It needs only five methods of paho's ``Client`` (:class:`PahoIO`), so paho stays imported by
``client.py`` alone. Concurrency: event-loop only, except the hooks (see above).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from typing import Any, Protocol

__all__ = ["PahoIO", "SocketDriver"]

log = logging.getLogger(__name__)

_SUCCESS = 0  # MQTTErrorCode.MQTT_ERR_SUCCESS


class PahoIO(Protocol):
    """The part of ``paho.mqtt.client.Client`` the driver uses."""

    def loop_read(self, max_packets: int = 1) -> int: ...
    def loop_write(self) -> int: ...
    def loop_misc(self) -> int: ...
    def socket(self) -> Any: ...
    def want_write(self) -> bool: ...
    def buffered(self) -> int: ...


class SocketDriver:
    """Puts one paho client's socket on the loop; see the module docstring."""

    def __init__(self, name: str, io: PahoIO) -> None:
        self.name = name
        self._io = io
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self._fd = -1
        self._writing = False

    @property
    def attached(self) -> bool:
        """Whether a socket is registered with the loop."""
        return self._fd >= 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use ``loop`` (and its thread) from now on."""
        self._loop, self._thread = loop, threading.get_ident()

    def attach(self) -> bool:
        """Register paho's current socket with the loop; ``False`` when there is none."""
        sock, loop = self._io.socket(), self._loop
        if sock is None or loop is None:
            return False
        self.detach()
        self._fd = sock.fileno()
        loop.add_reader(self._fd, self._readable)
        if self._io.want_write():
            self._writing = True
            loop.add_writer(self._fd, self._writable)
        return True

    def detach(self) -> None:
        """Unregister the socket (before paho closes it, or after)."""
        if self._loop is not None and self._fd >= 0:
            with contextlib.suppress(RuntimeError):  # uvloop: a poll handle it closed itself
                self._loop.remove_reader(self._fd)
            with contextlib.suppress(RuntimeError):
                self._loop.remove_writer(self._fd)
        self._fd, self._writing = -1, False

    def drop(self) -> None:
        """Close the connection now, without DISCONNECT: paho reads end-of-stream, closes the
        socket and reports the loss through ``on_disconnect`` like any other loss."""
        for _ in range(64):  # bytes already received are processed first, then EOF
            sock = self._io.socket()
            if sock is None:
                return
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._io.loop_read()
        log.error("MQTT %s: the socket did not close after shutdown", self.name)

    async def run_misc(self, interval: float = 1.0) -> None:
        """Call ``loop_misc`` every ``interval`` s while attached (PINGREQ, dead peers)."""
        while True:
            await asyncio.sleep(interval)
            if self.attached:
                try:
                    self._io.loop_misc()
                except Exception:
                    log.exception("MQTT %s: keep-alive check failed", self.name)

    # --- paho's socket hooks: (client, userdata, sock) --------------------------------------

    def _on_loop(self) -> bool:
        return threading.get_ident() == self._thread

    def on_socket_open(self, _client: Any, _userdata: Any, _sock: Any) -> None:
        """paho opened a socket: put it on the loop now if that happened on the loop's thread
        (in the connect thread, the caller attaches it once ``connect()`` returned)."""
        if self._on_loop():
            self.attach()

    def on_socket_close(self, _client: Any, _userdata: Any, _sock: Any) -> None:
        """paho is about to close the socket."""
        if self._on_loop():
            self.detach()

    def on_register_write(self, _client: Any, _userdata: Any, _sock: Any) -> None:
        """paho has bytes to send."""
        if self._on_loop() and self._fd >= 0 and not self._writing and self._loop is not None:
            self._writing = True
            try:
                self._loop.add_writer(self._fd, self._writable)
            except RuntimeError as exc:
                # uvloop closes its poll handle itself when the socket reports an error, and
                # then refuses the fd; raising here would fail paho's caller (a PUBACK in a
                # message task). The connection is broken: end it, paho reports the loss.
                self._writing = False
                log.warning("MQTT %s: the socket's poll handle is gone (%s); reconnecting",
                            self.name, exc)
                self._loop.call_soon(self.drop)

    def on_unregister_write(self, _client: Any, _userdata: Any, _sock: Any) -> None:
        """paho sent everything."""
        if self._on_loop() and self._fd >= 0 and self._writing and self._loop is not None:
            self._writing = False
            self._loop.remove_writer(self._fd)

    # --- loop callbacks -------------------------------------------------------------------------

    def _readable(self) -> None:
        try:
            rc = self._io.loop_read()
            sock = self._io.socket()
            # Bytes already received (paho's read buffer, or TLS's decrypted ones) are not
            # signalled by the fd again: drain them now.
            while rc == _SUCCESS and sock is not None and (
                    self._io.buffered() > 0
                    or (isinstance(sock, ssl.SSLSocket) and sock.pending() > 0)):
                rc = self._io.loop_read()
                sock = self._io.socket()
        except Exception:
            log.exception("MQTT %s: reading from the broker failed; reconnecting", self.name)
            self.drop()

    def _writable(self) -> None:
        try:
            self._io.loop_write()
        except Exception:
            log.exception("MQTT %s: writing to the broker failed; reconnecting", self.name)
            self.drop()
