"""Inbound retry policies for pub/sub and input-binding delivery from ``kind: Resiliency``
resources (§7).

Reads ``spec.policies.retries`` and ``spec.targets.components.<pubsub>.inbound.retry`` of every
``Resiliency`` document in scope for the app (top-level ``scopes``; empty = every app). Policy
names are global across documents, as Dapr merges them. A pubsub with no target gets the first
defined of ``DefaultPubsubComponentInboundRetryPolicy``, ``DefaultComponentInboundRetryPolicy``,
``DefaultComponentRetryPolicy``, ``DefaultRetryPolicy``; with none, our default
(:data:`~edge_runtime.inbox.retry.DEFAULT_RETRY`). An input binding likewise, with
``DefaultBindingComponentInboundRetryPolicy`` first.

A retry policy: ``policy`` ``constant`` (default) or ``exponential``; ``duration`` (constant,
default 5s); ``maxInterval`` (exponential, default 60s); ``maxRetries`` (default -1 =
unlimited); ``matching`` is accepted and ignored (every failure is retried). Exponential
starts at 0.5 s and grows x1.5 as Dapr's does, with full jitter (Dapr: ±50 %). A target's
``inbound.timeout`` names a duration under ``spec.policies.timeouts``: each delivery attempt
taking longer fails and is retried (the policy's ``timeout_s``). Circuit breakers are not
applied to inbound delivery. Keys are matched case-insensitively; problems carry
``file:line``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from edge_runtime.config.manifest import ConfigProblem, Mark, RawResource
from edge_runtime.config.metadata import parse_duration
from edge_runtime.inbox.retry import DEFAULT_RETRY, RetryPolicy
from edge_runtime.subscriptions.yamlmarks import Marks, PathPart

__all__ = [
    "BINDING_DEFAULT_POLICY_NAMES",
    "DEFAULT_POLICY_NAMES",
    "InboundRetry",
    "Reader",
    "ResiliencyDocs",
    "fold",
    "inbound_retry",
    "lookup",
    "read_resiliency",
]

API_VERSION = "dapr.io/v1alpha1"
DEFAULT_POLICY_NAMES = (
    "DefaultPubsubComponentInboundRetryPolicy",
    "DefaultComponentInboundRetryPolicy",
    "DefaultComponentRetryPolicy",
    "DefaultRetryPolicy",
)
BINDING_DEFAULT_POLICY_NAMES = (
    "DefaultBindingComponentInboundRetryPolicy",
    *DEFAULT_POLICY_NAMES[1:],
)
_POLICY_KEYS = ("policy", "duration", "maxinterval", "maxretries", "matching")


@dataclass(frozen=True, slots=True)
class InboundRetry:
    """The retry policy of each pubsub's inbound delivery; pass :meth:`for_pubsub` to the
    :class:`~edge_runtime.inbox.deliver.Deliverer` as ``retry``."""

    by_pubsub: Mapping[str, RetryPolicy] = field(default_factory=dict)
    default: RetryPolicy = DEFAULT_RETRY
    binding_default: RetryPolicy = DEFAULT_RETRY

    def for_pubsub(self, name: str) -> RetryPolicy:
        """The policy targeted at pubsub ``name``, else the default."""
        return self.by_pubsub.get(name, self.default)

    def for_binding(self, name: str) -> RetryPolicy:
        """The policy targeted at input binding ``name``, else the bindings' default.
        (``by_pubsub`` holds every component target, bindings included.)"""
        return self.by_pubsub.get(name, self.binding_default)


def fold(value: Any) -> dict[str, Any] | None:
    """A mapping with its string keys lower-cased; ``None`` for anything else."""
    if not isinstance(value, Mapping):
        return None
    return {k.lower(): v for k, v in value.items() if isinstance(k, str)}


def lookup(value: Any, *keys: str) -> Any:
    """``value[k1][k2]...`` with keys matched case-insensitively; ``None`` when absent."""
    for key in keys:
        d = fold(value)
        if d is None:
            return None
        value = d.get(key)
    return value


class Reader:
    """Reads policy fields of ``Resiliency`` documents, reporting problems with ``file:line``."""

    def __init__(self, marks: Marks, problems: list[ConfigProblem]) -> None:
        self.marks = marks
        self.problems = problems

    def bad(self, raw: RawResource, path: tuple[PathPart, ...], message: str) -> None:
        label = f"resiliency {raw.name!r}" if raw.name else "resiliency"
        self.problems.append(ConfigProblem(
            self.marks.at(raw, *path), message, label, ".".join(str(p) for p in path),
        ))

    def duration(
        self, raw: RawResource, where: tuple[PathPart, ...], value: Any, default: float
    ) -> float | None:
        if value is None:
            return default
        if isinstance(value, str):
            try:
                seconds = parse_duration(value)
            except ValueError:
                pass
            else:
                if seconds >= 0:
                    return seconds
        self.bad(raw, where, f"expected a duration such as 5s or 500ms, got {value!r}")
        return None

    def policy(self, raw: RawResource, name: str, value: Any) -> RetryPolicy | None:
        base: tuple[PathPart, ...] = ("spec", "policies", "retries", name)
        d = fold(value)
        if d is None:
            self.bad(raw, base, "expected a mapping with policy, duration, maxInterval, "
                     "maxRetries")
            return None
        ok = True
        for k in d:
            if k not in _POLICY_KEYS:
                self.bad(raw, (*base, k), "unknown field; expected one of: policy, duration,"
                         " maxInterval, maxRetries, matching")
                ok = False
        kind = d.get("policy") or "constant"
        if not isinstance(kind, str) or kind.lower() not in ("constant", "exponential"):
            self.bad(raw, (*base, "policy"), f"expected constant or exponential, got {kind!r}")
            return None
        retries = d.get("maxretries", -1)
        if isinstance(retries, str) and retries.strip().lstrip("-").isdigit():
            retries = int(retries)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < -1:
            self.bad(raw, (*base, "maxretries"),
                     f"expected a whole number >= -1 (-1: unlimited), got {retries!r}")
            ok = False
            retries = -1
        duration = self.duration(raw, (*base, "duration"), d.get("duration"), 5.0)
        interval = self.duration(
            raw, (*base, "maxinterval"), d.get("maxinterval"), 60.0
        )
        if not ok or duration is None or interval is None:
            return None
        if kind.lower() == "constant":
            return RetryPolicy("constant", duration_s=duration, max_retries=retries, name=name)
        return RetryPolicy("exponential", initial_s=0.5, multiplier=1.5,
                           max_interval_s=interval, max_retries=retries, name=name)


@dataclass(slots=True)
class ResiliencyDocs:
    """The ``Resiliency`` documents in scope, read once and shared by every policy target
    (inbound pub/sub here, ``targets.apps`` in ``invocation.resiliency``).

    ``docs`` pairs each document with its ``spec`` (keys folded to lower case); ``retries``
    holds the valid retry policies by name with where each was defined; ``broken`` names the
    retry policies defined with problems (already in ``problems``).
    """

    reader: Reader
    docs: list[tuple[RawResource, dict[str, Any]]] = field(default_factory=list)
    retries: dict[str, tuple[RetryPolicy, Mark]] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)

    @property
    def problems(self) -> list[ConfigProblem]:
        """Every problem found so far (readers of other sections append theirs)."""
        return self.reader.problems


def read_resiliency(others: Sequence[RawResource], app_id: str | None) -> ResiliencyDocs:
    """The ``Resiliency`` documents in scope for ``app_id`` (``None``: every document) and
    their retry policies."""
    reader = Reader(Marks(), [])
    found = ResiliencyDocs(reader)
    for raw in others:
        if raw.kind != "Resiliency":
            continue
        if raw.api_version != API_VERSION:
            reader.bad(raw, ("apiVersion",), f"expected {API_VERSION}, got {raw.api_version!r}")
            continue
        scopes = raw.body.get("scopes")
        if scopes is not None and not (
            isinstance(scopes, list) and all(isinstance(s, str) for s in scopes)
        ):
            reader.bad(raw, ("scopes",), "expected a list of app ids")
            continue
        if scopes and app_id is not None and app_id not in scopes:
            continue
        spec = fold(raw.body.get("spec"))
        if spec is None:
            reader.bad(raw, ("spec",), "expected a mapping with policies and targets")
            continue
        found.docs.append((raw, spec))
        retries = lookup(spec, "policies", "retries")
        if retries is None:
            continue
        if not isinstance(retries, Mapping):
            reader.bad(raw, ("spec", "policies", "retries"), "expected a mapping of policies")
            continue
        for name, value in retries.items():
            policy = reader.policy(raw, str(name), value)
            if policy is None:
                found.broken.add(str(name))
                continue
            here = reader.marks.at(raw, "spec", "policies", "retries", str(name))
            if str(name) in found.retries:
                reader.bad(raw, ("spec", "policies", "retries", str(name)),
                           f"retry policy {name!r} is already defined at "
                           f"{found.retries[str(name)][1]}")
                continue
            found.retries[str(name)] = (policy, here)
    return found


def inbound_retry(
    others: Sequence[RawResource], app_id: str | None
) -> tuple[InboundRetry, list[ConfigProblem]]:
    """The inbound retry policies in the ``Resiliency`` documents in scope for ``app_id``
    (``None``: every document), and the problems found (documents with problems are used for
    what is valid in them)."""
    found = read_resiliency(others, app_id)
    reader, policies, broken = found.reader, found.retries, found.broken
    by_pubsub: dict[str, RetryPolicy] = {}
    for raw, spec in found.docs:
        components = lookup(spec, "targets", "components")
        if not isinstance(components, Mapping):
            continue
        for comp, target in components.items():
            timeout = _inbound_timeout(reader, raw, spec, str(comp), target)
            ref = lookup(target, "inbound", "retry")
            if ref is None:
                if timeout is not None:
                    by_pubsub[str(comp)] = replace(DEFAULT_RETRY, timeout_s=timeout)
                continue
            where = ("spec", "targets", "components", str(comp), "inbound", "retry")
            if ref in broken:
                continue
            if not isinstance(ref, str) or ref not in policies:
                reader.bad(raw, where, f"retry policy {ref!r} is not defined under "
                           "spec.policies.retries")
                continue
            by_pubsub[str(comp)] = replace(policies[ref][0], timeout_s=timeout)
    default = next((policies[n][0] for n in DEFAULT_POLICY_NAMES if n in policies),
                   DEFAULT_RETRY)
    binding_default = next(
        (policies[n][0] for n in BINDING_DEFAULT_POLICY_NAMES if n in policies), DEFAULT_RETRY
    )
    return InboundRetry(by_pubsub, default, binding_default), list(found.problems)


def _inbound_timeout(
    reader: Reader, raw: RawResource, spec: Mapping[str, Any], comp: str, target: Any
) -> float | None:
    """Seconds of the timeout policy ``targets.components.<comp>.inbound.timeout`` names;
    ``None`` when there is none (or it is broken: reported in the problems)."""
    ref = lookup(target, "inbound", "timeout")
    if ref is None:
        return None
    where: tuple[PathPart, ...] = ("spec", "targets", "components", comp, "inbound", "timeout")
    timeouts = fold(lookup(spec, "policies", "timeouts")) or {}
    if not isinstance(ref, str) or ref.lower() not in timeouts:
        reader.bad(raw, where, f"timeout policy {ref!r} is not defined under "
                   "spec.policies.timeouts")
        return None
    return reader.duration(raw, ("spec", "policies", "timeouts", ref),
                           timeouts[ref.lower()], 0.0) or None
