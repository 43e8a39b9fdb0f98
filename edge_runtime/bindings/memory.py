"""``bindings.in-memory`` (ours): a loopback binding, the reference implementation of the
bindings contract and the fake for every other test.

Output operations:

* ``create``: keeps ``data`` under metadata ``key`` (a new uuid4 hex when absent) and, while
  the input side is started, emits it as an input event of this same binding with the request
  metadata plus ``key``: what the app invokes comes back to the app, through the durable
  inbox. The call returns once the handler returned (the event is committed); if the handler
  raises, the call fails with :class:`~edge_runtime.bindings.contract.InvokeError` and nothing
  is kept. Returns no data and the metadata ``key`` and ``emitted`` (``"true"``, or
  ``"false"`` when the input side is not started, e.g. ``direction: output``).
* ``get``: the data kept under metadata ``key``; an ``InvokeError`` when there is none.
* ``list``: the keys kept, oldest first, as a JSON array.
* ``delete``: forget metadata ``key`` (a missing key is not an error).

Component metadata: ``maxItems`` (default 1000) bounds what is kept for ``get``/``list``: the
oldest items are forgotten beyond it (their events were emitted already). Nothing survives
:meth:`MemoryBinding.close`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edge_runtime.bindings.contract import (
    BindingError,
    BindingResponse,
    InputHandler,
    InvokeError,
    UnsupportedOperationError,
)
from edge_runtime.bindings.options import CommonMetadata
from edge_runtime.config.metadata import declare_metadata, decode, meta
from edge_runtime.registry import ComponentContext

__all__ = ["OPERATIONS", "MemoryBinding", "MemoryMetadata", "create"]

OPERATIONS = ("create", "get", "list", "delete")


@dataclass(frozen=True)
class MemoryMetadata(CommonMetadata):
    """``bindings.in-memory`` metadata (plus the common binding names)."""

    max_items: int = meta("maxItems", kind="int", default=1000, minimum=0,
                          help="items kept for get and list; the oldest are forgotten")


class MemoryBinding:
    """Input and output in one process-local object. Coroutine-safe."""

    def __init__(self, name: str = "in-memory", *, max_items: int = 1000) -> None:
        self.name = name
        self.max_items = max_items
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._handler: InputHandler | None = None
        self._calls = 0  # handler calls in progress
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------------

    async def init(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Stop the input side and forget every item; later calls raise. Idempotent."""
        await self.stop()
        self._closed = True
        self._items.clear()

    async def start(self, handler: InputHandler) -> None:
        """Emit ``create``\\ d items to ``handler`` from now on."""
        self._check_open()
        if self._handler is not None:
            raise BindingError(f"binding {self.name}: input already started")
        self._handler = handler

    async def stop(self) -> None:
        """Stop emitting; waits for handler calls in progress."""
        self._handler = None
        await self._idle.wait()

    @property
    def reading(self) -> bool:
        """Whether the input side is started."""
        return self._handler is not None

    # --- output ------------------------------------------------------------------------------

    def operations(self) -> Sequence[str]:
        """``create``, ``get``, ``list``, ``delete``."""
        return OPERATIONS

    async def invoke(
        self, operation: str, data: bytes, metadata: Mapping[str, str]
    ) -> BindingResponse | None:
        """See the module docs; raises :class:`UnsupportedOperationError` or
        :class:`InvokeError`."""
        self._check_open()
        key = _key(metadata)
        if operation == "create":
            return await self._create(key or uuid.uuid4().hex, data, metadata)
        if operation == "get":
            if key is None or key not in self._items:
                raise InvokeError(f"binding {self.name}: no item with key {key!r}")
            return BindingResponse(self._items[key], {"key": key})
        if operation == "list":
            return BindingResponse(json.dumps(list(self._items)).encode())
        if operation == "delete":
            if key is None:
                raise InvokeError(f"binding {self.name}: delete needs the metadata key")
            self._items.pop(key, None)
            return None
        raise UnsupportedOperationError(
            f"binding {self.name} does not support operation {operation!r};"
            f" supported: {', '.join(OPERATIONS)}"
        )

    async def _create(
        self, key: str, data: bytes, metadata: Mapping[str, str]
    ) -> BindingResponse:
        handler = self._handler
        if handler is not None:
            event_metadata = {**metadata, "key": key}
            self._calls += 1
            self._idle.clear()
            try:
                await handler(bytes(data), event_metadata)
            except Exception as exc:  # any failure means "not stored": the caller is told
                raise InvokeError(
                    f"binding {self.name}: the event was not stored: {exc}"
                ) from exc
            finally:
                self._calls -= 1
                if self._calls == 0:
                    self._idle.set()
        self._items.pop(key, None)
        self._items[key] = bytes(data)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)
        return BindingResponse(b"", {"key": key, "emitted": str(handler is not None).lower()})

    def _check_open(self) -> None:
        if self._closed:
            raise BindingError(f"binding {self.name} is closed")


def _key(metadata: Mapping[str, str]) -> str | None:
    return next((v for k, v in metadata.items() if k.lower() == "key" and v), None)


@declare_metadata(MemoryMetadata)
def create(ctx: ComponentContext) -> MemoryBinding:
    """The ``bindings.in-memory`` factory; raises ``MetadataError`` (``file:line``)."""
    settings = decode(MemoryMetadata, ctx.metadata, ctx.manifest)
    return MemoryBinding(ctx.manifest.name, max_items=settings.max_items)
