"""The transport-neutral API core: every Dapr operation once, for the HTTP and gRPC adapters.

Adapters parse their wire format into the plain arguments and dataclasses here, call one
method, and render the result or the :class:`~edge_runtime.errors.APIError` it raises. All
validation, key prefixing, option parsing and error classification lives here, so both
transports answer the same request the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from edge_runtime import __version__
from edge_runtime import errors as E
from edge_runtime.errors import APIError, FieldViolation, StorageFullError
from edge_runtime.runtime.compstore import CompStore, StateComponent
from edge_runtime.secretstores import SecretNotFoundError, SecretStore
from edge_runtime.state import (
    Concurrency,
    DeleteRequest,
    ETagMismatchError,
    Feature,
    GetResponse,
    InvalidRequestError,
    SetRequest,
    StateError,
    TransactionalStore,
)
from edge_runtime.state.keys import IllegalKeyError

log = logging.getLogger("edge_runtime.api")

MAX_TRANSACTION_OPERATIONS = 1000
MAX_INT32 = 2**31 - 1
_CONSISTENCY = {"", "strong", "eventual"}


@dataclass(frozen=True, slots=True)
class StateItem:
    """One key to save as the app sent it (options still raw strings)."""

    key: str
    value: bytes
    is_binary: bool = False
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    concurrency: str = ""
    consistency: str = ""


@dataclass(frozen=True, slots=True)
class StateResult:
    """A value read: bytes, encoding, etag and response metadata (``ttlExpireTime``)."""

    value: bytes
    etag: str
    is_binary: bool
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class BulkItem:
    """One entry of a bulk get; ``result`` is ``None`` for a missing key."""

    key: str
    result: StateResult | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class TransactionOp:
    """``upsert`` (with ``item``) or ``delete`` (``item.value`` unused)."""

    operation: str
    item: StateItem


# The most characters (keys plus values) the app may keep in ``extended`` metadata.
MAX_EXTENDED_BYTES = 1024 * 1024


@dataclass(slots=True)
class RuntimeView:
    """What the core reads about the process (filled and updated by the runtime)."""

    app_id: str
    namespace: str = ""
    app_port: int | None = None
    app_protocol: str = "http"
    app_channel_address: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=dict)
    components_ready: bool = False
    ports_open: bool = False
    app_ready: bool = False
    extended: dict[str, str] = field(default_factory=dict)
    data_loss: list[str] = field(default_factory=list)
    subscriptions: Callable[[], list[dict[str, Any]]] | None = None
    # Live entries for ``extended`` (e.g. cloud sync's connection and backlog).
    status_providers: list[Callable[[], dict[str, str]]] = field(default_factory=list)


class Universal:
    """The API operations over the loaded components. Coroutine-safe."""

    def __init__(
        self,
        view: RuntimeView,
        components: CompStore,
        request_shutdown: Callable[[bool], None],
    ) -> None:
        self.view = view
        self.components = components
        self._request_shutdown = request_shutdown
        self._extended_bytes = sum(len(k) + len(v) for k, v in view.extended.items())

    # ---------------------------------------------------------------- state
    def _state(self, name: str) -> StateComponent:
        if not self.components.state:
            raise APIError(E.STATE_STORE_NOT_CONFIGURED, "state store is not configured")
        comp = self.components.state.get(name)
        if comp is None:
            raise APIError(
                E.STATE_STORE_NOT_FOUND,
                f"state store {name} is not found",
                metadata={"appID": self.view.app_id},
                resource=("state", name),
            )
        return comp

    @staticmethod
    def _key(comp: StateComponent, key: str, kind: E.ErrorKind = E.STATE_ILLEGAL_KEY) -> str:
        try:
            return comp.prefix.apply(key)
        except IllegalKeyError as exc:
            raise APIError(
                kind,
                str(exc),
                resource=("state", comp.loaded.name),
                violations=(FieldViolation(key, str(exc)),),
            ) from None

    @staticmethod
    def _result(resp: GetResponse) -> StateResult:
        md: dict[str, str] = {}
        if resp.expire_time is not None:
            md["ttlExpireTime"] = resp.expire_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return StateResult(resp.value, resp.etag, resp.is_binary, md)

    async def get_state(
        self,
        store: str,
        key: str,
        *,
        consistency: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> StateResult | None:
        """One value, or ``None`` when the key is missing or expired."""
        comp = self._state(store)
        stored = self._key(comp, key)
        if consistency not in _CONSISTENCY:
            raise APIError(
                E.STATE_GET,
                f"fail to get {key} from state store {store}: invalid consistency {consistency!r}",
            )
        with _translated(E.STATE_GET, f"fail to get {key} from state store {store}"):
            resp = await comp.store.get(stored)
        return None if resp is None else self._result(resp)

    async def bulk_get_state(
        self,
        store: str,
        keys: Sequence[str],
        metadata: Mapping[str, str] | None = None,
    ) -> list[BulkItem]:
        """Values for ``keys`` in request order; missing keys come back without a result."""
        comp = self._state(store)
        stored = [self._key(comp, k) for k in keys]
        with _translated(E.STATE_BULK_GET, "failed getting state in bulk"):
            found = await comp.store.bulk_get(list(dict.fromkeys(stored)))
        out = []
        for key, skey in zip(keys, stored, strict=True):
            resp = found.get(skey)
            out.append(BulkItem(key, None if resp is None else self._result(resp)))
        return out

    def _set_request(self, comp: StateComponent, item: StateItem, kind: E.ErrorKind) -> SetRequest:
        if not item.key:
            raise APIError(
                kind,
                "state key cannot be empty"
                if kind is not E.MALFORMED_REQUEST
                else "key is a required field",
            )
        stored = self._key(comp, item.key)
        try:
            return SetRequest(
                key=stored,
                value=item.value,
                is_binary=item.is_binary,
                etag=item.etag or None,
                ttl_seconds=parse_ttl(item.metadata),
                concurrency=parse_options(item.concurrency, item.consistency),
            )
        except InvalidRequestError as exc:
            raise APIError(
                E.STATE_SAVE, f"failed saving state in state store {comp.loaded.name}: {exc}"
            ) from None

    def _delete_request(self, comp: StateComponent, item: StateItem) -> DeleteRequest:
        stored = self._key(comp, item.key)
        try:
            conc = parse_options(item.concurrency, item.consistency)
        except InvalidRequestError as exc:
            raise APIError(
                E.STATE_DELETE, f"failed deleting state with key {item.key}: {exc}"
            ) from None
        return DeleteRequest(key=stored, etag=item.etag or None, concurrency=conc)

    async def save_state(
        self, store: str, items: Sequence[StateItem], *, http: bool = True
    ) -> None:
        """Save items; more than one is not atomic (each succeeds or fails on its own)."""
        comp = self._state(store)
        requests = [
            self._set_request(comp, i, E.MALFORMED_REQUEST if http else E.STATE_SAVE) for i in items
        ]
        if not requests:
            return
        prefix = f"failed saving state in state store {store}"
        with _translated(E.STATE_SAVE, prefix, E.STATE_SAVE_ETAG_MISMATCH):
            if len(requests) == 1:
                await comp.store.set(requests[0])
                return
            results = await comp.store.bulk_set(requests)
        _raise_failures(results, E.STATE_SAVE, prefix, E.STATE_SAVE_ETAG_MISMATCH)

    async def delete_state(self, store: str, item: StateItem) -> None:
        """Delete one key (conditionally on ``item.etag``)."""
        comp = self._state(store)
        request = self._delete_request(comp, item)
        prefix = f"failed deleting state with key {item.key}"
        with _translated(E.STATE_DELETE, prefix, E.STATE_DELETE_ETAG_MISMATCH):
            await comp.store.delete(request)

    async def delete_bulk_state(self, store: str, items: Sequence[StateItem]) -> None:
        """Delete several keys, each on its own and concurrently (not atomic, like daprd's
        gRPC ``DeleteBulkState``); any failure is ``ERR_STATE_BULK_DELETE`` (409/ABORTED when
        an etag did not match), after every delete was tried."""
        comp = self._state(store)
        requests = [self._delete_request(comp, i) for i in items]

        async def one(request: DeleteRequest) -> StateError | None:
            try:
                await comp.store.delete(request)
            except StateError as exc:
                return exc
            return None

        prefix = f"failed deleting state in state store {store}"
        with _translated(E.STATE_BULK_DELETE, prefix):  # a full disk is ERR_STORAGE_FULL
            results = await asyncio.gather(*(one(r) for r in requests))
        _raise_failures(results, E.STATE_BULK_DELETE, prefix, E.STATE_BULK_DELETE_ETAG_MISMATCH)

    async def transaction(self, store: str, operations: Sequence[TransactionOp]) -> None:
        """Apply upserts and deletes atomically; any failure is ``ERR_STATE_TRANSACTION``."""
        comp = self._state(store)
        if Feature.TRANSACTIONAL not in comp.store.features or not isinstance(
            comp.store, TransactionalStore
        ):
            raise APIError(
                E.STATE_TRANSACTIONS_NOT_SUPPORTED,
                f"state store {store} doesn't support transactions",
                resource=("state", store),
            )
        if len(operations) > MAX_TRANSACTION_OPERATIONS:
            raise APIError(
                E.STATE_TOO_MANY_TRANSACTIONS,
                f"the transaction contains {len(operations)} operations, which is more "
                f"than the {MAX_TRANSACTION_OPERATIONS} allowed",
                resource=("state", store),
            )
        ops: list[SetRequest | DeleteRequest] = []
        for op in operations:
            if op.operation == "upsert":
                ops.append(self._set_request(comp, op.item, E.MALFORMED_REQUEST))
            elif op.operation == "delete":
                ops.append(self._delete_request(comp, op.item))
            else:
                raise APIError(
                    E.NOT_SUPPORTED_STATE_OPERATION, f"operation type {op.operation} not supported"
                )
        if not ops:
            return
        # An etag mismatch inside a transaction is a 500 like any failure (contract §2.3).
        with _translated(E.STATE_TRANSACTION, "error while executing state transaction"):
            await comp.store.multi(ops)

    def query_state(self, store: str) -> None:
        """The query API: no store here implements it, so this always raises."""
        comp = self._state(store)
        if Feature.QUERY_API not in comp.store.features:
            raise APIError(
                E.STATE_QUERY_NOT_SUPPORTED,
                f"state store {store} doesn't support query",
                resource=("state", store),
            )
        raise APIError(E.STATE_QUERY_NOT_SUPPORTED, "querying state is not implemented")

    # -------------------------------------------------------------- secrets
    def _secret_store(self, name: str) -> SecretStore:
        if not self.components.secrets:
            raise APIError(E.SECRET_STORES_NOT_CONFIGURED, "secret store is not configured")
        store = self.components.secrets.get(name)
        if store is None:
            raise APIError(E.SECRET_STORE_NOT_FOUND, f"failed finding secret store with key {name}")
        return store

    async def get_secret(self, store: str, key: str, metadata: Mapping[str, str]) -> dict[str, str]:
        """One secret's values (``{}`` when the store returns nothing)."""
        s = self._secret_store(store)
        try:
            return await s.get_secret(key, dict(metadata))
        except SecretNotFoundError as exc:
            raise APIError(
                E.SECRET_GET,
                f"failed getting secret with key {key} from secret store {store}: {exc}",
            ) from None

    async def bulk_secret(
        self, store: str, metadata: Mapping[str, str]
    ) -> dict[str, dict[str, str]]:
        """Every secret of a store."""
        return await self._secret_store(store).bulk_get(dict(metadata))

    # ---------------------------------------------- metadata, health, shutdown
    def metadata(self) -> dict[str, Any]:
        """The ``GET /v1.0/metadata`` document (empty fields left out)."""
        v = self.view
        extended = {"daprRuntimeVersion": __version__, "edgeRuntimeVersion": __version__}
        extended.update({f"port.{k}": str(p) for k, p in v.ports.items()})
        if v.data_loss:
            extended["dataLoss"] = "; ".join(v.data_loss)
        for provider in v.status_providers:
            extended.update(provider())
        extended.update(v.extended)
        doc: dict[str, Any] = {
            "id": v.app_id,
            "runtimeVersion": __version__,
            "enabledFeatures": [],
            "components": [
                {
                    "name": c.name,
                    "type": c.manifest.type,
                    "version": c.manifest.version,
                    **({"capabilities": list(c.capabilities)} if c.capabilities else {}),
                }
                for c in self.components.loaded
            ],
            "extended": extended,
            "actorRuntime": {"runtimeStatus": "DISABLED", "hostReady": False, "placement": ""},
        }
        for name, comp in self.components.pubsubs.items():
            extended[f"pubsub.{name}.connected"] = str(comp.pubsub.connected).lower()
            extended[f"pubsub.{name}.outbox"] = str(comp.outbox.count)
            if last_error := getattr(comp.pubsub, "last_error", ""):  # MQTT: why disconnected
                extended[f"pubsub.{name}.lastError"] = str(last_error)
        for name, binding in self.components.bindings.items():
            # A binding may report its connection state (serial port, MQTT) as ``status``.
            status = getattr(binding.instance, "status", None)
            if isinstance(status, Mapping):
                extended.update({f"binding.{name}.{k}": str(v) for k, v in status.items()})
        if v.subscriptions is not None:
            doc["subscriptions"] = v.subscriptions()
        conn: dict[str, Any] = {"protocol": v.app_protocol, "channelAddress": v.app_channel_address}
        if v.app_port is not None:
            conn["port"] = v.app_port
        doc["appConnectionProperties"] = conn
        return doc

    def set_metadata(self, key: str, value: str) -> None:
        """Store a user key in ``extended``; raises ``ERR_BODY_TOO_LARGE`` when the user keys
        and values would pass :data:`MAX_EXTENDED_BYTES` in all (daprd sets no limit; on a
        device, a caller looping over new keys must not be able to fill the memory)."""
        extended = self.view.extended
        old = extended.get(key)
        size = self._extended_bytes - (len(key) + len(old) if old is not None else 0)
        size += len(key) + len(value)
        if size > MAX_EXTENDED_BYTES:
            raise APIError(
                E.BODY_TOO_LARGE,
                f"the metadata set through the API is limited to {MAX_EXTENDED_BYTES} "
                "characters (keys and values) in all",
            )
        extended[key] = value
        self._extended_bytes = size

    def outbound_health(self) -> None:
        """Raise unless components are loaded and the API ports are open."""
        if not (self.view.components_ready and self.view.ports_open):
            raise APIError(E.OUTBOUND_HEALTH_NOT_READY, "dapr outbound is not ready")

    def health(self, app_id: str | None = None) -> None:
        """Raise unless outbound health holds and the app channel is ready."""
        if app_id is not None and app_id != self.view.app_id:
            raise APIError(E.HEALTH_APPID_NOT_MATCH, "dapr app-id does not match")
        targets = [
            n
            for n, ok in (
                ("components", self.view.components_ready),
                ("ports", self.view.ports_open),
                ("app", self.view.app_ready),
            )
            if not ok
        ]
        if targets:
            raise APIError(E.HEALTH_NOT_READY, f"dapr is not ready: {targets}")

    def shutdown(self, *, force: bool = False) -> None:
        """Ask the runtime to stop (gracefully unless ``force``) after the reply is sent."""
        self._request_shutdown(force)


