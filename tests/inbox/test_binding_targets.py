"""The deliverer for a target that is not a pub/sub subscription (an input binding), and the
bindings' inbound retry defaults."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge_runtime.appchannel import Outcome
from edge_runtime.config.loader import load_resources
from edge_runtime.inbox import Deliverer, InboxRow, RetryEventError, RetryPolicy, inbound_retry
from edge_runtime.runtime.binding_delivery import InputTarget
from tests.inbox.conftest import OpenInbox, received

DEFAULTS = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: defaults}
spec:
  policies:
    retries:
      DefaultPubsubComponentInboundRetryPolicy: {policy: constant, duration: 1s}
      DefaultBindingComponentInboundRetryPolicy: {policy: constant, duration: 2s}
      DefaultComponentInboundRetryPolicy: {policy: constant, duration: 3s}
      mine: {policy: constant, duration: 4s}
  targets:
    components:
      sensors: {inbound: {retry: mine}}
"""


def test_bindings_have_their_own_default_policy(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(DEFAULTS)
    retry, problems = inbound_retry(load_resources([tmp_path]).others, "app")
    assert problems == []
    assert retry.for_pubsub("p").duration_s == 1.0
    assert retry.for_binding("b").duration_s == 2.0
    assert retry.for_binding("sensors").duration_s == 4.0
    (tmp_path / "r.yaml").write_text(DEFAULTS.replace("DefaultBinding", "Unused"))
    retry, _ = inbound_retry(load_resources([tmp_path]).others, "app")
    assert retry.for_binding("b").duration_s == 3.0  # then the generic component default


async def test_binding_target_rows_retry_then_park(open_inbox: OpenInbox) -> None:
    inbox = await open_inbox()
    target = InputTarget("sensors", "sensors")
    await inbox.add(target.key, received(b"reading", topic="sensors"), None)
    calls: list[tuple[str, bytes]] = []

    async def deliver(t: InputTarget, row: InboxRow) -> Outcome:
        calls.append((t.name, row.data))
        raise RetryEventError("the state store is full")

    policy = RetryPolicy("constant", duration_s=0.0, max_retries=1, name="quick")
    seen: list[str] = []

    def lookup(component: str) -> RetryPolicy:
        seen.append(component)
        return policy

    ready = asyncio.Event()
    ready.set()
    deliverer = Deliverer(inbox, deliver, ready=ready, retry=lookup)
    await deliverer.start([target])
    for _ in range(200):
        if await inbox.deadletters():
            break
        await asyncio.sleep(0.01)
    await deliverer.stop()
    [dead] = await inbox.deadletters()
    assert (dead.sub_key, dead.attempts, dead.last_error) == (
        "binding:sensors", 2, "the state store is full")
    assert calls == [("sensors", b"reading")] * 2
    assert set(seen) == {"sensors"}  # the policy is looked up by the binding's name
