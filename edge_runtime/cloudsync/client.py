"""The device's sync client: one gRPC stream to the cloud, kept open, drained in order.

One named task (:meth:`SyncClient.start`) loops: open the stream (gzip), send Hello with the
device's cursors, read Welcome (the cloud's cursors: rows they cover are deleted, sending
resumes after them), then send batches from every source in sequence order (round robin
between sources), at most ``window`` batches unacknowledged, at most ``rate`` records a second
(the lower of ``drainRateLimit`` and the cloud's limit). A row is deleted only after the
cloud's Ack covers it. Desired state from the cloud is applied durably, then acknowledged.
Any failure (the cloud unreachable or refusing, a broken stream, no message for three
keepalive periods) ends the stream; the next attempt waits a full-jitter backoff, and resumes
from the cloud's cursors, so nothing is lost and nothing is applied twice.

grpc exceptions never leave this module: they become :attr:`SyncStatus.last_error`.

TLS: a refused handshake is reported as such (reason ``tls`` in the reconnect metric, an
error log line once per distinct failure, ``lastError`` explaining which side refused what,
from :mod:`edge_runtime.support.tlserrors`). grpc says only ``Socket closed`` when the cloud
refused our client certificate, so then one diagnostic handshake per distinct failure
(:mod:`edge_runtime.support.tlsprobe`) tells that apart from a network failure and checks our
certificate's dates. Rotation: with :class:`CredentialFiles`, when a PEM file
changed, the next attempt re-reads them and opens a new channel (a file that does not read is
logged and the previous credentials kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from edge_runtime import __version__
from edge_runtime.cloudsync.desired import DesiredEntry, DesiredStore
from edge_runtime.cloudsync.hlc import HLC
from edge_runtime.cloudsync.protocol import sync_pb2, sync_pb2_grpc
from edge_runtime.cloudsync.sources import Pending, Source
from edge_runtime.cloudsync.status import SyncStatus
from edge_runtime.errors import ComponentError, StorageFullError
from edge_runtime.observability.metrics import (
    CLOUDSYNC_ACKED as ACKED,
)
from edge_runtime.observability.metrics import (
    CLOUDSYNC_RECONNECTS as RECONNECTS,
)
from edge_runtime.observability.metrics import (
    CLOUDSYNC_SENT as SENT,
)
from edge_runtime.pubsub.mqtt.backoff import Backoff
from edge_runtime.support.filestamp import Stamp, stamp
from edge_runtime.support.sqlitedb import DBError
from edge_runtime.support.tlserrors import explain, is_tls_error
from edge_runtime.support.tlsprobe import probe

__all__ = ["CredentialFiles", "Credentials", "SyncClient"]

log = logging.getLogger("edge_runtime.cloudsync")

DEFAULT_WINDOW = 8
WELCOME_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class Credentials:
    """How the device proves who it is: a bearer token, or a client certificate (mTLS) with
    the CA that signed the cloud's certificate. PEM bytes."""

    token: str = ""
    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    server_name: str = ""

    @property
    def tls(self) -> bool:
        """Whether the channel uses TLS."""
        return self.ca is not None


@dataclass(frozen=True, slots=True)
class CredentialFiles:
    """Where the credentials' PEMs come from, to read them again after a rotation.

    ``read`` raises ``OSError`` or ``ComponentError`` when a file cannot be read.
    """

    paths: tuple[Path, ...]
    read: Callable[[], Credentials]

    def stamp(self) -> Stamp:
        """See :func:`edge_runtime.support.filestamp.stamp`."""
        return stamp(self.paths)


class _StreamEndedError(Exception):
    """The stream ended; the message says why."""


