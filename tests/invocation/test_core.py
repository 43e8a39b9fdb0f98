"""The invocation core's retry and breaker logic with small scripted peers (no sockets, no
real sleeping)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest

from edge_runtime.api.invoking import InvokeRequest, Invoking
from edge_runtime.api.universal import RuntimeView
from edge_runtime.appchannel import AppUnavailableError, InvokeCall, InvokeResult
from edge_runtime.errors import APIError, GrpcCode
from edge_runtime.inbox.retry import RetryPolicy
from edge_runtime.invocation import PeerError, PeerUnreachableError
from edge_runtime.invocation.breaker import BreakerPolicy, State, compile_trip
from edge_runtime.invocation.nameresolution import NameResolution
from edge_runtime.invocation.resiliency import AppPolicies, AppPolicy

Outcome = InvokeResult | BaseException


class Script:
    """Answers each call with the next outcome; records the calls."""

    def __init__(self, outcomes: Iterable[Outcome]) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[InvokeCall] = []

    def next(self, call: InvokeCall) -> InvokeResult:
        self.calls.append(call)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


class Local(Script):
    async def invoke(self, call: InvokeCall) -> InvokeResult:
        return self.next(call)


class Remote(Script):
    async def call(
        self, address: str, call: InvokeCall, *, caller: str, callee: str
    ) -> InvokeResult:
        assert (address, caller, callee) == ("10.0.0.2:50002", "a", "b")
        return self.next(call)

    async def close(self) -> None:
        pass


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


OK = InvokeResult(200, b"ok")
NAMES = NameResolution({"b": "10.0.0.2:50002"})


def core(
    *, local: Local | None = None, remote: Remote | None = None,
    policies: AppPolicies | None = None, sleeps: Sleeps | None = None,
) -> Invoking:
    return Invoking(RuntimeView(app_id="a"), local=local, names=NAMES, remote=remote,
                    policies=policies, sleep=sleeps or Sleeps())


async def test_builtin_retries_only_unreachable_peers() -> None:
    remote = Remote([PeerUnreachableError("refused")] * 2 + [OK])
    sleeps = Sleeps()
    result = await core(remote=remote, sleeps=sleeps).invoke(InvokeRequest("b", "m"))
    assert result == OK
    assert len(remote.calls) == 3
    assert len(sleeps.delays) == 2
    assert 0 <= sleeps.delays[0] <= 0.2
    assert 0 <= sleeps.delays[1] <= 0.4


async def test_builtin_retries_give_up_after_three() -> None:
    remote = Remote([PeerUnreachableError("refused")] * 4)
    with pytest.raises(APIError) as err:
        await core(remote=remote).invoke(InvokeRequest("b", "m"))
    assert err.value.message == (
        "failed to invoke, id: b, err: could not reach its sidecar after 4 attempts: refused"
    )
    assert len(remote.calls) == 4


async def test_a_reached_peer_is_not_retried_by_the_builtin_policy() -> None:
    remote = Remote([PeerError(GrpcCode.UNAVAILABLE, "app down"), OK])
    with pytest.raises(APIError) as err:
        await core(remote=remote).invoke(InvokeRequest("b", "m"))
    assert err.value.kind.http == 500
    assert len(remote.calls) == 1


async def test_refused_credentials_are_403_and_never_retried() -> None:
    retry = RetryPolicy("constant", duration_s=0.0, max_retries=5)
    policies = AppPolicies({"b": AppPolicy(retry=retry)})
    remote = Remote([PeerError(GrpcCode.UNAUTHENTICATED, "invalid internal token"), OK])
    with pytest.raises(APIError) as err:
        await core(remote=remote, policies=policies).invoke(InvokeRequest("b", "m"))
    assert err.value.kind.http == 403
    assert len(remote.calls) == 1


async def test_local_app_errors_follow_the_retry_policy() -> None:
    retry = RetryPolicy("constant", duration_s=0.5, max_retries=2)
    policies = AppPolicies({"a": AppPolicy(retry=retry)})
    local = Local([AppUnavailableError("refused"), InvokeResult(500), OK])
    sleeps = Sleeps()
    result = await core(local=local, policies=policies, sleeps=sleeps).invoke(
        InvokeRequest("a", "m")
    )
    assert result == OK
    assert sleeps.delays == [0.5, 0.5]


async def test_a_cancelled_trial_does_not_wedge_a_half_open_breaker() -> None:
    breaker = BreakerPolicy("cb", 1, 0.0, 0.0, compile_trip("consecutiveFailures >= 1"))
    policies = AppPolicies({"a": AppPolicy(breaker=breaker)})
    local = Local([InvokeResult(500), asyncio.CancelledError(), OK])
    invoking = core(local=local, policies=policies)
    assert (await invoking.invoke(InvokeRequest("a", "m"))).status == 500
    cb = policies.breaker("a")
    assert cb is not None
    assert cb.state is State.HALF_OPEN  # timeout 0: the trial is allowed at once
    with pytest.raises(asyncio.CancelledError):
        await invoking.invoke(InvokeRequest("a", "m"))
    assert cb.state is State.HALF_OPEN  # reopened by the cancelled trial, timeout 0 again
    assert await invoking.invoke(InvokeRequest("a", "m")) == OK
    assert cb.state is State.CLOSED
