"""The pure parts of invocation: headers, the --config name table, Resiliency app policies,
the circuit breaker, the CallLocal wire format."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edge_runtime.api.invoking import split_target
from edge_runtime.appchannel import InvokeCall, InvokeResult
from edge_runtime.config.loader import load_resources
from edge_runtime.errors import APIError
from edge_runtime.inbox.resiliency import inbound_retry
from edge_runtime.invocation import wire
from edge_runtime.invocation.breaker import BreakerPolicy, CircuitBreaker, State, compile_trip
from edge_runtime.invocation.headers import (
    for_app,
    forwardable,
    relayable,
    valid_traceparent,
    with_trace,
)
from edge_runtime.invocation.nameresolution import load_configuration, parse_address
from edge_runtime.invocation.resiliency import BUILTIN_RETRY, app_policies, parse_codes

# --------------------------------------------------------------------------------- headers


def test_forwardable_drops_hop_by_hop_tokens_and_ours() -> None:
    got = forwardable({
        "Host": "h", "Content-Length": "3", "Content-Type": "a/b", "Connection": "close, X-Hop",
        "X-Hop": "1", "Transfer-Encoding": "chunked", "dapr-api-token": "t", "dapr-app-id": "b",
        "Dapr-Caller-App-Id": "m", ":authority": "x", "grpc-timeout": "1S", "X-Keep": "yes",
        "traceparent": "tp",
    })
    assert got == {"x-keep": "yes", "traceparent": "tp"}


def test_relayable_keeps_app_headers() -> None:
    got = relayable({"content-length": "5", "content-type": "x", "x-app": "1",
                     "connection": "x-gone", "x-gone": "1", "set-cookie": "a=b"})
    assert got == {"x-app": "1", "set-cookie": "a=b"}


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", True),
        ("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", True),
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", False),
        ("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", False),
        ("00-00000000000000000000000000000000-b7ad6b7169203331-01", False),
        ("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", False),
        ("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", False),
        ("", False),
    ],
)
def test_traceparent_validity(value: str, ok: bool) -> None:
    assert valid_traceparent(value) is ok


def test_with_trace_makes_an_unsampled_traceparent() -> None:
    got = with_trace({"tracestate": "k=v"})
    assert valid_traceparent(got["traceparent"])
    assert got["traceparent"].endswith("-00")
    assert "tracestate" not in got
    assert with_trace({"traceparent": got["traceparent"]}) == {"traceparent": got["traceparent"]}


def test_for_app_sets_ids() -> None:
    assert for_app({"a": "1"}, caller="x", callee="y", caller_namespace="ns") == {
        "a": "1", "dapr-caller-app-id": "x", "dapr-callee-app-id": "y",
        "dapr-caller-namespace": "ns",
    }


@pytest.mark.parametrize(
    ("target", "parsed"), [("app", ("app", "")), ("app.ns", ("app", "ns"))]
)
def test_split_target(target: str, parsed: tuple[str, str]) -> None:
    assert split_target(target) == parsed


@pytest.mark.parametrize("target", ["", "a.b.c", ".ns", "app."])
def test_split_target_refuses(target: str) -> None:
    with pytest.raises(APIError) as err:
        split_target(target)
    assert err.value.kind.code == "ERR_DIRECT_INVOKE"
    assert err.value.kind.http == 500


# ---------------------------------------------------------------------- name resolution


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


CONFIG = """
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: edge}
spec:
  tracing: {samplingRate: "0"}
  nameResolution:
    component: static
    configuration:
      apps:
        sensors: "192.168.1.20:50002"
        gateway.plant: "[fd00::5]:50002"
        local-host: "pi-2.local:7000"
"""


def test_static_table(tmp_path: Path) -> None:
    names, problems = load_configuration(write(tmp_path, CONFIG))
    assert problems == []
    assert names.resolve("sensors") == "192.168.1.20:50002"
    assert names.resolve("gateway", "plant") == "[fd00::5]:50002"
    assert names.resolve("gateway") is None
    assert names.resolve("nobody") is None


def test_own_namespace_entries_resolve_without_the_suffix(tmp_path: Path) -> None:
    names, _ = load_configuration(write(tmp_path, CONFIG), namespace="plant")
    assert names.resolve("gateway") == "[fd00::5]:50002"
    assert names.resolve("sensors", "plant") == "192.168.1.20:50002"


BAD_CONFIG = """
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: edge}
spec:
  nameResolution:
    component: static
    colour: blue
    configuration:
      apps:
        ok: "10.0.0.1:50002"
        noport: "10.0.0.2"
        badport: "10.0.0.3:70000"
        v6: "fd00::5:50002"
        "bad id": "10.0.0.4:1"
        number: 50002
