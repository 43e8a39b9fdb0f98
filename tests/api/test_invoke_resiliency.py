"""``Resiliency`` targets.apps policies on invocation of the local app: timeout, retries with
status matching, circuit breaker, and a start refused for a bad policy."""

from __future__ import annotations

import pytest

from tests.api.conftest import COMPONENTS, StartSidecar
from tests.appchannel.appserver import AppServer, Reply, Request
from tests.invocation.echoapp import echo

POLICIES = COMPONENTS + """
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: policies}
spec:
  policies:
    timeouts: {short: 300ms}
    retries:
      twice: {policy: constant, duration: 10ms, maxRetries: 2,
              matching: {httpStatusCodes: "503"}}
    circuitBreakers:
      cb: {maxRequests: 1, timeout: 60s, trip: "consecutiveFailures >= 2"}
  targets:
    apps:
      app: {TARGET}
"""
RESILIENCY = POLICIES.replace("{TARGET}", "{timeout: short, retry: twice}")
BREAKER = POLICIES.replace("{TARGET}", "{circuitBreaker: cb}")


class Flaky:
    """Answers 503 the first ``failures`` times a path is called, then echoes."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: dict[str, int] = {}
        self.echo = echo()

    def __call__(self, req: Request) -> Reply:
        path = req.path.partition("?")[0]
        if path == "/dapr/subscribe":
            return self.echo(req)  # type: ignore[no-any-return]
        n = self.calls[path] = self.calls.get(path, 0) + 1
        if path == "/flaky" and n <= self.failures:
            return Reply(503, b"busy")
        return self.echo(req)  # type: ignore[no-any-return]


async def test_timeout_bounds_a_call(start_sidecar: StartSidecar) -> None:
    async with AppServer(echo()) as app:
        s = await start_sidecar(RESILIENCY, app_port=app.port)
        r = await s.client.get("/v1.0/invoke/app/method/slow")
        assert r.status_code == 500
        body = r.json()
        assert body["errorCode"] == "ERR_DIRECT_INVOKE"
        assert "timed out after 0.3s" in body["message"]
        # every attempt timed out: the first and two retries reached the app
        assert sum(1 for q in app.requests if q.path == "/slow") == 3


async def test_matching_status_is_retried(start_sidecar: StartSidecar) -> None:
    flaky = Flaky(failures=2)
    async with AppServer(flaky) as app:
        s = await start_sidecar(RESILIENCY, app_port=app.port)
        r = await s.client.get("/v1.0/invoke/app/method/flaky")
        assert r.status_code == 200
        assert flaky.calls["/flaky"] == 3


async def test_retries_exhausted_relay_the_last_answer(start_sidecar: StartSidecar) -> None:
    flaky = Flaky(failures=10)
    async with AppServer(flaky) as app:
        s = await start_sidecar(RESILIENCY, app_port=app.port)
        r = await s.client.get("/v1.0/invoke/app/method/flaky")
        assert (r.status_code, r.content) == (503, b"busy")
        assert flaky.calls["/flaky"] == 3


async def test_status_outside_matching_is_not_retried(start_sidecar: StartSidecar) -> None:
    async with AppServer(echo()) as app:
        s = await start_sidecar(RESILIENCY, app_port=app.port)
        r = await s.client.get("/v1.0/invoke/app/method/status/500")
        assert r.status_code == 500
        assert sum(1 for q in app.requests if q.path == "/status/500") == 1


async def test_circuit_breaker_opens_after_failures(start_sidecar: StartSidecar) -> None:
    async with AppServer(echo()) as app:
        s = await start_sidecar(BREAKER, app_port=app.port)
        for _ in range(2):
            assert (await s.client.get("/v1.0/invoke/app/method/status/500")).status_code == 500
        reached = len(app.requests)
        r = await s.client.get("/v1.0/invoke/app/method/anything")
        assert r.status_code == 500
        assert "circuit breaker 'cb' is open" in r.json()["message"]
        assert len(app.requests) == reached  # refused without calling the app


async def test_bad_policy_stops_the_start(start_sidecar: StartSidecar) -> None:
    bad = RESILIENCY.replace("retry: twice", "retry: thrice")
    assert bad != RESILIENCY
    with pytest.raises(RuntimeError, match="did not start"):
        await start_sidecar(bad)
