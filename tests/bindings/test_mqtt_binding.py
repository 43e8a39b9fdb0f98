"""``bindings.mqtt``'s metadata, sides and output checks, and ``edge-runtime validate`` on the
three new binding types (the broker paths are in the conformance suite and tests/api)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edge_runtime.bindings import InvokeError
from edge_runtime.bindings.mqtt import MqttBinding, create
from edge_runtime.bindings.outboxed import OutboxedBinding
from edge_runtime.builtin import builtin_registry
from edge_runtime.config.manifest import ComponentManifest, Mark
from edge_runtime.config.metadata import MetadataError, ResolvedMetadata, Value
from edge_runtime.config.validate import validate
from edge_runtime.registry import ComponentContext

YAML = "components/m.yaml"


def make(tmp_path: Path, **values: str) -> MqttBinding:
    manifest = ComponentManifest("m", "bindings.mqtt3", "v1", Mark(YAML, 1))
    md = ResolvedMetadata([Value(k, v, Mark(YAML, 10 + i))
                           for i, (k, v) in enumerate(values.items())])
    return create(ComponentContext(manifest, md, "edge-app", tmp_path))


async def test_client_ids_and_sides(tmp_path: Path) -> None:
    both = make(tmp_path, url="tcp://127.0.0.1:1", topic="s/#")
    assert isinstance(both, OutboxedBinding)
    assert both.settings.producer.client_id == "edge-app-producer"  # the app id by default
    assert both.settings.consumer.client_id == "edge-app-consumer"
    assert both.relay_target is both.producer
    named = make(tmp_path, url="tcp://127.0.0.1:1", topic="s", consumerID="dev7")
    assert named.settings.consumer.client_id == "dev7-consumer"
    inbound = make(tmp_path, url="tcp://127.0.0.1:1", topic="s/+", direction="input")
    assert inbound.relay_target is None
    assert inbound.status == {"consumer.connected": "false"}
    with pytest.raises(InvokeError, match="no outbox"):
        await inbound.invoke("create", b"x", {})
    await inbound.close()
    await both.close()
    await named.close()


@pytest.mark.parametrize(("values", "message"), [
    ({"url": "tcp://h:1883"}, "spec.metadata.topic"),
    ({"url": "tcp://h:1883", "topic": "a/#/b"}, "'#' must be the whole last level"),
    ({"url": "http://h", "topic": "a"}, "the scheme must be one of"),
    ({"url": "tcp://h", "topic": "a", "maxMessages": "0"}, "maxMessages"),
])
def test_bad_metadata(tmp_path: Path, values: dict[str, str], message: str) -> None:
    with pytest.raises(MetadataError, match=message) as info:
        make(tmp_path, **values)
    assert "m.yaml:" in str(info.value)


def test_validate_checks_the_new_types(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(textwrap.dedent("""\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {name: uart}
        spec:
          type: bindings.serial
          version: v1
          metadata:
          - {name: port, value: /dev/ttyUSB0}
          - {name: framing, value: slip}
        ---
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {name: tick}
        spec:
          type: bindings.cron
          version: v1
          metadata: []
        ---
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {name: m}
        spec:
          type: bindings.mqtt3
          version: v1
          metadata:
          - {name: url, value: tcp://h:1883}
          - {name: topic, value: t}
          - {name: qos, value: "3"}
    """))
    problems = [str(p) for p in validate([tmp_path], registry=builtin_registry())]
    assert len(problems) == 3, problems
    assert "c.yaml:9" in problems[0]
    assert "line, length, fixed, raw" in problems[0]
    assert "spec.metadata.schedule" in problems[1]
    assert "c.yaml:28" in problems[2]
    assert "qos" in problems[2]
