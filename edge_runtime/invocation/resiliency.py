"""``Resiliency`` policies for service invocation: ``spec.targets.apps`` (contract §7).

Reads, from the documents in scope for the app (the same reading as the inbound pub/sub
policies, :func:`~edge_runtime.inbox.resiliency.read_resiliency`)::

    spec:
      policies:
        timeouts:        {short: 2s}
        retries:         {three: {policy: constant, duration: 200ms, maxRetries: 3,
                                  matching: {httpStatusCodes: "502-504"}}}
        circuitBreakers: {cb: {maxRequests: 1, interval: 0s, timeout: 30s,
                               trip: "consecutiveFailures >= 3"}}
      targets:
        apps:
          sensors: {timeout: short, retry: three, circuitBreaker: cb}

A target's ``timeout`` names a timeout policy (or is a duration written inline). Apps without a
target get ``DefaultAppRetryPolicy``/``DefaultRetryPolicy``, ``DefaultAppTimeoutPolicy``/
``DefaultTimeoutPolicy`` and ``DefaultAppCircuitBreakerPolicy``/``DefaultCircuitBreakerPolicy``
when defined. The timeout bounds each attempt. A retry policy retries transport failures and
replies whose status is not 2xx/3xx, or only the statuses in ``matching.httpStatusCodes`` when
given (``gRPCStatusCodes`` is checked and not used: apps answer HTTP statuses here). Circuit
breakers count the same failures, one breaker per target app.

A retry policy named ``DaprBuiltInServiceRetries`` replaces the built-in retries of calls that
never reached the peer sidecar (at least 3 retries, as Dapr raises it).

Problems in the retry policies' own fields are reported by
:func:`~edge_runtime.inbox.resiliency.inbound_retry`; this module reports the rest with
``file:line``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from edge_runtime.config.manifest import ConfigProblem, RawResource
from edge_runtime.config.metadata import parse_duration
from edge_runtime.inbox.resiliency import ResiliencyDocs, fold, lookup, read_resiliency
from edge_runtime.inbox.retry import RetryPolicy
from edge_runtime.invocation.breaker import BreakerPolicy, CircuitBreaker, compile_trip

__all__ = ["BUILTIN_RETRY", "AppPolicies", "AppPolicy", "app_policies", "parse_codes"]

BUILTIN_RETRY = RetryPolicy(
    "exponential", initial_s=0.2, multiplier=2.0, max_interval_s=1.0, max_retries=3,
    name="DaprBuiltInServiceRetries",
)
_BREAKER_KEYS = ("maxrequests", "interval", "timeout", "trip")
_TARGET_KEYS = ("timeout", "retry", "circuitbreaker")
_CODES = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


def parse_codes(text: str, low: int, high: int) -> frozenset[int]:
    """``"500-599,408"`` → the set of codes; raises :class:`ValueError` outside low..high."""
    codes: set[int] = set()
    for part in text.split(","):
        m = _CODES.fullmatch(part)
        if m is None:
            raise ValueError(f"expected codes or ranges such as \"500-599,408\", got {text!r}")
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        if not low <= first <= last <= high:
            raise ValueError(f"codes must be from {low} to {high}, in order: {part.strip()!r}")
        codes.update(range(first, last + 1))
    return frozenset(codes)


@dataclass(frozen=True, slots=True)
class AppPolicy:
    """What applies to calls to one app (nothing set: no policy)."""

    timeout_s: float | None = None
    retry: RetryPolicy | None = None
    retry_statuses: frozenset[int] | None = None
    breaker: BreakerPolicy | None = None

    def retries_status(self, status: int) -> bool:
        """Whether a reply with ``status`` is retried (and counts as a failure)."""
        if self.retry_statuses is not None:
            return status in self.retry_statuses
        return is_failure(status)


def is_failure(status: int) -> bool:
    """A reply status Dapr's resiliency counts as a failure (not 2xx or 3xx)."""
    return not 200 <= status < 400