class SyncClient:
    """One device's link to the cloud. ``start``/``stop`` on the loop."""

    def __init__(
        self, *, endpoint: str, device_id: str, credentials: Credentials,
        sources: Sequence[Source], desired: DesiredStore, hlc: HLC, status: SyncStatus,
        data_dir: Path | None = None, batch_size: int = 500, rate_limit: float | None = None,
        backoff: Backoff | None = None, keepalive_s: float = 30.0,
        credential_files: CredentialFiles | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.device_id = device_id
        self.credentials = credentials
        self.sources = list(sources)
        self.desired = desired
        self.hlc = hlc
        self.status = status
        self.data_dir = data_dir
        self.batch_size = max(1, batch_size)
        self.rate_limit = rate_limit
        self.backoff = backoff or Backoff(1.0, 60.0)
        self.keepalive_s = keepalive_s
        self.credential_files = credential_files
        self._stamp: Stamp = ()
        self._probed: tuple[str, str | None] | None = None  # (grpc's words, the probe's)
        self._logged_tls = ""  # the TLS failure last logged as an error
        self._task: asyncio.Task[None] | None = None
        self._channel: Any = None
        # Per connection:
        self._cursor: dict[str, int] = {}  # stream -> last seq sent
        self._limits = sync_pb2.Limits()
        self._inflight = 0
        self._slot = asyncio.Condition()
        self._write_lock = asyncio.Lock()
        self._paused_until = 0.0
        self._last_heard = 0.0
        self._acks: asyncio.Queue[tuple[Source, int, int]] = asyncio.Queue()
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the named task that keeps the stream open."""
        self._task = asyncio.create_task(self._run(), name=f"cloudsync:{self.status.component}")

    async def stop(self) -> None:
        """Stop; records in flight stay on the device and are resent next time."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
        self.status.connected = False
        self._save_status()

    def _save_status(self) -> None:
        if self.data_dir is not None:
            self.status.save(self.data_dir)

    async def refresh_backlog(self) -> int:
        """Count the records waiting (also kept in :attr:`status`)."""
        total = 0
        for s in self.sources:
            total += await s.backlog()
        self.status.backlog = total
        return total

    # ------------------------------------------------------------------ the loop
    def _make_channel(self) -> Any:
        keepalive_ms = max(1000, int(self.keepalive_s * 1000))
        options: list[tuple[str, Any]] = [
            ("grpc.keepalive_time_ms", keepalive_ms),
            ("grpc.keepalive_timeout_ms", keepalive_ms),
            ("grpc.keepalive_permit_without_calls", 0),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            # Our own backoff decides when to retry, with jitter across a fleet.
            ("grpc.initial_reconnect_backoff_ms", 500),
            ("grpc.max_reconnect_backoff_ms", 5000),
        ]
        c = self.credentials
        if c.tls:
            if c.server_name:
                options.append(("grpc.ssl_target_name_override", c.server_name))
            creds = grpc.ssl_channel_credentials(root_certificates=c.ca, private_key=c.key,
                                                 certificate_chain=c.cert)
            return grpc.aio.secure_channel(self.endpoint, creds, options=options,
                                           compression=grpc.Compression.Gzip)
        return grpc.aio.insecure_channel(self.endpoint, options=options,
                                         compression=grpc.Compression.Gzip)

    def _reload_credentials(self, *, first: bool = False) -> bool:
        """Re-read the PEM files when they changed (always when ``first``); whether the
        credentials changed. A failure is logged once and the previous ones kept."""
        files = self.credential_files
        if files is None:
            return False
        now = files.stamp()
        if now == self._stamp:
            return False
        self._stamp = now
        try:
            creds = files.read()
        except (OSError, ComponentError) as exc:
            log.error("cloud sync: the certificate files changed but cannot be read, keeping"  # noqa: TRY400 - a traceback adds nothing
                      " the previous ones: %s", exc)
            return False
        changed = creds != self.credentials
        self.credentials = creds
        if changed and not first:
            log.info("cloud sync: certificate files changed: reloaded from %s",
                     ", ".join(str(p) for p in files.paths))
        return changed

    async def _tls_failure(self, details: str) -> str | None:
        """Why the TLS handshake failed, in words, when that is what happened, else None."""
        if is_tls_error(details):
            return f"TLS with {self.endpoint} failed: {explain(details) or 'refused'} ({details})"
        if self._probed is None or self._probed[0] != details:  # once per distinct failure
            host, _, port = self.endpoint.rpartition(":")
            found: str | None = None
            c = self.credentials
            if host and port.isdigit() and c.ca is not None:
                found = await asyncio.to_thread(
                    probe, host.strip("[]"), int(port), ca=c.ca, cert=c.cert, key=c.key,
                    server_name=c.server_name)
            self._probed = (details, found)
        found = self._probed[1]
        if found is None or not is_tls_error(found):
            return None
        return f"TLS with {self.endpoint} failed: {explain(found) or 'refused'} ({found})"

    async def _run(self) -> None:
        self._reload_credentials(first=True)
        self._channel = self._make_channel()
        stub = sync_pb2_grpc.CloudSyncStub(self._channel)  # type: ignore[no-untyped-call]
        deleter = asyncio.create_task(self._delete_acked(), name="cloudsync:deletes")
        try:
            while True:
                started = time.monotonic()
                reason = "closed"
                if self._reload_credentials():
                    await self._channel.close()
                    self._channel = self._make_channel()
                    stub = sync_pb2_grpc.CloudSyncStub(self._channel)  # type: ignore[no-untyped-call]
                try:
                    await self._session(stub)
                    self.status.last_error = "the cloud closed the stream"
                except grpc.aio.AioRpcError as exc:
                    reason = exc.code().name.lower()
                    self.status.last_error = f"{exc.code().name}: {exc.details()}"
                    if self.credentials.tls and exc.code() == grpc.StatusCode.UNAVAILABLE:
                        tls_error = await self._tls_failure(exc.details() or "")
                        if tls_error is not None:
                            reason, self.status.last_error = "tls", tls_error
                except _StreamEndedError as exc:
                    reason = "ended"
                    self.status.last_error = str(exc)
                except (OSError, ValueError) as exc:
                    reason = "error"
                    self.status.last_error = str(exc)
                except (StorageFullError, DBError) as exc:
                    # The device's own storage (desired state, the change-log, the outbox):
                    # the stream ends and the next attempt may find room again.
                    reason = "storage"
                    self.status.last_error = str(exc)
                if reason == "tls":
                    # A person must act: an error, once per distinct failure (not per retry).
                    level = logging.ERROR if self.status.last_error != self._logged_tls \
                        else logging.DEBUG
                    self._logged_tls = self.status.last_error
                    log.log(level, "cloud sync: %s; retrying with backoff", self.status.last_error)
                elif self.status.connected:
                    log.warning("cloud sync stream to %s ended: %s", self.endpoint,
                                self.status.last_error)
                else:
                    log.info("cloud sync: cannot reach %s: %s", self.endpoint,
                             self.status.last_error)
                self.status.connected = False
                self._save_status()
                RECONNECTS.labels(reason).inc()
                if time.monotonic() - started > 30:
                    self.backoff.reset()  # it was a stable connection
                await asyncio.sleep(self.backoff.next_delay())
        finally:
            deleter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deleter

    async def _session(self, stub: Any) -> None:
        metadata = (("authorization", f"Bearer {self.credentials.token}"),) \
            if self.credentials.token else ()
        call = stub.Sync(metadata=metadata, compression=grpc.Compression.Gzip)
        try:
            await self._open(call)
            tasks = [
                asyncio.create_task(self._read(call), name="cloudsync:read"),
                asyncio.create_task(self._send(call), name="cloudsync:send"),
                asyncio.create_task(self._keepalive(call), name="cloudsync:keepalive"),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for t in done:
                t.result()  # raises the reason the stream ended
        finally:
            call.cancel()

    async def _open(self, call: Any) -> None:
        backlog = await self.refresh_backlog()
        hello = sync_pb2.Hello(
            device_id=self.device_id, software_version=__version__,
            desired_seq=self.desired.seq, backlog=backlog,
            cursors=[sync_pb2.Cursor(stream=s.stream, epoch=s.epoch) for s in self.sources],
        )
        await call.write(sync_pb2.DeviceMessage(hello=hello))
        first = await asyncio.wait_for(call.read(), WELCOME_TIMEOUT_S)
        if first is grpc.aio.EOF:
            await _raise_status(call)
            raise _StreamEndedError("the cloud closed the stream before its welcome")
        if first.WhichOneof("body") != "welcome":
            raise _StreamEndedError(f"expected a welcome, got {first.WhichOneof('body')}")
        welcome = first.welcome
        cloud = {(c.stream, c.epoch): c.seq for c in welcome.cursors}
        for s in self.sources:
            seq = cloud.get((s.stream, s.epoch), 0)
            if seq:
                await s.ack(seq)  # applied there already: the ack of it was lost
            self._cursor[s.stream] = seq
        self._limits = welcome.limits
        self._inflight = 0
        self._paused_until = 0.0
        self._last_heard = time.monotonic()
        if welcome.server_hlc:
            self.hlc.update(welcome.server_hlc)
        self.status.connected = True
        self.status.last_error = ""
        self._logged_tls, self._probed = "", None
        self.status.desired_seq = self.desired.seq
        await self.refresh_backlog()
        self._save_status()
        log.info("cloud sync connected to %s as %s (%d record(s) waiting)", self.endpoint,
                 self.device_id, self.status.backlog)

    # ------------------------------------------------------------------ sending
    def _window(self) -> int:
        return max(1, self._limits.window or DEFAULT_WINDOW)

    def _rate(self) -> float | None:
        rates = [r for r in (self.rate_limit, self._limits.rate) if r]
        return min(rates) if rates else None

    async def _send(self, call: Any) -> None:
        tokens, last = 0.0, time.monotonic()
        while True:
            self._wake.clear()
            for s in self.sources:
                s.appended.clear()
            sent_any = False
            for source in self.sources:
                limit = self._limits.max_batch_records or self.batch_size
                rows = await source.claim(self._cursor[source.stream], min(limit,
                                                                           self.batch_size))
                if not rows:
                    continue
                rows = self._fit(rows)
                if (rate := self._rate()) is not None:
                    tokens, last = await _throttle(tokens, last, rate, len(rows),
                                                   self.batch_size)
                if (pause := self._paused_until - time.monotonic()) > 0:
                    await asyncio.sleep(pause)
                async with self._slot:
                    await self._slot.wait_for(lambda: self._inflight < self._window())
                    self._inflight += 1
                await self._write(call, sync_pb2.DeviceMessage(batch=_batch(source, rows)))
                self._cursor[source.stream] = rows[-1].seq
                SENT.labels(source.stream).inc(len(rows))
                sent_any = True
            if not sent_any:
                await self._idle()

    def _fit(self, rows: list[Pending]) -> list[Pending]:
        """Cut a batch at the cloud's byte limit (at least one record)."""
        cap = self._limits.max_batch_bytes
        if not cap:
            return rows
        total, n = 0, 0
        for r in rows:
            total += r.size
            if n and total > cap:
                break
            n += 1
        return rows[:n]

    async def _idle(self) -> None:
        waits = [asyncio.ensure_future(s.appended.wait()) for s in self.sources]
        waits.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waits, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _write(self, call: Any, msg: Any) -> None:
        async with self._write_lock:
            await call.write(msg)

    async def _keepalive(self, call: Any) -> None:
        nonce = 0
        while True:
            await asyncio.sleep(self.keepalive_s)
            if time.monotonic() - self._last_heard > 3 * self.keepalive_s:
                raise _StreamEndedError(f"no word from the cloud for {3 * self.keepalive_s:g}s")
            nonce += 1
            await self._write(call, sync_pb2.DeviceMessage(ping=sync_pb2.Ping(nonce=nonce)))

    # ------------------------------------------------------------------ receiving
    async def _read(self, call: Any) -> None:
        by_stream = {(s.stream, s.epoch): s for s in self.sources}
        while True:
            msg = await call.read()
            if msg is grpc.aio.EOF:
                await _raise_status(call)
                raise _StreamEndedError("the cloud closed the stream")
            self._last_heard = time.monotonic()
            kind = msg.WhichOneof("body")
            if kind == "ack":
                c = msg.ack.cursor
                source = by_stream.get((c.stream, c.epoch))
                if source is not None:
                    self._acks.put_nowait((source, c.seq, time.monotonic_ns()))
                async with self._slot:
                    self._inflight = max(0, self._inflight - 1)
                    self._slot.notify_all()
            elif kind == "desired":
                await self._apply_desired(call, msg.desired)
            elif kind == "flow":
                self._limits = msg.flow.limits
                if msg.flow.pause_ms:
                    self._paused_until = time.monotonic() + msg.flow.pause_ms / 1000
                log.info("cloud sync: the cloud set window %d, rate %g/s, pause %d ms",
                         self._window(), self._rate() or 0, msg.flow.pause_ms)
                async with self._slot:
                    self._slot.notify_all()
                self._wake.set()
            elif kind == "ping" and not msg.ping.reply:
                await self._write(call, sync_pb2.DeviceMessage(
                    ping=sync_pb2.Ping(nonce=msg.ping.nonce, reply=True)))

    async def _apply_desired(self, call: Any, desired: Any) -> None:
        entries = [DesiredEntry(e.key, bytes(e.value), e.hlc, e.seq, e.deleted)
                   for e in desired.entries]
        for e in entries:
            self.hlc.update(e.hlc)
        seq = await self.desired.apply(entries)  # durable before the ack
        self.status.desired_seq = seq
        self._save_status()
        await self._write(call, sync_pb2.DeviceMessage(desired_ack=sync_pb2.DesiredAck(seq=seq)))
        log.info("cloud sync: applied %d desired entr%s (up to %d)", len(entries),
                 "y" if len(entries) == 1 else "ies", seq)

    async def _delete_acked(self) -> None:
        """Delete acknowledged rows, in order, off the reading path."""
        last_save = 0.0
        while True:
            source, seq, _ = await self._acks.get()
            try:
                deleted = await source.ack(seq)
            except Exception:
                log.exception("cloud sync: deleting acknowledged rows of %s failed (they are"
                              " resent and skipped by the cloud)", source.stream)
                continue
            ACKED.labels(source.stream).inc(deleted)
            self.status.acked_records += deleted
            self.status.last_ack = time.time()
            if self._acks.empty():
                await self.refresh_backlog()
                if time.monotonic() - last_save > 1.0:
                    last_save = time.monotonic()
                    self._save_status()


def _batch(source: Source, rows: list[Pending]) -> Any:
    # Record.Kind values are ints on the wire; the stub's enum type is only a narrowing.
    return sync_pb2.Batch(stream=source.stream, epoch=source.epoch, records=[
        sync_pb2.Record(kind=r.kind, target=r.target, key=r.key, seq=r.seq,  # type: ignore[arg-type]
                        hlc=r.hlc, payload=r.payload)
        for r in rows
    ])


async def _throttle(tokens: float, last: float, rate: float, n: int,
                    burst: int) -> tuple[float, float]:
    """Token bucket: ``rate`` records a second, bursts up to ``burst``; wait for ``n``."""
    now = time.monotonic()
    tokens = min(float(burst), tokens + (now - last) * rate)
    if tokens < n:
        await asyncio.sleep((n - tokens) / rate)
        now = time.monotonic()
        tokens = float(n)
    return tokens - n, now


async def _raise_status(call: Any) -> None:
    """Raise the call's final status as ``AioRpcError`` when it is not OK."""
    code = await call.code()
    if code != grpc.StatusCode.OK:
        raise grpc.aio.AioRpcError(code, await call.initial_metadata(),
                                   await call.trailing_metadata(), await call.details())