def parse_ttl(metadata: Mapping[str, str]) -> int | None:
    """``ttlInSeconds`` → seconds, ``None`` for never; raises :class:`InvalidRequestError`."""
    raw = next((v for k, v in metadata.items() if k.lower() == "ttlinseconds"), None)
    if raw is None or raw == "":
        return None
    try:
        ttl = int(raw)
    except ValueError:
        raise InvalidRequestError(f"incorrect value for metadata 'ttlInSeconds': {raw!r}") from None
    if ttl < -1 or ttl > MAX_INT32:
        raise InvalidRequestError(
            f"incorrect value for metadata 'ttlInSeconds': {ttl} (allowed: -1 to {MAX_INT32})"
        )
    return ttl if ttl > 0 else None


def parse_options(concurrency: str, consistency: str) -> Concurrency:
    """Validate the option strings; raises :class:`InvalidRequestError` on unknown values."""
    if consistency not in _CONSISTENCY:
        raise InvalidRequestError(f"invalid consistency {consistency!r}: use strong or eventual")
    if concurrency in ("", Concurrency.LAST_WRITE):
        return Concurrency.LAST_WRITE
    if concurrency == Concurrency.FIRST_WRITE:
        return Concurrency.FIRST_WRITE
    raise InvalidRequestError(f"invalid concurrency {concurrency!r}: use first-write or last-write")