"""


def test_table_problems_have_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, BAD_CONFIG)
    names, problems = load_configuration(path)
    assert names.apps == {"ok": "10.0.0.1:50002"}
    lines = {p.mark.line: p.message for p in problems if p.mark is not None}
    assert set(lines) == {7, 11, 12, 13, 14, 15}
    assert "unknown field" in lines[7]
    assert "port from 1 to 65535" in lines[11]
    assert "port from 1 to 65535" in lines[12]
    assert "brackets" in lines[13]
    assert "is not an app id" in lines[14]
    assert "as a string" in lines[15]
    assert all(str(p).startswith(f"{path}:") for p in problems)


def test_mdns_takes_the_same_optional_table(tmp_path: Path) -> None:
    text = CONFIG.replace("component: static", "component: mdns")
    names, problems = load_configuration(write(tmp_path, text))
    assert problems == []
    assert names.mdns
    assert names.resolve("sensors") == "192.168.1.20:50002"
    names, problems = load_configuration(write(tmp_path, """
        apiVersion: dapr.io/v1alpha1
        kind: Configuration
        metadata: {name: c}
        spec:
          nameResolution: {component: mdns}
        """))
    assert (problems, names.mdns, dict(names.apps)) == ([], True, {})
    static, _ = load_configuration(write(tmp_path, CONFIG))
    assert not static.mdns


def test_other_name_resolution_components_are_refused(tmp_path: Path) -> None:
    text = CONFIG.replace("component: static", "component: consul")
    _, problems = load_configuration(write(tmp_path, text))
    assert len(problems) == 1
    assert problems[0].message.endswith("expected static or mdns, got 'consul'")
    assert problems[0].mark is not None
    assert problems[0].mark.line == 7


def test_config_file_must_hold_a_configuration(tmp_path: Path) -> None:
    _, problems = load_configuration(write(tmp_path, "apiVersion: v1\nkind: Resiliency\n"))
    assert "expected a resource of kind Configuration" in problems[0].message
    _, problems = load_configuration(tmp_path / "missing.yaml")
    assert "does not exist" in problems[0].message


def test_configuration_without_name_resolution(tmp_path: Path) -> None:
    names, problems = load_configuration(write(tmp_path, "apiVersion: dapr.io/v1alpha1\n"
                                               "kind: Configuration\nmetadata: {name: c}\n"))
    assert problems == []
    assert names.apps == {}


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("h:1", ("h", 1)), ("[::1]:80", ("::1", 80)), ("10.0.0.1:65535", ("10.0.0.1", 65535))],
)
def test_parse_address(text: str, parsed: tuple[str, int]) -> None:
    assert parse_address(text) == parsed


# --------------------------------------------------------------------------- resiliency

RESILIENCY = """
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: r}
spec:
  policies:
    timeouts: {short: 250ms}
    retries:
      three: {policy: constant, duration: 10ms, maxRetries: 3,
              matching: {httpStatusCodes: "502-504,429"}}
      DefaultAppRetryPolicy: {policy: constant, duration: 1s, maxRetries: 1}
      DaprBuiltInServiceRetries: {policy: constant, duration: 50ms, maxRetries: 1}
    circuitBreakers:
      cb: {maxRequests: 2, timeout: 30s, trip: "consecutiveFailures >= 3"}
  targets:
    apps:
      sensors: {timeout: short, retry: three, circuitBreaker: cb}
      inline: {timeout: 2s}
"""


def resources(tmp_path: Path, text: str) -> list:  # type: ignore[type-arg]
    res = load_resources([write(tmp_path, text, "resiliency.yaml")])
    assert res.problems == []
    return res.others


def test_app_policies(tmp_path: Path) -> None:
    policies, problems = app_policies(resources(tmp_path, RESILIENCY), "me")
    assert problems == []
    sensors = policies.for_app("sensors")
    assert sensors.timeout_s == 0.25
    assert sensors.retry is not None
    assert sensors.retry.max_retries == 3
    assert sensors.retries_status(503)
    assert sensors.retries_status(429)
    assert not sensors.retries_status(500)
    assert sensors.breaker is not None
    assert sensors.breaker.max_requests == 2
    assert policies.for_app("inline").timeout_s == 2.0
    other = policies.for_app("other")
    assert other.retry is not None
    assert other.retry.duration_s == 1.0
    assert other.retries_status(500)
    assert not other.retries_status(304)
    assert policies.breaker("other") is None
    assert policies.breaker("sensors") is policies.breaker("sensors")
    assert policies.builtin_retry.max_retries == 3  # raised to Dapr's minimum
    assert policies.builtin_retry.duration_s == 0.05


def test_no_resiliency_means_builtin_only(tmp_path: Path) -> None:
    policies, problems = app_policies([], "me")
    assert problems == []
    assert policies.for_app("x").retry is None
    assert policies.builtin_retry == BUILTIN_RETRY


BAD_RESILIENCY = """
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: r}
spec:
  policies:
    timeouts:
      short: soon
    retries:
      r1: {policy: constant, matching: {httpStatusCodes: "600"}}
    circuitBreakers:
      cb: {trip: "failures > 3"}
      cb2: {maxRequests: many, colour: red}
  targets:
    apps:
      a: {timeout: missing, retry: nope, circuitBreaker: cb9, extra: 1}
