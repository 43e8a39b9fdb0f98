"""Plain values shared by the MQTT modules: connection options and received messages."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_runtime.pubsub.mqtt.metadata import TlsFiles

__all__ = ["ClientOptions", "ConnectFailedError", "Incoming"]


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """How to connect. ``name`` labels logs and metrics (the component name).

    ``tls_files``: where ``tls`` came from, rebuilt before a connection attempt once they
    changed (certificate rotation). ``ack_timeout`` bounds every wait for a
    PUBACK/SUBACK/UNSUBACK; ``inflight`` is the most publishes waiting for their ack at a time
    (lowered to an MQTT 5 broker's Receive Maximum).
    """

    host: str
    port: int
    client_id: str
    name: str = ""
    mqtt5: bool = False
    clean_session: bool = False
    keepalive: float = 30.0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    tls_files: TlsFiles | None = field(default=None, repr=False, compare=False)
    connect_timeout: float = 10.0
    ack_timeout: float = 20.0
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    inflight: int = 100


@dataclass(frozen=True, slots=True)
class Incoming:
    """A received message. ``mid`` and ``epoch`` (which connection it came on) identify it
    for :meth:`~edge_runtime.pubsub.mqtt.client.MqttClient.ack`."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    duplicate: bool
    mid: int
    epoch: int


class ConnectFailedError(Exception):
    """One connection attempt failed; ``reason`` is the metric label (``network``,
    ``timeout``, ``tls`` (a certificate refused by either side), ``refused`` or
    ``not_authorized``, which stops the retries)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
