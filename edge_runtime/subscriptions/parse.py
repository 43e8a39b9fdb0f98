"""Subscriptions from the app's ``GET /dapr/subscribe`` reply and from ``kind: Subscription``
resources (contract §3.1, §3.4). Neither function raises for bad input: each problem is
returned (a string for the app's reply, a :class:`ConfigProblem` with ``file:line`` for a
resource) and the subscription it concerns is left out.

Shared rules:

* keys are matched case-insensitively, as Go's JSON decoding does (the last of two spellings
  wins);
* ``pubsubname`` and ``topic`` are required non-empty strings;
* the route: ``routes.rules`` (each ``{match, path}``; an empty ``match`` always matches) are
  tried in order, then ``routes.default``, else ``route``. A subscription with no route at all
  is left out. Rules with no default route: an event matching none is dropped as success;
* ``metadata`` is a map of strings (numbers and booleans are taken as their text, *ours*:
  Go would refuse them); ``deadLetterTopic`` a string; ``bulkSubscribe`` ``{enabled: bool,
  maxMessagesCount: int >= 1, maxAwaitDurationMs: int >= 0}`` (defaults 100 and 1000).

The app's reply: unknown keys are ignored (as Go does), a reply that is not a JSON array is
one problem and no subscriptions. Resources: ``dapr.io/v1alpha1`` takes ``route``,
``dapr.io/v2alpha1`` takes ``routes``; unknown ``spec`` fields are problems (*ours*, as for
components); top-level ``scopes`` (non-empty) limits the resource to those app ids; a second
subscription to the same pubsub and topic is a problem naming the first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from edge_runtime.config.manifest import ConfigProblem, Mark, RawResource
from edge_runtime.subscriptions.model import (
    DEFAULT_BULK_AWAIT_MS,
    DEFAULT_BULK_MESSAGES,
    BulkSettings,
    RouteRule,
    Subscription,
    SubscriptionType,
)
from edge_runtime.subscriptions.rules import RuleError, compile_rule
from edge_runtime.subscriptions.yamlmarks import Marks, PathPart

__all__ = ["V1", "V2", "combine", "from_app_json", "from_object", "from_resources"]

V1 = "dapr.io/v1alpha1"
V2 = "dapr.io/v2alpha1"
_SPEC_KEYS = ("pubsubname", "topic", "route", "routes", "metadata", "deadlettertopic",
              "bulksubscribe")
_SPELLING = {"pubsubname": "pubsubname", "deadlettertopic": "deadLetterTopic",
             "bulksubscribe": "bulkSubscribe", "maxmessagescount": "maxMessagesCount",
             "maxawaitdurationms": "maxAwaitDurationMs"}

Report = Callable[[tuple[PathPart, ...], str], None]


def _fold(value: Mapping[Any, Any]) -> dict[str, Any]:
    """Keys lower-cased (non-string keys dropped: neither JSON nor Go has them)."""
    return {k.lower(): v for k, v in value.items() if isinstance(k, str)}


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


def _spell(path: tuple[PathPart, ...]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + _SPELLING.get(part, part)
    return out


class _Spec:
    """Reads one subscription's fields (already case-folded at the top level)."""

    def __init__(
        self, report: Report, base: tuple[PathPart, ...], *, empty_paths: bool = False
    ) -> None:
        self._report = report
        self.base = base
        self.empty_paths = empty_paths
        self.ok = True

    def bad(self, path: tuple[PathPart, ...], message: str) -> None:
        self.ok = False
        self._report((*self.base, *path), message)

    def text(
        self, d: Mapping[str, Any], key: str, *, required: str = "",
        at: tuple[PathPart, ...] = (),
    ) -> str | None:
        value = d.get(key)
        if value is None or value == "":
            if required:
                self.bad((*at, key), f"is required: expected {required}")
            return None
        if not isinstance(value, str):
            self.bad((*at, key), f"expected a string, got {_describe(value)}")
            return None
        return value

    def read(
        self, d: Mapping[str, Any], *, route: bool, routes: bool, type_: SubscriptionType,
        name: str = "",
    ) -> Subscription | None:
        pubsub = self.text(d, "pubsubname", required="the name of a pubsub component")
        topic = self.text(d, "topic", required="a topic name (MQTT wildcards allowed)")
        single = self.text(d, "route") if route or "route" not in d else None
        rules: list[RouteRule] = []
        default = None
        if "routes" in d and d["routes"] is not None:
            if routes:
                rules, default = self.routes(d["routes"])
            else:
                self.bad(("routes",), f"is not part of {V1}; use apiVersion {V2} for routes")
        if "route" in d and not route:
            self.bad(("route",), f"is not part of {V2}; write routes: {{default: ...}}")
        default = default or single
        metadata = self.metadata(d.get("metadata"))
        dead = self.text(d, "deadlettertopic")
        bulk = self.bulk(d.get("bulksubscribe"))
        if self.ok and not rules and not default:
            self.bad((), "has no route: give route, or routes with rules or a default")
        if not self.ok or pubsub is None or topic is None:
            return None
        return Subscription(
            pubsub_name=pubsub, topic=topic, rules=tuple(rules), default_path=default,
            metadata=metadata, dead_letter_topic=dead, bulk=bulk, type=type_, name=name,
        )

    def routes(self, value: Any) -> tuple[list[RouteRule], str | None]:
        if not isinstance(value, Mapping):
            self.bad(("routes",), f"expected a mapping with rules and default, "
                     f"got {_describe(value)}")
            return [], None
        d = _fold(value)
        default = self.text(d, "default", at=("routes",))
        raw_rules = d.get("rules")
        rules: list[RouteRule] = []
        if raw_rules is None:
            return rules, default
        if not isinstance(raw_rules, list):
            self.bad(("routes", "rules"), f"expected a list of {{match, path}}, "
                     f"got {_describe(raw_rules)}")
            return rules, default
        for i, item in enumerate(raw_rules):
            where: tuple[PathPart, ...] = ("routes", "rules", i)
            if not isinstance(item, Mapping):
                self.bad(where, f"expected a mapping with match and path, got {_describe(item)}")
                continue
            r = _fold(item)
            match = r.get("match")
            path = r.get("path")
            if not isinstance(path, str) or (not path and not self.empty_paths):
                self.bad((*where, "path"), f"is required: expected a path, got {_describe(path)}")
                continue
            if match is not None and not isinstance(match, str):
                self.bad((*where, "match"), f"expected a rule expression, got {_describe(match)}")
                continue
            try:
                rules.append(RouteRule(compile_rule(match or ""), path))
            except RuleError as exc:
                self.bad((*where, "match"), str(exc))
        return rules, default

    def metadata(self, value: Any) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.bad(("metadata",), f"expected a mapping of strings, got {_describe(value)}")
            return {}
        out: dict[str, str] = {}
        for k, v in value.items():
            if isinstance(v, bool):
                out[str(k)] = "true" if v else "false"
            elif isinstance(v, str | int | float):
                out[str(k)] = str(v)
            else:
                self.bad(("metadata", str(k)), f"expected a string, got {_describe(v)}")
        return out

    def bulk(self, value: Any) -> BulkSettings:
        if value is None:
            return BulkSettings()
        if not isinstance(value, Mapping):
            self.bad(("bulksubscribe",), f"expected a mapping, got {_describe(value)}")
            return BulkSettings()
        d = _fold(value)
        enabled = d.get("enabled", False)
        if not isinstance(enabled, bool):
            self.bad(("bulksubscribe", "enabled"), f"expected true or false, "
                     f"got {_describe(enabled)}")
            enabled = False
        counts = []
        for key, default, low in (("maxmessagescount", DEFAULT_BULK_MESSAGES, 1),
                                  ("maxawaitdurationms", DEFAULT_BULK_AWAIT_MS, 0)):
            n = d.get(key)
            if n is None:
                n = default
            elif isinstance(n, bool) or not isinstance(n, int) or n < low:
                self.bad(("bulksubscribe", key), f"expected a whole number >= {low}, "
                         f"got {_describe(n)}")
                n = default
            counts.append(n)
        return BulkSettings(enabled, counts[0], counts[1])


