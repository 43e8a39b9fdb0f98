"""``pubsub.mqtt`` (alias Dapr's ``pubsub.mqtt3``) component metadata (contract §6.3).

Dapr's names: ``url`` (required; ``tcp``/``mqtt`` plain, ``ssl``/``mqtts``/``tcps``/``tls``
TLS; ``user:password@`` in the URL are the credentials; default port 1883, or 8883 with TLS),
``qos`` (0-2, default 1, for publish and subscribe), ``retain``, ``cleanSession`` (default
false), ``consumerID`` (the MQTT client id, default the app id) and ``caCert``, ``clientCert``,
``clientKey``: PEM text as in Dapr or, ours, the path of a PEM file (absolute, or relative to
the data dir) when the value holds no ``-----BEGIN``.

Ours: ``protocol`` (``3.1.1`` or ``5``), ``keepAlive`` (30s), ``reconnectMin``/``reconnectMax``
(0.5s/30s, full jitter), ``inflight`` (100 unacknowledged publishes at most), ``consumerGroup``
(MQTT 5 only: every subscription becomes ``$share/<group>/<filter>``), ``connectTimeout`` (10s)
and ``publishTimeout`` (20s, Dapr's fixed wait: the longest wait for a PUBACK/SUBACK).

Differences from Dapr, on purpose: ``qos`` above 2 is an error (Dapr lets 3-7 pass); TLS files
given with a plain ``tcp://`` URL are ignored with a warning (Dapr ignores them silently).
Certificate rotation: when PEMs are given as file paths, :class:`TlsFiles` lets the client
rebuild the context before a connection attempt once one of the files changed (Dapr reads
them once). There is no option that turns verification off (Dapr's mqtt3 has none either).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from edge_runtime.config.metadata import MetadataError, decode, meta, problem
from edge_runtime.pubsub.mqtt import topics
from edge_runtime.registry import ComponentContext
from edge_runtime.support.filestamp import Stamp, stamp
from edge_runtime.support.tlsprobe import load_cert_chain_pem

__all__ = ["MqttMetadata", "MqttSettings", "TlsFiles", "parse"]

log = logging.getLogger(__name__)

PLAIN_SCHEMES = ("tcp", "mqtt")
TLS_SCHEMES = ("ssl", "mqtts", "tcps", "tls")
PROTOCOLS = ("3.1.1", "5")


@dataclass(frozen=True)
class MqttMetadata:
    """The decoded ``spec.metadata`` (durations in seconds)."""

    url: str = meta("url", required=True, help="tcp://user:password@host:1883 or ssl://...")
    qos: int = meta("qos", kind="int", default=1, minimum=0, maximum=2)
    retain: bool = meta("retain", kind="bool", default=False)
    clean_session: bool = meta("cleanSession", kind="bool", default=False)
    consumer_id: str = meta("consumerID", default="", help="the MQTT client id; the app id")
    ca_cert: str = meta("caCert", default="", help="PEM text or a PEM file path")
    client_cert: str = meta("clientCert", default="", help="PEM text or a PEM file path")
    client_key: str = meta("clientKey", default="", help="PEM text or a PEM file path")
    protocol: str = meta("protocol", kind="choice", choices=PROTOCOLS, default="3.1.1")
    keep_alive: float = meta(
        "keepAlive", kind="duration", default=30.0, minimum=0.0, maximum=65535.0,
        help="0 disables keep-alive pings",
    )
    reconnect_min: float = meta("reconnectMin", kind="duration", default=0.5, minimum=0.001)
    reconnect_max: float = meta("reconnectMax", kind="duration", default=30.0, minimum=0.001)
    inflight: int = meta("inflight", kind="int", default=100, minimum=1, maximum=65535)
    consumer_group: str = meta("consumerGroup", default="", help="MQTT 5 shared subscriptions")
    connect_timeout: float = meta("connectTimeout", kind="duration", default=10.0, minimum=0.001)
    publish_timeout: float = meta("publishTimeout", kind="duration", default=20.0, minimum=0.001)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The PEM files a TLS context was built from, and how to build it again.

    A client compares :meth:`stamp` with the one its context was built at (``built_at`` for
    the context in :class:`MqttSettings`) and calls :meth:`build` when they differ. Each
    client keeps its own stamp: a binding's two connections share this object.
    """

    paths: tuple[Path, ...]
    built_at: Stamp
    _build: Callable[[], ssl.SSLContext] = field(repr=False, compare=False)

    def stamp(self) -> Stamp:
        """See :func:`edge_runtime.support.filestamp.stamp`."""
        return stamp(self.paths)

    def build(self) -> ssl.SSLContext:
        """A new context from the files as they are now; ``ValueError`` (naming the entry
        and the file) when they do not make one."""
        try:
            return self._build()
        except MetadataError as exc:
            raise ValueError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Everything the component needs, checked: the metadata plus what the URL and PEMs say.

    Its ``repr`` shows neither the password nor the URL that carries it.
    """

    metadata: MqttMetadata = field(repr=False)  # its url may hold the password
    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = field(default=None, compare=False, repr=False)
    tls_files: TlsFiles | None = field(default=None, compare=False, repr=False)

    @property
    def mqtt5(self) -> bool:
        """Whether MQTT 5 is spoken (else 3.1.1)."""
        return self.metadata.protocol == "5"


def parse(ctx: ComponentContext) -> MqttSettings:
    """Decode and check the metadata; raise ``MetadataError`` naming ``file:line`` and field.

    Reads PEM files named by ``caCert``/``clientCert``/``clientKey`` and builds the TLS context
    (a bad PEM is a metadata error on its entry); no network I/O.
    """
    md, manifest = ctx.metadata, ctx.manifest
    settings = decode(MqttMetadata, md, manifest)
    if settings.reconnect_min > settings.reconnect_max:
        raise problem(
            manifest, md, "reconnectMin",
            f"must not exceed reconnectMax ({settings.reconnect_max:g}s),"
            f" got {settings.reconnect_min:g}s",
        )
    client_id = settings.consumer_id or ctx.app_id
    if not client_id:
        raise problem(manifest, md, "consumerID", "is required (the MQTT client id) when no app id")
    if settings.consumer_group:
        if settings.protocol != "5":
            raise problem(
                manifest, md, "consumerGroup",
                "needs MQTT 5 shared subscriptions ($share/<group>/<filter>): add"
                " 'protocol: 5' to the metadata, or remove consumerGroup",
            )
        try:
            topics.shared(settings.consumer_group, "x")
        except ValueError as exc:
            raise problem(manifest, md, "consumerGroup", str(exc)) from None
    try:
        scheme, host, port, username, password = _split_url(settings.url)
    except ValueError as exc:
        raise problem(manifest, md, "url", str(exc)) from None
    tls: ssl.SSLContext | None = None
    files: TlsFiles | None = None
    pem_names = [n for n, v in _pem_fields(settings) if v]
    if scheme in TLS_SCHEMES:
        paths = tuple(ctx.resolve_path(v.strip()) for _, v in _pem_fields(settings)
                      if v and "-----BEGIN" not in v)
        built_at = stamp(paths)  # before reading them: a change meanwhile is seen later
        tls = _tls_context(ctx, settings)
        if paths:
            files = TlsFiles(paths, built_at, lambda: _tls_context(ctx, settings))
    elif pem_names:
        log.warning(
            "%s: %s ignored: the url scheme %r is plain TCP (use ssl:// or mqtts:// for TLS)",
            manifest.describe(), ", ".join(pem_names), scheme,
        )
    return MqttSettings(settings, host, port, client_id, username, password, tls, files)


def _split_url(url: str) -> tuple[str, str, int, str | None, str | None]:
    """``(scheme, host, port, username, password)``; ``ValueError`` says what is wrong."""
    expected = "expected a URL such as tcp://host:1883 or ssl://user:password@host:8883"
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in PLAIN_SCHEMES + TLS_SCHEMES:
        known = ", ".join(PLAIN_SCHEMES + TLS_SCHEMES)
        raise ValueError(f"{expected}; the scheme must be one of {known}, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"{expected}; no host in {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{expected}; bad port in {url!r}") from None
    if port is None:
        port = 8883 if scheme in TLS_SCHEMES else 1883
    if port == 0:
        raise ValueError(f"{expected}; port 0 in {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{expected}; an MQTT URL has no path or query: {url!r}")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return scheme, parts.hostname, port, username or None, password


def _pem_fields(settings: MqttMetadata) -> list[tuple[str, str]]:
    return [
        ("caCert", settings.ca_cert),
        ("clientCert", settings.client_cert),
        ("clientKey", settings.client_key),
    ]


def _pem_text(ctx: ComponentContext, name: str, value: str) -> str:
    """The PEM text of entry ``name``: the value itself, or the file it names."""
    if "-----BEGIN" in value:
        return value
    path = ctx.resolve_path(value.strip())
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise problem(
            ctx.manifest, ctx.metadata, name,
            f"expected PEM text (-----BEGIN ...) or a readable PEM file; cannot read {path}"
            f" ({exc.__class__.__name__}: {getattr(exc, 'strerror', None) or exc})",
        ) from None


def _tls_context(ctx: ComponentContext, settings: MqttMetadata) -> ssl.SSLContext:
    """A client context verifying the broker: against ``caCert`` only when given (as Dapr),
    else the system's CAs; with the client certificate when both halves are given."""
    md, manifest = ctx.metadata, ctx.manifest
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certs and host names
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.ca_cert:
        try:
            context.load_verify_locations(cadata=_pem_text(ctx, "caCert", settings.ca_cert))
        except (ssl.SSLError, ValueError) as exc:
            raise problem(
                manifest, md, "caCert", f"is not a usable PEM certificate: {exc}"
            ) from None
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if bool(settings.client_cert) != bool(settings.client_key):
        missing = "clientKey" if settings.client_cert else "clientCert"
        given = "clientCert" if settings.client_cert else "clientKey"
        raise problem(manifest, md, given, f"needs {missing} as well (a client certificate pair)")
    if settings.client_cert:
        cert = _pem_text(ctx, "clientCert", settings.client_cert)
        key = _pem_text(ctx, "clientKey", settings.client_key)
        try:
            load_cert_chain_pem(context, cert, key)
        except (ssl.SSLError, ValueError) as exc:
            raise problem(
                manifest, md, "clientCert",
                f"clientCert and clientKey are not a usable PEM certificate and key: {exc}",
            ) from None
    return context
