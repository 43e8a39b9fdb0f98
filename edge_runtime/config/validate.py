"""``edge-runtime validate``: every problem in a resources folder, without starting anything.

Checks, beyond what :func:`~edge_runtime.config.loader.load_resources` reports:

* each component's type and version are registered (the message lists the known types);
* ``secretKeyRef`` entries have a secret store (``auth.secretStore``, else
  ``default_secret_store``, else the only secret store defined, as ``runtime/build.py`` picks)
  and it is a loaded ``secretstores.*`` component in scope;
* metadata values decode into the dataclass the component's factory declares
  (``config.metadata.declare_metadata``). Values from ``envRef``/``secretKeyRef`` are not looked
  up (validation must not need the secrets or the device's environment): they count as present
  and are not type-checked. Tokens are expanded first, with ``app_id`` (or ``app``);
* ``Subscription`` documents, read as the runtime reads them at start (fields, routes, CEL
  rules, scopes, one subscription per pubsub and topic);
* ``Resiliency`` documents: retry, timeout and circuit-breaker policies and their
  ``targets`` (components' inbound policies, ``targets.apps``), read as the runtime reads them.

With ``app_id``, components out of that app's scope get only the loader's checks (the runtime
would not load them); without it every component is checked. Nothing here raises for bad input.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edge_runtime.config.loader import load_resources
from edge_runtime.config.manifest import ComponentManifest, ConfigProblem
from edge_runtime.config.metadata import (
    MetadataError,
    ResolvedMetadata,
    Value,
    declared_metadata,
    decode,
)
from edge_runtime.config.resolve import expand_tokens, in_scope
from edge_runtime.inbox.resiliency import inbound_retry
from edge_runtime.invocation.resiliency import app_policies
from edge_runtime.outbox.limits import OutboxMetadata
from edge_runtime.registry import Registry, UnknownComponentTypeError
from edge_runtime.subscriptions.parse import from_resources

_PLACEHOLDER_APP_ID = "app"


def validate(
    paths: Sequence[Path],
    *,
    registry: Registry,
    app_id: str | None = None,
    default_secret_store: str | None = None,
) -> list[ConfigProblem]:
    """Every problem under ``paths``, sorted by file and line (path-level problems first)."""
    res = load_resources(paths)
    problems = list(res.problems)
    by_name = {c.name: c for c in res.components}
    if default_secret_store is None:
        stores = [c.name for c in res.components if c.block == "secretstores"
                  and (app_id is None or in_scope(c, app_id))]
        default_secret_store = stores[0] if len(stores) == 1 else None
    for comp in res.components:
        if app_id is not None and not in_scope(comp, app_id):
            continue
        problems.extend(_secret_store_problems(comp, by_name, app_id, default_secret_store))
        problems.extend(_type_problems(comp, registry, app_id))
    problems.extend(from_resources(res.others, app_id)[1])
    problems.extend(inbound_retry(res.others, app_id)[1])
    problems.extend(app_policies(res.others, app_id)[1])
    return sorted(problems, key=_order)


def _order(p: ConfigProblem) -> tuple[int, str, int]:
    return (0, "", 0) if p.mark is None else (1, p.mark.file, p.mark.line)


def _type_problems(
    comp: ComponentManifest, registry: Registry, app_id: str | None
) -> list[ConfigProblem]:
    try:
        registry.lookup(comp.type, "")
    except UnknownComponentTypeError as e:
        return [ConfigProblem(comp.mark_of("spec.type"), str(e), comp.describe(), "spec.type")]
    try:
        reg = registry.lookup(comp.type, comp.version)
    except UnknownComponentTypeError as e:
        field = "spec.version"
        return [ConfigProblem(comp.mark_of(field), str(e), comp.describe(), field)]
    # Pub/sub components also carry the runtime's outbox settings (maxMessages, durability...).
    classes = [c for c in (declared_metadata(reg.factory),
                           OutboxMetadata if comp.block == "pubsub" else None) if c is not None]
    if not classes:
        return []
    known: list[Value] = []
    unresolved: list[str] = []
    for item in comp.metadata:
        if item.value or (item.env_ref is None and item.secret_ref is None):
            text = expand_tokens(item.value or "", app_id=app_id or _PLACEHOLDER_APP_ID,
                                 pod_name="host")
            known.append(Value(item.name, text, item.mark))
        else:
            unresolved.append(item.name)
    problems: list[ConfigProblem] = []
    for c in classes:
        try:
            decode(c, ResolvedMetadata(known), comp, unresolved=unresolved)
        except MetadataError as e:
            problems += e.problems
    return problems


def _secret_store_problems(
    comp: ComponentManifest,
    by_name: dict[str, ComponentManifest],
    app_id: str | None,
    default: str | None,
) -> list[ConfigProblem]:
    refs = [i for i in comp.metadata if i.secret_ref is not None and not i.value]
    if not refs:
        return []
    store = comp.secret_store or default
    where = comp.mark_of("auth.secretStore") if comp.secret_store else refs[0].mark
    field = "auth.secretStore" if comp.secret_store else f"spec.metadata.{refs[0].name}"
    stores = sorted(n for n, c in by_name.items() if c.block == "secretstores")
    if store is None:
        message = "secretKeyRef needs a secret store: set auth.secretStore to one of: "
        return [ConfigProblem(where, message + (", ".join(stores) or "(none defined)"),
                              comp.describe(), field)]
    found = by_name.get(store)
    if found is None or found.block != "secretstores":
        what = "is not a secret store" if found else "is not defined"
        message = f"secret store {store!r} {what}; secret stores: {', '.join(stores) or 'none'}"
        return [ConfigProblem(where, message, comp.describe(), field)]
    if app_id is not None and not in_scope(found, app_id):
        message = f"secret store {store!r} is not in scope for app {app_id!r}"
        return [ConfigProblem(where, message, comp.describe(), field)]
    return []
