"""mDNS name resolution (``nameResolution.component: mdns``) on zeroconf's asyncio API.

The only module that imports zeroconf (the ``mdns`` extra); it is imported only when the
``--config`` asks for mDNS. zeroconf runs on our event loop (no thread of its own): create
:class:`MdnsDiscovery` inside the running loop.

* **Browsing** starts at once: a browser on :data:`~edge_runtime.invocation.discovery.
  SERVICE_TYPE` reads each instance's records (SRV, TXT, addresses) when it appears or
  changes and forgets it on a goodbye; zeroconf's cache holds the records for their DNS TTL.
* **Resolving** answers from that table (instances of one app take turns). Entries older
  than ``ttl_s`` are re-read in the background. An app not in the table starts a fresh browse
  (queries go out at once) and waits up to ``resolve_timeout_s`` for it to be announced,
  then raises :class:`~edge_runtime.invocation.discovery.AppNotFoundError`. An address that
  could not be connected to (:meth:`MdnsDiscovery.unreachable`) is avoided for
  :data:`SUSPECT_S` while the app has others, so the retry resolves to another sidecar (a
  peer that died without a goodbye stays listed until its records expire, 2-3 minutes).
* **Announcing** (:meth:`MdnsDiscovery.announce`, with ``--internal-grpc-port``) probes for
  the name and announces in a background task, so the sidecar's start does not wait;
  :meth:`MdnsDiscovery.withdraw` sends the goodbye packets.

No zeroconf exception leaves this module: sockets that cannot be opened are
:class:`~edge_runtime.invocation.discovery.MdnsStartError`, a name that cannot be announced
a :class:`ValueError`, announcing failures after that are logged, resolution failures are
:class:`~edge_runtime.invocation.discovery.AppNotFoundError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging

import ifaddr
from zeroconf import Error as ZeroconfError
from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from edge_runtime.invocation.discovery import (
    SERVICE_TYPE,
    AppNotFoundError,
    Instances,
    MdnsStartError,
    announced_addresses,
    instance_label,
    instance_of,
    txt_of,
)

__all__ = ["MdnsDiscovery", "local_addresses"]

log = logging.getLogger("edge_runtime.invocation.mdns")

RESOLVE_TIMEOUT_S = 3.0
CACHE_TTL_S = 60.0
SUSPECT_S = 30.0  # an address that could not be connected to is avoided this long
READ_TIMEOUT_MS = 3000  # one instance's SRV/TXT/A records
REBROWSE_EVERY_S = 1.0  # at most one fresh browse per second, however many misses
GOODBYE_TIMEOUT_S = 3.0


def local_addresses() -> list[str]:
    """Every address of every interface (IPv6 link-local ones left out: they need a scope)."""
    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                found.append(ip.ip)
            elif not ipaddress.IPv6Address(ip.ip[0]).is_link_local:
                found.append(ip.ip[0])
    return found


class MdnsDiscovery:
    """Browses for, resolves and announces sidecars over mDNS. Use from the event loop only.

    Raises :class:`~edge_runtime.invocation.discovery.MdnsStartError` when the multicast
    sockets cannot be opened (no IPv4 interface, no permission).
    """

    def __init__(
        self,
        app_id: str,
        namespace: str = "",
        *,
        resolve_timeout_s: float = RESOLVE_TIMEOUT_S,
        ttl_s: float = CACHE_TTL_S,
    ) -> None:
        self.app_id = app_id
        self.namespace = namespace
        self.resolve_timeout_s = resolve_timeout_s
        self._loop = asyncio.get_running_loop()
        try:
            # IPv4 only: one socket per interface, and no failure on hosts with IPv6 disabled.
            self._azc = AsyncZeroconf(ip_version=IPVersion.V4Only)
        except (OSError, RuntimeError, ZeroconfError) as exc:  # RuntimeError: no interface
            raise MdnsStartError(str(exc)) from None
        self._instances = Instances(ttl_s, SUSPECT_S)
        self._changed = asyncio.Event()
        self._reads: dict[str, asyncio.Task[None]] = {}
        self._browser = self._browse()
        self._browsed_at = self._loop.time()
        self._info: AsyncServiceInfo | None = None
        self._registered = False
        self._announcing: asyncio.Task[None] | None = None
        self._closed = False

    # ------------------------------------------------------------------ browsing
    def _browse(self) -> AsyncServiceBrowser:
        return AsyncServiceBrowser(self._azc.zeroconf, SERVICE_TYPE, handlers=[self._on_change])

    def _on_change(self, *, name: str, state_change: ServiceStateChange, **_: object) -> None:
        # zeroconf calls handlers with keywords: zeroconf, service_type, name, state_change.
        if self._info is not None and name == self._info.name:
            return
        if state_change is ServiceStateChange.Removed:
            if self._instances.drop(name):
                log.info("mDNS: %s said goodbye", name)
                self._pulse()
            return
        self._read(name)

    def _pulse(self) -> None:
        """Wake every :meth:`resolve` waiting for the table to change."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _read(self, name: str) -> None:
        """(Re-)read the records of ``name`` in the background; one read per name at a time."""
        if name not in self._reads:
            self._reads[name] = self._loop.create_task(self._read_now(name), name=f"mdns {name}")

    async def _read_now(self, name: str) -> None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        try:
            found = await info.async_request(self._azc.zeroconf, READ_TIMEOUT_MS)
        except (ZeroconfError, OSError) as exc:
            log.warning("mDNS: cannot read the records of %s: %s", name, exc)
            found = False
        finally:
            self._reads.pop(name, None)
        instance = None
        if found and info.port is not None:
            instance = instance_of(
                name, info.properties, info.parsed_addresses(), info.port, self._loop.time()
            )
        if instance is None:
            self._instances.drop(name)
        else:
            self._instances.put(instance)
            log.debug("mDNS: %s is app %s at %s", name, instance.app_id, instance.addresses)
        self._pulse()

    async def _rebrowse(self) -> None:
        """A fresh browser: it replays the cache and queries the network at once."""
        now = self._loop.time()
        if now - self._browsed_at < REBROWSE_EVERY_S:
            return
        self._browsed_at = now
        old, self._browser = self._browser, self._browse()
        await old.async_cancel()

    # ------------------------------------------------------------------ resolving
    async def resolve(self, app_id: str, namespace: str) -> str:
        """See :class:`~edge_runtime.invocation.discovery.Discovery`."""
        namespace = namespace or self.namespace
        deadline = self._loop.time() + self.resolve_timeout_s
        while True:
            for name in self._instances.stale(app_id, namespace, self._loop.time()):
                self._read(name)
            address = self._instances.pick(app_id, namespace, self._loop.time())
            if address is not None:
                return address
            changed = self._changed
            await self._rebrowse()
            try:
                async with asyncio.timeout_at(deadline):
                    await changed.wait()
            except TimeoutError:
                target = f"{app_id}.{namespace}" if namespace else app_id
                raise AppNotFoundError(
                    f"app {target} not found via mDNS (no sidecar announced it within "
                    f"{self.resolve_timeout_s:g}s)"
                ) from None

    def unreachable(self, address: str) -> None:
        """See :class:`~edge_runtime.invocation.discovery.Discovery`."""
        self._instances.unreachable(address, self._loop.time())

    # ------------------------------------------------------------------ announcing
    def announce(self, port: int, listen_address: str) -> None:
        """Start announcing our app on ``port`` (the internal port) at the addresses of
        ``listen_address``. Raises :class:`ValueError` when that is not an IP address (or
        our app id makes no service name)."""
        addresses = announced_addresses(listen_address, local_addresses())
        label = instance_label(self.app_id)
        try:
            self._info = AsyncServiceInfo(
                SERVICE_TYPE, f"{label}.{SERVICE_TYPE}", port=port,
                properties=txt_of(self.app_id, self.namespace, port),
                server=f"{label.replace('_', '-')}.local.", parsed_addresses=addresses,
            )
        except ZeroconfError as exc:
            raise ValueError(f"{label!r} makes no mDNS service name: {exc!r}") from None
        self._announcing = self._loop.create_task(self._register(self._info), name="mdns-announce")

    async def _register(self, info: AsyncServiceInfo) -> None:
        try:
            # Renames (" (2)") in the unlikely case our random label is taken.
            announced = await self._azc.async_register_service(info, allow_name_change=True)
            self._registered = True
            log.info("mDNS: announcing app %s as %s at %s port %d", self.app_id, info.name,
                     ", ".join(info.parsed_addresses()), info.port)
            await announced
        except (ZeroconfError, OSError) as exc:
            log.error("mDNS: cannot announce %s: %s", info.name, exc)  # noqa: TRY400 - expected

    async def withdraw(self) -> None:
        """Stop announcing: goodbye packets (bounded wait); idempotent."""
        task, self._announcing = self._announcing, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._info is None or not self._registered:
            return
        self._registered = False
        try:
            async with asyncio.timeout(GOODBYE_TIMEOUT_S):
                await (await self._azc.async_unregister_service(self._info))
        except (TimeoutError, ZeroconfError, OSError, KeyError) as exc:
            log.warning("mDNS: goodbye for %s not sent: %r", self._info.name, exc)
        else:
            log.info("mDNS: stopped announcing %s", self._info.name)

    async def close(self) -> None:
        """Withdraw, stop browsing and close the sockets; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.withdraw()
        reads = list(self._reads.values())
        for task in reads:
            task.cancel()
        await asyncio.gather(*reads, return_exceptions=True)
        await self._browser.async_cancel()
        await self._azc.async_close()
