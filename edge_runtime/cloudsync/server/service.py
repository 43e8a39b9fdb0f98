"""The gRPC sync endpoint: ``edge_runtime.cloudsync.v1.CloudSync/Sync``.

Per stream: read Hello; check who the device is (a bearer token, and with mutual TLS the
certificate's CN must equal the Hello's device id; anything else is refused with
UNAUTHENTICATED or PERMISSION_DENIED); answer Welcome with the store's cursors; then apply each
Batch (exactly once, :meth:`CloudStore.apply`) and answer an Ack after it is committed, push
desired state the device has not applied (at connect, and when it changes), record
DesiredAcks, answer pings. A second stream of the same device replaces the first. grpc
exceptions stay in this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from edge_runtime.cloudsync.hlc import HLC
from edge_runtime.cloudsync.protocol import sync_pb2, sync_pb2_grpc
from edge_runtime.cloudsync.server.store import CloudStore, RecordIn

__all__ = ["ServiceLimits", "SyncService"]

log = logging.getLogger("edge_runtime.cloud")

HELLO_TIMEOUT_S = 15.0
DESIRED_POLL_S = 5.0  # another server sharing the store may have changed desired state


@dataclass(frozen=True, slots=True)
class ServiceLimits:
    """What Welcome tells every device."""

    max_batch_records: int = 0
    window: int = 8
    rate: float = 0.0
    keepalive_s: float = 30.0


@dataclass(eq=False)
class _Conn:
    device_id: str
    context: Any
    lock: asyncio.Lock
    desired_changed: asyncio.Event
    task: asyncio.Task[Any] | None


class SyncService(sync_pb2_grpc.CloudSyncServicer):
    """The servicer. ``device_token`` (when set) must come as ``authorization: Bearer``;
    ``tls`` says the server requires client certificates (the CN is the device id)."""

    def __init__(self, store: CloudStore, hlc: HLC, *, device_token: str = "",
                 tls: bool = False, limits: ServiceLimits | None = None) -> None:
        self.store = store
        self.hlc = hlc
        self._token = device_token.encode()
        self.tls = tls
        self.limits = limits or ServiceLimits()
        self.connections: dict[str, _Conn] = {}

    def desired_changed(self, device_id: str) -> None:
        """Wake the device's stream to push its new desired state."""
        conn = self.connections.get(device_id)
        if conn is not None:
            conn.desired_changed.set()

    async def slow(self, device_id: str, *, rate: float, window: int, pause_ms: int) -> bool:
        """Tell a connected device to slow down (FlowControl); whether it is connected."""
        conn = self.connections.get(device_id)
        if conn is None:
            return False
        limits = self._limits(rate=rate, window=window)
        await self._write(conn, sync_pb2.CloudMessage(
            flow=sync_pb2.FlowControl(limits=limits, pause_ms=pause_ms)))
        return True

    def _limits(self, *, rate: float | None = None, window: int | None = None) -> Any:
        lim = self.limits
        return sync_pb2.Limits(
            max_batch_records=lim.max_batch_records,
            window=lim.window if window is None else window,
            rate=lim.rate if rate is None else rate,
            keepalive_ms=int(lim.keepalive_s * 1000),
        )

    async def _write(self, conn: _Conn, msg: Any) -> None:
        async with conn.lock:
            await conn.context.write(msg)

    def _authenticate(self, context: Any, device_id: str) -> tuple[grpc.StatusCode, str] | None:
        if self._token:
            given = ""
            for key, value in context.invocation_metadata() or ():
                if key == "authorization" and isinstance(value, str):
                    given = value.removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self._token):
                return grpc.StatusCode.UNAUTHENTICATED, "invalid device token"
        if self.tls:
            names = context.auth_context().get("x509_common_name") or []
            cn = names[0].decode() if names else ""
            if not cn:
                return grpc.StatusCode.UNAUTHENTICATED, "a client certificate is required"
            if cn != device_id:
                return (grpc.StatusCode.PERMISSION_DENIED,
                        f"the certificate is for device {cn!r}, the stream says {device_id!r}")
        if not device_id:
            return grpc.StatusCode.INVALID_ARGUMENT, "the hello has no device id"
        return None

    async def Sync(self, request_iterator: Any, context: Any) -> None:  # noqa: N802, ARG002
        """One device's stream (see the module docstring)."""
        try:
            first = await asyncio.wait_for(_read(context), HELLO_TIMEOUT_S)
        except TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "no hello")
        if first is grpc.aio.EOF or first.WhichOneof("body") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "the stream must open with a hello")
        hello = first.hello
        refused = self._authenticate(context, hello.device_id)
        if refused is not None:
            log.warning("refused a sync stream from %s (device %r): %s", context.peer(),
                        hello.device_id, refused[1])
            await context.abort(*refused)
        device_id = hello.device_id
        cursors = await self.store.hello(device_id, hello.software_version, hello.backlog,
                                         time.time())
        conn = _Conn(device_id, context, asyncio.Lock(), asyncio.Event(),
                     asyncio.current_task())
        old = self.connections.get(device_id)
        self.connections[device_id] = conn
        if old is not None and old.task is not None:
            log.info("device %s opened a new stream: closing the old one", device_id)
            old.task.cancel()
        welcome = sync_pb2.Welcome(
            cursors=[sync_pb2.Cursor(stream=c.stream, epoch=c.epoch, seq=c.seq) for c in cursors],
            limits=self._limits(), server_hlc=self.hlc.now())
        await self._write(conn, sync_pb2.CloudMessage(welcome=welcome))
        log.info("device %s connected (version %s, %d record(s) waiting)", device_id,
                 hello.software_version, hello.backlog)
        pusher = asyncio.create_task(self._push_desired(conn, hello.desired_seq),
                                     name=f"cloud:desired:{device_id}")
        try:
            await self._serve(conn)
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher
            if self.connections.get(device_id) is conn:
                del self.connections[device_id]
                with contextlib.suppress(Exception):
                    await self.store.disconnected(device_id, time.time())
            log.info("device %s disconnected", device_id)

    async def _serve(self, conn: _Conn) -> None:
        context = conn.context
        while True:
            msg = await _read(context)
            if msg is grpc.aio.EOF:
                return
            kind = msg.WhichOneof("body")
            if kind == "batch":
                b = msg.batch
                if any(r.seq >= _INT64 or r.hlc >= _INT64 for r in b.records):
                    log.warning("device %s sent a record with seq or hlc past 2^63: closing"
                                " the stream", conn.device_id)
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                        "a record's seq or hlc is past 2^63")
                records = [RecordIn(r.kind, r.target, r.key, r.seq, r.hlc, bytes(r.payload))
                           for r in b.records]
                for r in records:
                    if r.hlc:
                        self.hlc.update(r.hlc)
                result = await self.store.apply(conn.device_id, b.stream, b.epoch, records,
                                                time.time())
                if result.replayed:
                    log.info("device %s: %d replayed record(s) of %s skipped", conn.device_id,
                             result.replayed, b.stream)
                await self._write(conn, sync_pb2.CloudMessage(ack=sync_pb2.Ack(
                    cursor=sync_pb2.Cursor(stream=b.stream, epoch=b.epoch, seq=result.cursor))))
            elif kind == "desired_ack":
                await self.store.ack_desired(conn.device_id, msg.desired_ack.seq)
            elif kind == "ping" and not msg.ping.reply:
                await self._write(conn, sync_pb2.CloudMessage(
                    ping=sync_pb2.Ping(nonce=msg.ping.nonce, reply=True)))

    async def _push_desired(self, conn: _Conn, applied: int) -> None:
        sent = applied
        while True:
            conn.desired_changed.clear()
            rows = await self.store.desired_after(conn.device_id, sent)
            if rows:
                await self._write(conn, sync_pb2.CloudMessage(desired=sync_pb2.Desired(entries=[
                    sync_pb2.DesiredEntry(key=r.key, value=r.value, hlc=r.hlc, seq=r.seq,
                                          deleted=r.deleted)
                    for r in rows])))
                sent = rows[-1].seq
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.desired_changed.wait(), DESIRED_POLL_S)


_INT64 = 1 << 63  # seq and hlc are stored as signed 64-bit SQLite integers


async def _read(context: Any) -> Any:
    """The next DeviceMessage (or EOF); bytes that are not one end the stream with
    INVALID_ARGUMENT and a log line (grpc would answer UNKNOWN and log a traceback)."""
    try:
        return await context.read()
    except DecodeError as exc:
        log.warning("a sync stream from %s sent bytes that are not a DeviceMessage (%s): "
                    "closing it", context.peer(), exc)
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"not a DeviceMessage: {exc}")
        raise AssertionError("abort returned") from None  # pragma: no cover