@dataclass(slots=True)
class AppPolicies:
    """Policies by target app, with one circuit breaker per app that has a breaker policy."""

    by_app: Mapping[str, AppPolicy] = field(default_factory=dict)
    default: AppPolicy = field(default_factory=AppPolicy)
    builtin_retry: RetryPolicy = BUILTIN_RETRY
    _breakers: dict[str, CircuitBreaker] = field(default_factory=dict)

    def for_app(self, app_id: str) -> AppPolicy:
        """The policy targeted at ``app_id``, else the defaults."""
        return self.by_app.get(app_id, self.default)

    def breaker(self, app_id: str) -> CircuitBreaker | None:
        """The breaker of ``app_id`` (made on first use), or ``None`` without a policy."""
        policy = self.for_app(app_id).breaker
        if policy is None:
            return None
        found = self._breakers.get(app_id)
        if found is None:
            found = self._breakers[app_id] = CircuitBreaker(policy)
        return found


class _Apps:
    def __init__(self, found: ResiliencyDocs) -> None:
        self.found = found
        self.reader = found.reader
        self.timeouts: dict[str, float] = {}
        self.breakers: dict[str, BreakerPolicy] = {}
        self.statuses: dict[str, frozenset[int] | None] = {}

    def bad(self, raw: RawResource, path: tuple[str, ...], message: str) -> None:
        self.reader.bad(raw, ("spec", *path), message)

    def read_policies(self) -> None:
        for raw, spec in self.found.docs:
            timeouts = lookup(spec, "policies", "timeouts")
            if isinstance(timeouts, Mapping):
                for name, value in timeouts.items():
                    where = ("policies", "timeouts", str(name))
                    if value is None:
                        self.bad(raw, where, "expected a duration such as 5s or 500ms")
                        continue
                    seconds = self.reader.duration(raw, ("spec", *where), value, 0.0)
                    if seconds is not None:
                        self.timeouts.setdefault(str(name), seconds)
            elif timeouts is not None:
                self.bad(raw, ("policies", "timeouts"), "expected a mapping of name: duration")
            breakers = lookup(spec, "policies", "circuitbreakers")
            if isinstance(breakers, Mapping):
                for name, value in breakers.items():
                    policy = self._breaker(raw, str(name), value)
                    if policy is not None:
                        self.breakers.setdefault(str(name), policy)
            elif breakers is not None:
                self.bad(raw, ("policies", "circuitBreakers"), "expected a mapping of policies")
            retries = lookup(spec, "policies", "retries")
            for name, value in (retries.items() if isinstance(retries, Mapping) else ()):
                if str(name) not in self.statuses:
                    self.statuses[str(name)] = self._matching(raw, str(name), value)

    def _matching(self, raw: RawResource, name: str, value: Any) -> frozenset[int] | None:
        matching = lookup(value, "matching")
        where = ("policies", "retries", name, "matching")
        if matching is None:
            return None
        if fold(matching) is None:
            self.bad(raw, where, "expected httpStatusCodes and/or gRPCStatusCodes")
            return None
        grpc_codes = lookup(matching, "grpcstatuscodes")
        if grpc_codes is not None:
            try:
                parse_codes(str(grpc_codes), 0, 16)
            except ValueError as exc:
                self.bad(raw, (*where, "gRPCStatusCodes"), str(exc))
        http = lookup(matching, "httpstatuscodes")
        if http is None or http == "":
            return None
        try:
            return parse_codes(str(http), 100, 599)
        except ValueError as exc:
            self.bad(raw, (*where, "httpStatusCodes"), str(exc))
            return None

    def _breaker(self, raw: RawResource, name: str, value: Any) -> BreakerPolicy | None:
        base = ("policies", "circuitBreakers", name)
        d = fold(value)
        if d is None:
            self.bad(raw, base, "expected a mapping with maxRequests, interval, timeout, trip")
            return None
        ok = True
        for key in d:
            if key not in _BREAKER_KEYS:
                self.bad(raw, (*base, key), "unknown field; expected one of: maxRequests, "
                         "interval, timeout, trip")
                ok = False
        max_requests = d.get("maxrequests", 1)
        if isinstance(max_requests, str) and max_requests.strip().isdigit():
            max_requests = int(max_requests)
        if isinstance(max_requests, bool) or not isinstance(max_requests, int):
            self.bad(raw, (*base, "maxRequests"), f"expected a whole number, got {max_requests!r}")
            ok = False
        interval = self.reader.duration(raw, ("spec", *base, "interval"), d.get("interval"), 0.0)
        timeout = self.reader.duration(raw, ("spec", *base, "timeout"), d.get("timeout"), 60.0)
        trip_text = d.get("trip", "consecutiveFailures > 5")
        try:
            trip = compile_trip(str(trip_text))
        except ValueError as exc:
            self.bad(raw, (*base, "trip"), str(exc))
            return None
        if not ok or interval is None or timeout is None:
            return None
        return BreakerPolicy(name, max(int(max_requests), 1), interval, timeout, trip)

    def _retry(self, name: str) -> tuple[RetryPolicy, frozenset[int] | None] | None:
        found = self.found.retries.get(name)
        return None if found is None else (found[0], self.statuses.get(name))

    def target(self, raw: RawResource, app: str, value: Any) -> AppPolicy | None:
        base = ("targets", "apps", app)
        d = fold(value)
        if d is None:
            self.bad(raw, base, "expected a mapping with timeout, retry, circuitBreaker")
            return None
        for key in d:
            if key not in _TARGET_KEYS:
                self.bad(raw, (*base, key), "unknown field; expected one of: timeout, retry, "
                         "circuitBreaker")
        policy = AppPolicy()
        ref = d.get("timeout")
        if ref is not None:
            seconds = self.timeouts.get(str(ref))
            if seconds is None:
                seconds = _inline_duration(ref)
            if seconds is None:
                self.bad(raw, (*base, "timeout"), f"timeout policy {ref!r} is not defined "
                         "under spec.policies.timeouts")
            policy = replace(policy, timeout_s=seconds)
        ref = d.get("retry")
        if ref is not None:
            retry = self._retry(str(ref))
            if retry is not None:
                policy = replace(policy, retry=retry[0], retry_statuses=retry[1])
            elif str(ref) not in self.found.broken:
                self.bad(raw, (*base, "retry"), f"retry policy {ref!r} is not defined under "
                         "spec.policies.retries")
        ref = d.get("circuitbreaker")
        if ref is not None:
            breaker = self.breakers.get(str(ref))
            if breaker is None:
                self.bad(raw, (*base, "circuitBreaker"), f"circuit breaker {ref!r} is not "
                         "defined under spec.policies.circuitBreakers")
            policy = replace(policy, breaker=breaker)
        return policy

    def default(self) -> AppPolicy:
        timeout = next((self.timeouts[n] for n in ("DefaultAppTimeoutPolicy",
                                                   "DefaultTimeoutPolicy") if n in self.timeouts),
                       None)
        retry = next((r for n in ("DefaultAppRetryPolicy", "DefaultRetryPolicy")
                      if (r := self._retry(n)) is not None), None)
        breaker = next((self.breakers[n] for n in ("DefaultAppCircuitBreakerPolicy",
                                                   "DefaultCircuitBreakerPolicy")
                        if n in self.breakers), None)
        return AppPolicy(timeout, retry[0] if retry else None, retry[1] if retry else None,
                         breaker)


