"""The input-binding path: binding → inbox (durable) → deliverer → the app, or a no-code route.

Each input binding's events are committed to the inbox under ``binding:<name>`` before its
handler returns (for MQTT ingest: before the PUBACK), and delivered from there with retries,
the binding's inbound ``Resiliency`` retry policy and the local dead-letter table, like
pub/sub events (DESIGN.md §5).

Which bindings are read, and from when:

* a binding with ``targetPubsub``/``targetStateStore`` (no-code routing): read and delivered
  to its target from boot, app or no app;
* otherwise, with no app port: not read (logged), since its events would have nowhere to go;
* a binding whose ``direction`` names ``input``: read from boot; delivered once the app is
  up, without the ``OPTIONS`` probe (contract §3.5);
* any other: read from boot unless the app declined it at the last start, and probed with
  ``OPTIONS /{route}`` once the app is up (2xx or 405: accepted). When the app declines it,
  reading stops, the events already committed are parked as dead letters (listed and
  replayable with ``edge-runtime deadletters``), and it is not read from boot next time.

The probe results are kept in ``<data-dir>/input-bindings.json`` (DESIGN.md §5: the
input-binding list is persisted), so the next start knows, before the app is up, which
bindings to read. A probe that fails (the app does not answer) keeps the last decision.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_runtime.api.publishing import Publisher
from edge_runtime.api.universal import RuntimeView, Universal
from edge_runtime.appchannel import AppUnavailableError, BindingTarget
from edge_runtime.bindings import BindingError, InputBinding, InputHandler, PubsubRoute
from edge_runtime.config.settings import Settings
from edge_runtime.inbox.deliver import Deliverer, RetryLookup
from edge_runtime.inbox.store import Inbox
from edge_runtime.observability.metrics import BINDING_EVENTS_DECLINED, BINDING_EVENTS_NOT_STORED
from edge_runtime.pubsub import Received
from edge_runtime.runtime.binding_delivery import (
    KEY_PREFIX,
    BindingDelivery,
    InputTarget,
    input_key,
)
from edge_runtime.runtime.build import StartError
from edge_runtime.runtime.compstore import CompStore
from edge_runtime.support.atomicfile import write_atomic

__all__ = ["FILE_NAME", "BindingInputs", "load_decisions"]

FILE_NAME = "input-bindings.json"
FORMAT = 1
_PARK_CHUNK = 500

log = logging.getLogger("edge_runtime.bindings")


def load_decisions(path: Path) -> dict[str, tuple[str, bool]]:
    """``{name: (route, accepted)}`` saved at ``path``; ``{}`` when missing or unreadable
    (logged). Never raises."""
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as exc:
        log.error("the saved input-binding list %s cannot be read (%s); probing every"  # noqa: TRY400 - the message is the whole story
                  " binding", path, exc)
        return {}
    items = doc.get("bindings") if isinstance(doc, dict) and doc.get("format") == FORMAT else None
    if not isinstance(items, dict):
        log.error("%s is not a format-%d input-binding list; probing every binding", path, FORMAT)
        return {}
    out: dict[str, tuple[str, bool]] = {}
    for name, item in items.items():
        if isinstance(item, dict) and isinstance(item.get("route"), str) \
                and isinstance(item.get("accepted"), bool):
            out[str(name)] = (item["route"], item["accepted"])
    return out


class BindingInputs:
    """Owns reading the input bindings and delivering their events. Start with :meth:`start`
    (after the components and the inbox), tell it :meth:`app_is_ready`, :meth:`stop` at
    shutdown (before the inbox and the components close)."""

    def __init__(
        self,
        settings: Settings,
        components: CompStore,
        inbox: Inbox,
        retry: RetryLookup,
        *,
        channel: BindingTarget | None,
        publisher: Publisher,
        core: Universal,
        view: RuntimeView | None = None,
    ) -> None:
        self.settings = settings
        self.components = components
        self.inbox = inbox
        self.channel = channel
        self.view = view
        self.path = settings.data_dir / FILE_NAME
        self._always = asyncio.Event()
        self._always.set()  # app targets join the deliverer only once the app is up
        self.deliverer: Deliverer[InputTarget] = Deliverer(
            inbox, BindingDelivery(channel, publisher, core), ready=self._always,
            retry=retry,
        )
        self.targets: dict[str, InputTarget] = {}  # every input binding
        self.status: dict[str, str] = {}
        self._reading: dict[str, InputBinding] = {}
        self._saved: dict[str, tuple[str, bool]] = {}
        self._accepted: set[str] = set()

    # --- boot ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Check no-code targets, start reading from boot, deliver routed events.

        Raises :class:`~edge_runtime.runtime.build.StartError` for a routing target that is
        not a loaded pubsub or state store (unless the binding has ``ignoreErrors``).
        """
        self._saved = load_decisions(self.path)
        for name, comp in self.components.bindings.items():
            binding = comp.input
            if binding is None:
                continue
            opts = comp.options
            target = InputTarget(name, opts.route or name, opts.target)
            problem = self._target_problem(target)
            if problem:
                if comp.loaded.manifest.ignore_errors:
                    log.error("%s: %s (ignored: spec.ignoreErrors is true)", name, problem)
                    continue
                raise StartError(f"{comp.loaded.manifest.mark}: input binding {name}: {problem}")
            self.targets[name] = target
            saved = self._saved.get(name)
            if target.target is not None:
                self._set_status(name, f"routed to {target.describe()}")
            elif self.channel is None:
                self._set_status(name, "not read: no app port and no targetPubsub or"
                                 " targetStateStore")
                log.warning("input binding %s is not read: the sidecar has no app and the"
                            " binding no targetPubsub or targetStateStore", name)
                continue
            elif not opts.direction_given and saved == (target.route, False):
                self._set_status(name, "declined by the app at the last start; probed again"
                                 " when the app is up")
                continue
            else:
                self._set_status(name, "reading; delivery waits for the app")
            await self._start_reading(name, binding)
        await self._report_orphans()
        await self.deliverer.start(t for t in self.targets.values() if t.target is not None)

    def _target_problem(self, target: InputTarget) -> str:
        route = target.target
        if isinstance(route, PubsubRoute):
            if route.pubsub not in self.components.pubsubs:
                return f"targetPubsub {route.pubsub!r} is not a loaded pubsub"
        elif route is not None and route.store not in self.components.state:
            return f"targetStateStore {route.store!r} is not a loaded state store"
        return ""

    async def _report_orphans(self) -> None:
        backlog = await self.inbox.backlog()
        for key, (events, _) in backlog.items():
            name = key[len(KEY_PREFIX):]
            if key.startswith(KEY_PREFIX) and events and name not in self.targets:
                log.warning("the inbox holds %d event(s) of input binding %s, which is not"
                            " configured now; they stay until it is", events, name)

    async def _start_reading(self, name: str, binding: InputBinding) -> None:
        try:
            await binding.start(self._handler(name))
        except BindingError as exc:
            self._set_status(name, f"not read: {exc}")
            log.error("input binding %s could not start reading: %s", name, exc)  # noqa: TRY400 - the message is the whole story
            return
        self._reading[name] = binding

    def _handler(self, name: str) -> InputHandler:
        key = input_key(name)

        async def store(data: bytes, metadata: Mapping[str, str]) -> None:
            meta = {str(k): str(v) for k, v in metadata.items()}
            try:
                await self.inbox.add(key, Received(name, bytes(data), key, meta), None)
            except Exception:
                BINDING_EVENTS_NOT_STORED.labels(name).inc()
                raise

        return store

    # --- the app -------------------------------------------------------------------------

    async def app_is_ready(self) -> None:
        """Probe the app's bindings, follow its answers, save them, start delivering."""
        if self.channel is None:
            return
        decisions: dict[str, tuple[str, bool]] = {}
        for name, target in self.targets.items():
            if target.target is not None:
                continue
            comp = self.components.bindings[name]
            accepted = await self._probe(name, target)
            if accepted is None:  # no answer: keep doing what we do
                if name not in self._reading:
                    continue
                accepted = True
            else:
                decisions[name] = (target.route, accepted)
            binding = comp.input
            if accepted:
                if name not in self._reading and binding is not None:
                    await self._start_reading(name, binding)
                self._accepted.add(name)
                self._set_status(name, f"delivering to {target.describe()}")
            else:
                await self._decline(name, target)
        merged = {**self._saved, **decisions}
        self._save({n: d for n, d in merged.items() if n in self.targets})
        await self.deliverer.update(
            t for n, t in self.targets.items() if t.target is not None or n in self._accepted
        )

    async def _probe(self, name: str, target: InputTarget) -> bool | None:
        comp = self.components.bindings[name]
        if comp.options.direction_given:
            return True
        assert self.channel is not None
        try:
            return await self.channel.accepts_binding(name, target.route)
        except AppUnavailableError as exc:
            log.warning("input binding %s: the app did not answer the probe (%s); keeping the"
                        " last decision", name, exc)
            return None

    async def _decline(self, name: str, target: InputTarget) -> None:
        self._accepted.discard(name)
        binding = self._reading.pop(name, None)
        if binding is not None:
            await binding.stop()
        path = f"/{target.route.lstrip('/')}"
        self._set_status(name, f"declined by the app (OPTIONS {path}); not read")
        parked = await self._park_all(name, f"the app declined input binding {name}"
                                      f" (OPTIONS {path} answered neither 2xx nor 405)")
        log.warning("input binding %s: the app declined it (OPTIONS %s answered neither 2xx"
                    " nor 405): its events are not delivered%s", name, path,
                    f"; {parked} event(s) already stored were parked as dead letters"
                    if parked else "")

    async def _park_all(self, name: str, reason: str) -> int:
        key, parked = input_key(name), 0
        while rows := await self.inbox.head(key, _PARK_CHUNK):
            for row in rows:
                await self.inbox.park(row, reason=reason, error=row.last_error,
                                      attempts=row.attempts)
                parked += 1
        if parked:
            BINDING_EVENTS_DECLINED.labels(name).inc(parked)
        return parked

    def _save(self, decisions: Mapping[str, tuple[str, bool]]) -> None:
        self._saved = dict(decisions)
        doc: dict[str, Any] = {
            "format": FORMAT,
            "bindings": {n: {"route": r, "accepted": a} for n, (r, a) in decisions.items()},
        }
        try:
            write_atomic(self.path, json.dumps(doc, indent=1).encode())
        except OSError as exc:
            log.error("cannot save the input-binding list to %s: %s", self.path, exc)  # noqa: TRY400 - the message is the whole story

    def _set_status(self, name: str, status: str) -> None:
        self.status[name] = status
        if self.view is not None:
            self.view.extended[f"binding.{name}.input"] = status

    # --- shutdown ------------------------------------------------------------------------

    async def stop(self, deadline_s: float = 5.0) -> None:
        """Stop reading (no handler call is left in progress), then stop delivering."""
        for name, binding in list(self._reading.items()):
            try:
                await asyncio.wait_for(binding.stop(), deadline_s)
            except (BindingError, TimeoutError) as exc:
                log.warning("input binding %s did not stop cleanly: %s", name, exc)
        self._reading.clear()
        await self.deliverer.stop(deadline_s)
