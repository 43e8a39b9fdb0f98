"""Inbound retry policies from Resiliency YAML; retry schedules; the deadletters command."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from edge_runtime.config.loader import load_resources
from edge_runtime.inbox import DEFAULT_RETRY, RetryPolicy, inbound_retry
from edge_runtime.inbox import deadletters as cli
from tests.inbox.conftest import OpenInbox, received

RESILIENCY = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: edge
spec:
  policies:
    retries:
      fixed:
        policy: constant
        duration: 2s
        maxRetries: 4
      backoff:
        policy: exponential
        maxInterval: 15s
        maxRetries: -1
        matching:
          httpStatusCodes: "500-599"
  targets:
    components:
      mqtt-pubsub:
        inbound:
          retry: backoff
        outbound:
          retry: fixed
      other:
        inbound:
          retry: fixed
"""


def _load(tmp_path: Path, text: str, name: str = "res.yaml") -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path


def test_policies_by_target_and_default(tmp_path: Path) -> None:
    res = load_resources([_load(tmp_path, RESILIENCY)])
    retry, problems = inbound_retry(res.others, "app")
    assert problems == []
    backoff = retry.for_pubsub("mqtt-pubsub")
    assert (backoff.kind, backoff.max_interval_s, backoff.max_retries, backoff.multiplier) == (
        "exponential", 15.0, -1, 1.5)
    fixed = retry.for_pubsub("other")
    assert (fixed.kind, fixed.duration_s, fixed.max_retries) == ("constant", 2.0, 4)
    assert retry.for_pubsub("unknown") is DEFAULT_RETRY


def test_default_policy_names(tmp_path: Path) -> None:
    text = RESILIENCY.replace("      backoff:", "      DefaultComponentRetryPolicy:\n"
                              "        policy: constant\n      backoff:")
    retry, problems = inbound_retry(load_resources([_load(tmp_path, text)]).others, "app")
    assert problems == []
    assert retry.for_pubsub("unknown").name == "DefaultComponentRetryPolicy"


def test_scopes_leave_other_apps_out(tmp_path: Path) -> None:
    text = RESILIENCY + "scopes: [someone-else]\n"
    retry, problems = inbound_retry(load_resources([_load(tmp_path, text)]).others, "app")
    assert problems == []
    assert retry.by_pubsub == {}
    retry, _ = inbound_retry(load_resources([_load(tmp_path, text)]).others, "someone-else")
    assert "mqtt-pubsub" in retry.by_pubsub


def test_bad_policies_have_file_and_line(tmp_path: Path) -> None:
    text = (RESILIENCY.replace("duration: 2s", "duration: soon")
            .replace("policy: exponential", "policy: fibonacci")
            .replace("          retry: fixed\n", "          retry: nope\n"))
    retry, problems = inbound_retry(load_resources([_load(tmp_path, text)]).others, "app")
    shown = [str(p) for p in problems]
    file = str(tmp_path / "res.yaml")
    assert len(shown) == 3, shown
    assert shown[0].startswith(f"{file}:10: resiliency 'edge': field 'spec.policies.retries."
                               "fixed.duration': expected a duration")
    assert shown[1].startswith(f"{file}:13:")
    assert "fibonacci" in shown[1]
    assert shown[2].startswith(f"{file}:27:")
    assert "'nope' is not defined" in shown[2]
    assert retry.by_pubsub == {}  # both policies were bad


def test_unknown_policy_field_and_bad_max_retries(tmp_path: Path) -> None:
    text = RESILIENCY.replace("maxRetries: 4", "maxRetries: lots\n        initialInterval: 1s")
    _retry, problems = inbound_retry(load_resources([_load(tmp_path, text)]).others, "app")
    shown = " | ".join(str(p) for p in problems)
    assert "res.yaml:11:" in shown
    assert "whole number" in shown
    assert "res.yaml:12:" in shown
    assert "unknown field" in shown


def test_retry_schedule() -> None:
    rng = random.Random(1)
    policy = RetryPolicy("exponential", initial_s=0.5, multiplier=2, max_interval_s=30,
                         max_retries=10)
    for n in range(1, 20):
        assert 0 <= policy.delay(n, rng) <= min(30, 0.5 * 2 ** (n - 1))
    assert not policy.exhausted(10)
    assert policy.exhausted(11)
    assert RetryPolicy("constant", duration_s=5).delay(3) == 5
    assert not RetryPolicy(max_retries=-1).exhausted(10**6)
    assert RetryPolicy(max_retries=0).exhausted(1)


async def test_cli_list_and_replay(open_inbox: OpenInbox, tmp_path: Path) -> None:
    inbox = await open_inbox()
    for i in range(3):
        await inbox.add("p|t", received(f"m{i}"), f"ev-{i}")
    rows = await inbox.head("p|t", 3)
    for row in rows:
        await inbox.park(row, reason="retries exhausted: 11 attempts", error="HTTP 500",
                         attempts=11)
    out, err = io.StringIO(), io.StringIO()
    args = ["list", "--data-dir", str(tmp_path)]
    assert cli.run(_parse(args), out, err) == 0
    table = out.getvalue().splitlines()
    assert table[0].split()[:3] == ["ID", "SUBSCRIPTION", "TOPIC"]
    assert "ev-1" in table[2]
    assert "retries exhausted" in table[2]
    assert "HTTP 500" in table[2]
    assert table[-1] == "3 dead letter(s)"
    ids = [r.id for r in await inbox.deadletters()]
    out = io.StringIO()
    assert cli.run(_parse(["replay", str(ids[0]), "--data-dir", str(tmp_path)]), out, err) == 0
    assert out.getvalue() == "replayed 1 dead letter(s)\n"
    err = io.StringIO()
    assert cli.run(_parse(["replay", "999", "--data-dir", str(tmp_path)]), out, err) == 1
    assert "not found" in err.getvalue()
    assert cli.run(_parse(["replay", "--all", "--data-dir", str(tmp_path)]), out, err) == 0
    assert await inbox.deadletters() == []
    assert [r.event_id for r in await inbox.head("p|t", 10)] == ["ev-0", "ev-1", "ev-2"]
    assert cli.run(_parse(["replay", "--data-dir", str(tmp_path)]), out, err) == 2
    out = io.StringIO()
    assert cli.run(_parse(args), out, err) == 0
    assert out.getvalue() == "no dead letters\n"


def test_cli_without_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list", "--data-dir", str(tmp_path)]) == 1
    assert "no inbox database" in capsys.readouterr().err
    (tmp_path / "inbox.db").write_bytes(b"not a database at all" * 100)
    assert cli.main(["replay", "--all", "--data-dir", str(tmp_path)]) == 1
    assert "not a usable inbox database" in capsys.readouterr().err


def _parse(argv: list[str]) -> object:
    import argparse

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)
