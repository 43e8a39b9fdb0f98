"""Finding other sidecars at run time (``nameResolution.component: mdns``): the contract the
invocation core uses, and the pure parts of our mDNS records (no zeroconf here).

Each sidecar with ``--internal-grpc-port`` announces one DNS-SD service instance:

* type :data:`SERVICE_TYPE` (``_edge-runtime._tcp.local.``);
* instance ``<app id>-<6 hex digits>`` (random per start, so replicas and restarts never
  collide), its own host name ``<instance>.local.`` with the addresses it listens on;
* SRV port: the internal gRPC port;
* TXT: ``appid``, ``namespace`` (empty for none) and ``port`` (the internal port again, for
  people reading the records with ``avahi-browse -r``), plus ``txtvers=1``.

The TXT is authoritative: the instance name is only a readable label.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "SERVICE_TYPE",
    "AppNotFoundError",
    "Discovery",
    "Instance",
    "Instances",
    "MdnsStartError",
    "announced_addresses",
    "instance_label",
    "instance_of",
    "txt_of",
]

SERVICE_TYPE = "_edge-runtime._tcp.local."
_APP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_LABEL_MAX = 63  # bytes in one DNS label (RFC 1035 §2.3.4)


class AppNotFoundError(Exception):
    """No sidecar announced the app (in that namespace) within the resolve timeout."""


class MdnsStartError(Exception):
    """mDNS cannot run here (no multicast-capable IPv4 interface, sockets refused)."""


@runtime_checkable
class Discovery(Protocol):
    """Resolves app ids to ``host:port`` of their sidecar's internal port. Coroutine-safe."""

    async def resolve(self, app_id: str, namespace: str) -> str:
        """The address of a sidecar of ``app_id`` in ``namespace`` (ours when empty); with
        several, they take turns. Raises :class:`AppNotFoundError`."""
        ...

    def unreachable(self, address: str) -> None:
        """A call to ``address`` could not connect: the next :meth:`resolve` prefers another
        sidecar of that app, if there is one."""
        ...


def instance_label(app_id: str) -> str:
    """A fresh instance label for ``app_id``: ``<app id>-<6 hex>``, at most 63 bytes."""
    suffix = "-" + os.urandom(3).hex()
    return app_id[: _LABEL_MAX - len(suffix)] + suffix


def txt_of(app_id: str, namespace: str, port: int) -> dict[str, str]:
    """The TXT properties of our instance."""
    return {"txtvers": "1", "appid": app_id, "namespace": namespace, "port": str(port)}


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""


def _host_port(address: str, port: int) -> str | None:
    """``address`` as a dialable ``host:port``; ``None`` for what we cannot dial (IPv6
    link-local needs an interface we do not know)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.version == 6:
        return None if ip.is_link_local else f"[{ip}]:{port}"
    return f"{ip}:{port}"


@dataclass(frozen=True, slots=True)
class Instance:
    """One announced sidecar: its app, namespace and dialable addresses (``host:port``),
    and when we last read its records (monotonic seconds)."""

    name: str
    app_id: str
    namespace: str
    addresses: tuple[str, ...]
    seen: float


def instance_of(
    name: str, properties: Mapping[bytes, bytes | None], addresses: Iterable[str], port: int,
    now: float,
) -> Instance | None:
    """The :class:`Instance` a resolved record set describes, or ``None`` when it is not a
    sidecar we can call (no valid app id, no port, no usable address)."""
    app_id = _text(properties.get(b"appid"))
    if not _APP_ID.fullmatch(app_id) or not 0 < port < 65536:
        return None
    namespace = _text(properties.get(b"namespace"))
    if namespace and not _APP_ID.fullmatch(namespace):
        return None
    dialable = [a for a in (_host_port(x, port) for x in addresses) if a is not None]
    if not dialable:
        return None
    return Instance(name, app_id, namespace, tuple(dict.fromkeys(dialable)), now)


def announced_addresses(listen_address: str, local: Sequence[str]) -> list[str]:
    """What to announce for an internal port listening on ``listen_address``: that address,
    or for a wildcard (``0.0.0.0``, ``::``) every local address in ``local`` except loopback
    (loopback only when there is nothing else: peers on other hosts cannot dial it).
    Raises :class:`ValueError` when ``listen_address`` is not an IP address."""
    try:
        ip = ipaddress.ip_address(listen_address)
    except ValueError:
        raise ValueError(
            f"the internal port's listen address must be an IP address, got {listen_address!r}"
        ) from None
    if not ip.is_unspecified:
        return [str(ip)]
    wanted = [a for a in local if ipaddress.ip_address(a).version == 4 or ip.version == 6]
    outside = [a for a in wanted if not ipaddress.ip_address(a).is_loopback]
    return list(dict.fromkeys(outside or wanted))


class Instances:
    """The instances we know, by name. Not thread-safe: used from the event loop only.

    An instance is *fresh* for ``ttl_s`` after its records were read; :meth:`pick` still
    answers with stale ones (the caller re-reads them in the background, and drops those
    that no longer answer). An address reported :meth:`unreachable` is *suspect* for
    ``suspect_s``: :meth:`pick` avoids it while the app has other addresses (a peer that
    died without a goodbye, beside its restarted self), and still answers with it when it
    is all there is (a live peer after a network blip).
    """

    def __init__(self, ttl_s: float, suspect_s: float) -> None:
        self.ttl_s = ttl_s
        self.suspect_s = suspect_s
        self._by_name: dict[str, Instance] = {}
        self._turn: dict[tuple[str, str], int] = {}
        self._suspect: dict[str, float] = {}  # address -> until (monotonic)

    def __len__(self) -> int:
        return len(self._by_name)

    def put(self, instance: Instance) -> None:
        """Add or replace ``instance`` (by name)."""
        self._by_name[instance.name] = instance

    def drop(self, name: str) -> bool:
        """Forget the instance ``name``; whether it was known."""
        return self._by_name.pop(name, None) is not None

    def unreachable(self, address: str, now: float) -> None:
        """``address`` could not be connected to at ``now``: suspect it for a while."""
        self._suspect[address] = now + self.suspect_s

    def matching(self, app_id: str, namespace: str) -> list[Instance]:
        """Instances of ``app_id`` in ``namespace``, in a stable order (by name)."""
        return sorted(
            (i for i in self._by_name.values() if i.app_id == app_id and i.namespace == namespace),
            key=lambda i: i.name,
        )

    def stale(self, app_id: str, namespace: str, now: float) -> list[str]:
        """Names of the instances of ``app_id`` whose records are older than the TTL."""
        return [i.name for i in self.matching(app_id, namespace) if now - i.seen >= self.ttl_s]

    def pick(self, app_id: str, namespace: str, now: float) -> str | None:
        """An address of ``app_id`` in ``namespace``, ``None`` if unknown. Instances take
        turns (round robin, as daprd's mDNS resolver does), those with an address that is
        not suspect first; within one, its first such address."""
        self._suspect = {a: until for a, until in self._suspect.items() if until > now}
        choices = [self._best(i.addresses) for i in self.matching(app_id, namespace)]
        if not choices:
            return None
        trusted = [a for a in choices if a not in self._suspect]
        key = (app_id, namespace)
        turn = self._turn.get(key, 0)
        self._turn[key] = turn + 1
        pool = trusted or choices
        return pool[turn % len(pool)]

    def _best(self, addresses: tuple[str, ...]) -> str:
        return next((a for a in addresses if a not in self._suspect), addresses[0])