"""


def test_app_policy_problems_have_file_and_line(tmp_path: Path) -> None:
    others = resources(tmp_path, BAD_RESILIENCY)
    _, problems = app_policies(others, "me")
    lines = sorted((p.mark.line, p.message) for p in problems if p.mark is not None)
    got = {line for line, _ in lines}
    assert got == {7, 9, 11, 12, 15}
    text = "\n".join(m for _, m in lines)
    assert "expected a duration" in text
    assert "codes must be from 100 to 599" in text
    assert "unknown name 'failures'" in text
    assert "expected a whole number" in text
    assert "timeout policy 'missing' is not defined" in text
    assert "retry policy 'nope' is not defined" in text
    assert "circuit breaker 'cb9' is not defined" in text
    # the inbound reading of the same documents stays as it was
    _, inbound = inbound_retry(others, "me")
    assert inbound == []


def test_parse_codes() -> None:
    assert parse_codes("500-502, 408", 100, 599) == {500, 501, 502, 408}
    with pytest.raises(ValueError, match="in order"):
        parse_codes("505-500", 100, 599)
    with pytest.raises(ValueError, match="expected codes"):
        parse_codes("5xx", 100, 599)


# ----------------------------------------------------------------------- circuit breaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_trips_half_opens_and_closes() -> None:
    clock = Clock()
    cb = CircuitBreaker(BreakerPolicy("cb", 2, 0.0, 10.0, compile_trip("consecutiveFailures >= 2")),
                        clock)
    for _ in range(2):
        ticket = cb.allow()
        assert ticket is not None
        cb.record(ticket, ok=False)
    assert cb.state is State.OPEN
    assert cb.allow() is None
    clock.now = 10.0
    assert cb.state is State.HALF_OPEN
    first, second = cb.allow(), cb.allow()
    assert first is not None
    assert second is not None
    assert cb.allow() is None  # only maxRequests trial calls
    cb.record(first, ok=True)
    assert cb.state is State.HALF_OPEN
    cb.record(second, ok=True)
    assert cb.state is State.CLOSED


def test_breaker_reopens_on_a_failed_trial_and_ignores_stale_results() -> None:
    clock = Clock()
    cb = CircuitBreaker(BreakerPolicy(timeout_s=5.0, trip=compile_trip("totalFailures > 0")),
                        clock)
    stale = cb.allow()
    ticket = cb.allow()
    assert stale is not None
    assert ticket is not None
    cb.record(ticket, ok=False)
    assert cb.state is State.OPEN
    cb.record(stale, ok=True)  # from before the trip: ignored
    assert cb.state is State.OPEN
    clock.now = 5.0
    trial = cb.allow()
    assert trial is not None
    cb.record(trial, ok=False)
    assert cb.state is State.OPEN


def test_breaker_interval_resets_counts() -> None:
    clock = Clock()
    cb = CircuitBreaker(BreakerPolicy(interval_s=1.0, trip=compile_trip(
        "consecutiveFailures > 1 && requests >= 2")), clock)
    t = cb.allow()
    assert t is not None
    cb.record(t, ok=False)
    clock.now = 1.5  # a new interval: the first failure is forgotten
    t = cb.allow()
    assert t is not None
    cb.record(t, ok=False)
    assert cb.state is State.CLOSED


@pytest.mark.parametrize("bad", ["", "x > 1", "consecutiveFailures > 'a'", "consecutiveFailures >"])
def test_bad_trip_expressions(bad: str) -> None:
    with pytest.raises(ValueError, match=r"trip|required"):
        compile_trip(bad)


# ------------------------------------------------------------------------------- wire


def test_wire_round_trip() -> None:
    call = InvokeCall("a/b", "PROPFIND", b"\x00\x01", "x/y", "q=1",
                      {"x-h": "v\u00e9", "traceparent": "t"})
    message, metadata = wire.request_of(call)
    back = wire.call_of(wire.common_pb2.InvokeRequest.FromString(message.SerializeToString()),
                        dict(metadata))
    assert back == call
    result = InvokeResult(404, b"nope", "text/plain", {"x-app": "1"})
    reply, trailing = wire.reply_of(result)
    assert wire.result_of(reply, trailing) == result


def test_wire_standard_verb_without_metadata() -> None:
    message, _ = wire.request_of(InvokeCall("m", "DELETE"))
    assert wire.call_of(message, {}).http_verb == "DELETE"
    assert wire.decode_headers(b"not json") == {}
    assert wire.decode_headers(b'[["a","b"],[1,2],"x"]') == {"a": "b"}