@contextlib.contextmanager
def _translated(
    kind: E.ErrorKind, prefix: str, mismatch: E.ErrorKind | None = None
) -> Iterator[None]:
    """Turn a store's exceptions into the API error of the operation that called it.

    A full disk is ``ERR_STORAGE_FULL``; an etag mismatch is ``mismatch`` (409) when given,
    else ``kind``; any other store failure is ``kind``.
    """
    try:
        yield
    except StorageFullError as exc:
        raise APIError(E.STORAGE_FULL, str(exc)) from None
    except ETagMismatchError as exc:
        raise APIError(mismatch or kind, f"{prefix}: {exc}") from None
    except StateError as exc:
        raise APIError(kind, f"{prefix}: {exc}") from None


def _raise_failures(
    results: Sequence[StateError | None], kind: E.ErrorKind, prefix: str, mismatch: E.ErrorKind
) -> None:
    """After a bulk operation whose items succeed or fail on their own: nothing when every
    result is ``None``, else one ``kind`` error (``mismatch`` when any failure was an etag
    mismatch) naming each distinct failure once, sorted."""
    failures = [r for r in results if r is not None]
    if not failures:
        return
    message = "; ".join(sorted({str(f) for f in failures}))
    etag = any(isinstance(f, ETagMismatchError) for f in failures)
    raise APIError(mismatch if etag else kind, f"{prefix}: {message}")


def now_utc() -> datetime:
    """The wall clock, aware (a seam for tests)."""
    return datetime.now(UTC)
