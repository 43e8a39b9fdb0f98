"""Output bindings (contract §2.5), shared by the HTTP and gRPC adapters.

:meth:`OutputBindings.invoke` finds the binding (one whose ``direction`` allows output),
checks the operation against the binding's list, calls it and turns every failure into
``ERR_INVOKE_OUTPUT_BINDING`` (HTTP 500, gRPC INTERNAL) with daprd's messages, except the
storage refusals of a binding that publishes through an outbox, which are answered as a
publish's are (DESIGN.md §5): a full outbox 429 ``ERR_PUBSUB_OUTBOX_FULL`` (counted in
``edge_runtime_outbox_rejected``), a full disk 507 ``ERR_STORAGE_FULL``. daprd's messages:
``error invoking output binding X: couldn't find output binding X``, ``... binding X does not
support operation Y. supported operations: a b``, ``... <the binding's message>``. Metadata a
binding returns with a failure travels on the error as ``metadata.<key>`` headers, as daprd
sends it.

:func:`go_json` re-encodes an HTTP request's ``data`` as daprd's Go code does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from edge_runtime import errors as E
from edge_runtime.bindings import BindingError, BindingResponse, OutputBinding
from edge_runtime.errors import APIError, StorageFullError
from edge_runtime.observability.metrics import BINDING_INVOCATIONS, OUTBOX_REJECTED
from edge_runtime.outbox.store import OutboxFullError
from edge_runtime.runtime.compstore import CompStore

__all__ = ["OutputBindings", "go_json", "metadata_headers"]

log = logging.getLogger("edge_runtime.api")

# Go's encoder escapes these inside strings (json.Marshal's HTML-safe default).
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
               "\u2029": "\\u2029"}


def go_json(value: Any) -> bytes:
    """``value`` (decoded JSON) encoded as Go's ``json.Marshal`` of an ``interface{}`` does:
    compact, object keys sorted, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped, integral
    floats without a fraction (``1.0`` → ``1``). Integers stay exact (Go would round those
    beyond 2^53 through a float64)."""
    text = json.dumps(_go_floats(value), separators=(",", ":"), sort_keys=True,
                      ensure_ascii=False, allow_nan=False)
    for char, escape in _GO_ESCAPES.items():
        if char in text:  # only ever inside strings: structural JSON has none of them
            text = text.replace(char, escape)
    return text.encode()


def _go_floats(value: Any) -> Any:
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 1e21 else value
    if isinstance(value, dict):
        return {k: _go_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_go_floats(v) for v in value]
    return value


def metadata_headers(metadata: Mapping[str, str]) -> dict[str, str]:
    """Response metadata as daprd's HTTP headers: ``metadata.<key>``."""
    return {f"metadata.{k}": v for k, v in metadata.items()}


class OutputBindings:
    """``invoke`` over the loaded bindings. Coroutine-safe."""

    def __init__(self, components: CompStore) -> None:
        self.components = components

    def _binding(self, name: str) -> OutputBinding:
        comp = self.components.bindings.get(name)
        binding = comp.output if comp is not None else None
        if binding is None:
            raise _error(name, f"couldn't find output binding {name}")
        return binding

    async def invoke(
        self, name: str, operation: str, data: bytes, metadata: Mapping[str, str]
    ) -> BindingResponse | None:
        """Run ``operation`` on binding ``name``; ``None`` when it returns nothing (HTTP 204).

        Raises :class:`~edge_runtime.errors.APIError` (``ERR_INVOKE_OUTPUT_BINDING``).
        """
        binding = self._binding(name)
        supported = list(binding.operations())
        if operation not in supported:
            BINDING_INVOCATIONS.labels(name, operation, "unsupported").inc()
            raise _error(name, f"binding {name} does not support operation {operation}."
                               f" supported operations: {' '.join(supported)}")
        try:
            response = await binding.invoke(operation, data, metadata)
        except OutboxFullError as exc:  # a binding that publishes through an outbox
            BINDING_INVOCATIONS.labels(name, operation, "failure").inc()
            OUTBOX_REJECTED.labels(f"binding:{name}").inc()
            raise APIError(E.PUBSUB_OUTBOX_FULL, f"binding {name}: {exc}") from None
        except StorageFullError as exc:
            BINDING_INVOCATIONS.labels(name, operation, "failure").inc()
            raise APIError(E.STORAGE_FULL, f"binding {name}: {exc}") from None
        except BindingError as exc:
            BINDING_INVOCATIONS.labels(name, operation, "failure").inc()
            log.debug("output binding %s %s failed: %s", name, operation, exc)
            raise _error(name, str(exc), exc.metadata) from None
        BINDING_INVOCATIONS.labels(name, operation, "success").inc()
        return response


def _error(name: str, reason: str, metadata: Mapping[str, str] | None = None) -> APIError:
    return APIError(
        E.INVOKE_OUTPUT_BINDING,
        f"error invoking output binding {name}: {reason}",
        headers=metadata_headers(metadata or {}),
    )
