"""The invocation core with mDNS name resolution: a scripted discovery and peer (no sockets,
no real sleeping)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from edge_runtime.api.invoking import InvokeRequest, Invoking
from edge_runtime.api.universal import RuntimeView
from edge_runtime.appchannel import InvokeCall, InvokeResult
from edge_runtime.errors import APIError
from edge_runtime.inbox.retry import RetryPolicy
from edge_runtime.invocation import PeerUnreachableError
from edge_runtime.invocation.discovery import AppNotFoundError, Discovery
from edge_runtime.invocation.nameresolution import NameResolution
from edge_runtime.invocation.resiliency import AppPolicies, AppPolicy

OK = InvokeResult(200, b"ok")
NOT_FOUND = AppNotFoundError("app c not found via mDNS (no sidecar announced it within 3s)")


class Found:
    """Answers each resolve with the next address (or raises); records the questions and
    the addresses reported unreachable."""

    def __init__(self, answers: Iterable[str | Exception]) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, str]] = []
        self.unreachable_addresses: list[str] = []

    async def resolve(self, app_id: str, namespace: str) -> str:
        self.asked.append((app_id, namespace))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def unreachable(self, address: str) -> None:
        self.unreachable_addresses.append(address)


class Peers:
    """Each call: recorded (address, caller, callee, method), then the next outcome."""

    def __init__(self, outcomes: Iterable[InvokeResult | Exception]) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[str, str, str, str]] = []

    @property
    def dialed(self) -> list[str]:
        return [c[0] for c in self.calls]

    async def call(
        self, address: str, call: InvokeCall, *, caller: str, callee: str
    ) -> InvokeResult:
        self.calls.append((address, caller, callee, call.method))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def close(self) -> None:
        pass


async def no_sleep(_s: float) -> None:
    pass


MDNS = NameResolution({"b": "10.0.0.2:50002"}, component="mdns")


def core(
    found: Found | None, peers: Peers | None, *, policies: AppPolicies | None = None,
    remote_off: str = "",
) -> Invoking:
    return Invoking(RuntimeView(app_id="a"), local=None, names=MDNS, remote=peers,
                    discovery=found, policies=policies, sleep=no_sleep, remote_off=remote_off)


def test_the_fake_is_a_discovery() -> None:
    assert isinstance(Found([]), Discovery)


async def test_static_entries_win() -> None:
    found, peers = Found([]), Peers([OK])
    assert await core(found, peers).invoke(InvokeRequest("b", "m")) == OK
    assert peers.dialed == ["10.0.0.2:50002"]
    assert found.asked == []


async def test_other_apps_are_resolved_over_mdns() -> None:
    found, peers = Found(["10.0.0.3:7", "10.0.0.3:7"]), Peers([OK, OK])
    await core(found, peers).invoke(InvokeRequest("c", "m"))
    await core(found, peers).invoke(InvokeRequest("c.plant", "m"))
    assert found.asked == [("c", ""), ("c", "plant")]
    assert peers.calls == [("10.0.0.3:7", "a", "c", "m")] * 2


async def test_not_found_is_err_direct_invoke() -> None:
    with pytest.raises(APIError) as err:
        await core(Found([NOT_FOUND]), Peers([])).invoke(InvokeRequest("c", "m"))
    assert (err.value.kind.code, err.value.kind.http) == ("ERR_DIRECT_INVOKE", 500)
    assert err.value.message == (
        "failed to invoke, id: c, err: app c not found via mDNS (no sidecar announced it "
        "within 3s)"
    )


async def test_an_unreachable_address_is_reported_and_resolved_again() -> None:
    found = Found(["10.0.0.3:7", "10.0.0.4:8"])
    peers = Peers([PeerUnreachableError("refused"), OK])
    assert await core(found, peers).invoke(InvokeRequest("c", "m")) == OK
    assert found.unreachable_addresses == ["10.0.0.3:7"]
    assert peers.dialed == ["10.0.0.3:7", "10.0.0.4:8"]
    assert found.asked == [("c", ""), ("c", "")]


async def test_a_static_address_is_not_reported_to_discovery() -> None:
    found = Found([])
    peers = Peers([PeerUnreachableError("refused"), OK])
    assert await core(found, peers).invoke(InvokeRequest("b", "m")) == OK
    assert found.unreachable_addresses == []


async def test_a_retry_policy_retries_not_found() -> None:
    policies = AppPolicies(by_app={"c": AppPolicy(retry=RetryPolicy(
        kind="constant", duration_s=0.01, max_retries=1,
    ))})
    found, peers = Found([NOT_FOUND, "10.0.0.3:7"]), Peers([OK])
    assert await core(found, peers, policies=policies).invoke(InvokeRequest("c", "m")) == OK
    assert len(found.asked) == 2


async def test_without_a_peer_client_mdns_answers_why() -> None:
    with pytest.raises(APIError) as err:
        await core(None, None, remote_off="grpc is off").invoke(InvokeRequest("c", "m"))
    assert err.value.message == "failed to invoke, id: c, err: grpc is off"