def from_app_json(body: bytes) -> tuple[list[Subscription], list[str]]:
    """The subscriptions in an app's ``GET /dapr/subscribe`` reply, and the problems found."""
    problems: list[str] = []
    try:
        data = json.loads(body) if body.strip() else []
    except (ValueError, RecursionError) as exc:
        return [], [f"GET /dapr/subscribe: the reply is not JSON ({exc})"]
    if not isinstance(data, list):
        return [], [f"GET /dapr/subscribe: expected a JSON array, got {_describe(data)}"]
    subs: list[Subscription] = []
    for i, item in enumerate(data):
        sub, found = from_object(item, f"GET /dapr/subscribe: item {i}")
        problems.extend(found)
        if sub is not None:
            subs.append(sub)
    subs, dups = combine(subs)
    problems.extend(f"GET /dapr/subscribe: {p}" for p in dups)
    return subs, problems


def from_object(
    item: Any, label: str, type_: SubscriptionType = SubscriptionType.PROGRAMMATIC,
    name: str = "", *, empty_paths: bool = False,
) -> tuple[Subscription | None, list[str]]:
    """One JSON object in the ``/dapr/subscribe`` shape; problems are prefixed with ``label``.

    ``empty_paths`` accepts a rule whose ``path`` is ``""``: a gRPC app's paths are names it
    looks its handlers up by, and ``""`` is the one it gets when it gave no route (§4.5).
    """
    if not isinstance(item, Mapping):
        return None, [f"{label}: expected an object, got {_describe(item)}"]
    d = _fold(item)
    if isinstance(d.get("pubsubname"), str) and isinstance(d.get("topic"), str):
        label += f" (pubsub {d['pubsubname']!r}, topic {d['topic']!r})"
    problems: list[str] = []

    def report(path: tuple[PathPart, ...], msg: str) -> None:
        problems.append(f"{label}: field {_spell(path)!r}: {msg}" if path else f"{label}: {msg}")

    sub = _Spec(report, (), empty_paths=empty_paths).read(
        d, route=True, routes=True, type_=type_, name=name
    )
    return sub, problems