def _inline_duration(value: Any) -> float | None:
    try:
        seconds = parse_duration(str(value))
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def app_policies(
    others: Sequence[RawResource], app_id: str | None
) -> tuple[AppPolicies, list[ConfigProblem]]:
    """The invocation policies in the ``Resiliency`` documents in scope for ``app_id`` and
    the problems found in timeouts, circuit breakers, retry matching and ``targets.apps``."""
    found = read_resiliency(others, app_id)
    already = len(found.problems)  # retry policy problems: reported by inbound_retry
    apps = _Apps(found)
    apps.read_policies()
    by_app: dict[str, AppPolicy] = {}
    for raw, spec in found.docs:
        targets = lookup(spec, "targets", "apps")
        if targets is None:
            continue
        if not isinstance(targets, Mapping):
            apps.bad(raw, ("targets", "apps"), "expected a mapping of app id to policies")
            continue
        for app, value in targets.items():
            policy = apps.target(raw, str(app), value)
            if policy is not None:
                by_app.setdefault(str(app), policy)
    builtin = BUILTIN_RETRY
    override = found.retries.get(BUILTIN_RETRY.name)
    if override is not None:
        retries = override[0].max_retries
        builtin = replace(override[0], max_retries=retries if retries < 0 else max(retries, 3))
    policies = AppPolicies(by_app, apps.default(), builtin)
    return policies, found.problems[already:]