def combine(*lists: Sequence[Subscription]) -> tuple[list[Subscription], list[str]]:
    """One list with one subscription per key: the first wins, each later one is a problem.

    Pass declarative subscriptions before programmatic ones to give them precedence.
    """
    seen: dict[str, Subscription] = {}
    problems: list[str] = []
    for subs in lists:
        for sub in subs:
            first = seen.setdefault(sub.key, sub)
            if first is not sub:
                problems.append(
                    f"pubsub {sub.pubsub_name!r} topic {sub.topic!r} is already subscribed "
                    f"({first.type.lower()}{' ' + repr(first.name) if first.name else ''}); "
                    f"the {sub.type.lower()} subscription is ignored"
                )
    return list(seen.values()), problems


def from_resources(
    others: Sequence[RawResource], app_id: str | None
) -> tuple[list[Subscription], list[ConfigProblem]]:
    """``kind: Subscription`` documents in scope for ``app_id`` (``None``: all), and problems."""
    marks = Marks()
    subs: list[Subscription] = []
    problems: list[ConfigProblem] = []
    first_at: dict[str, Mark] = {}
    for raw in others:
        if raw.kind != "Subscription":
            continue
        label = f"subscription {raw.name!r}" if raw.name else "subscription"
        found: list[ConfigProblem] = []

        def report(path: tuple[PathPart, ...], msg: str, raw: RawResource = raw,
                   label: str = label, found: list[ConfigProblem] = found) -> None:
            found.append(ConfigProblem(marks.at(raw, *path), msg, label, _spell(path)))

        if raw.api_version not in (V1, V2):
            report(("apiVersion",), f"expected {V1} or {V2}, got {raw.api_version!r}")
            problems.extend(found)
            continue
        if not _in_scope(raw, app_id, report):
            problems.extend(found)
            continue
        spec_raw = raw.body.get("spec")
        if not isinstance(spec_raw, Mapping):
            report(("spec",), f"expected a mapping with pubsubname, topic and routes, "
                   f"got {_describe(spec_raw)}")
            problems.extend(found)
            continue
        spec = _fold(spec_raw)
        for key in spec:
            if key not in _SPEC_KEYS:
                report(("spec", key), "unknown field; expected one of: "
                       + ", ".join(_SPELLING.get(k, k) for k in _SPEC_KEYS))
        reader = _Spec(report, ("spec",))
        reader.ok = not found
        sub = reader.read(spec, route=raw.api_version == V1, routes=raw.api_version == V2,
                          type_=SubscriptionType.DECLARATIVE, name=raw.name)
        if sub is not None:
            first = first_at.get(sub.key)
            if first is not None:
                report(("spec", "topic"), f"pubsub {sub.pubsub_name!r} topic {sub.topic!r} "
                       f"is already subscribed at {first}")
            else:
                first_at[sub.key] = marks.at(raw, "spec", "topic")
                subs.append(sub)
        problems.extend(found)
    return subs, problems


def _in_scope(raw: RawResource, app_id: str | None, report: Report) -> bool:
    scopes = raw.body.get("scopes")
    if scopes is None:
        return True
    if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
        report(("scopes",), f"expected a list of app ids, got {_describe(scopes)}")
        return False
    return app_id is None or not scopes or app_id in scopes
