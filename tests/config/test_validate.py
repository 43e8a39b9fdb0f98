"""validate: loader problems plus unknown types and typed metadata, sorted by file and line."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_runtime.config.metadata import declare_metadata, meta
from edge_runtime.config.validate import validate
from edge_runtime.registry import ComponentContext, Registry
from edge_runtime.secretstores import env, file


@dataclass(frozen=True)
class DummyMetadata:
    connection_string: str = meta("connectionString", aliases=("url",), required=True)
    timeout: float = meta("timeout", kind="duration", default=20.0, minimum=1.0)
    disable_wal: bool = meta("disableWAL", kind="bool", default=False)
    busy_timeout: float = meta("busyTimeout", kind="duration", default=2.0)
    cleanup_interval: float = meta("cleanupInterval", kind="duration", default=0.0)
    table_name: str = meta("tableName", default="state")
    mode: str = meta("mode", kind="choice", choices=("fast", "safe"), default="safe")


@declare_metadata(DummyMetadata)
def dummy_factory(ctx: ComponentContext) -> object:
    return object()


class ClassFactory:
    """A factory that is a class declares its metadata with a class attribute."""

    metadata_class = DummyMetadata

    def __init__(self, ctx: ComponentContext) -> None:
        self.ctx = ctx


def undeclared(ctx: ComponentContext) -> object:
    return object()


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.register("state.dummy", dummy_factory)
    reg.register("state.classy", ClassFactory, versions=("v1", "v2"))
    reg.register("pubsub.plain", undeclared)
    reg.register("secretstores.local.env", env.create)
    reg.register("secretstores.local.file", file.create)
    return reg


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "components").mkdir()
    return Path("components")


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(textwrap.dedent(text))


def component(name: str, type_: str, *metadata: str, extra: str = "") -> str:
    """A component document; its metadata entries start at line 8."""
    lines = [
        "apiVersion: dapr.io/v1alpha1", "kind: Component", "metadata:", f"  name: {name}",
        "spec:", f"  type: {type_}", "  metadata:", *metadata,
    ]
    return "\n".join(lines) + "\n" + extra


STORES = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: vault}
spec:
  type: secretstores.local.file
  metadata:
  - {name: secretsFile, value: secrets.json}
  - {name: multiValued, value: true}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: envsecrets}
spec:
  type: secretstores.local.env
  metadata:
  - {name: prefix, value: EDGE_}
"""


def run(folder: Path, registry: Registry, **kw: str) -> list[str]:
    return [str(p) for p in validate([folder], registry=registry, **kw)]


def test_clean_folder(folder: Path, registry: Registry) -> None:
    write(folder, "stores.yaml", STORES)
    write(folder, "state.yaml", component(
        "statestore", "state.dummy",
        "  - {name: url, value: data.db}", "  - {name: timeout, value: 30s}",
        "  - {name: disableWAL, value: true}", "  - {name: mode, value: FAST}",
        "  - {name: tableName, value: '{appID}_state'}", "  - {name: unknownIsFine, value: x}",
    ))
    write(folder, "other.yaml", component("p", "pubsub.plain", "  - {name: any, value: thing}"))
    assert run(folder, registry) == []


def test_bad_values_unknown_types_sorted_by_file_and_line(
    folder: Path, registry: Registry
) -> None:
    write(folder, "b.yaml", component(
        "statestore", "state.dummy",
        "  - name: timeout", "    value: soon",
        "  - name: disableWAL", "    value: maybe",
        "  - name: mode", "    value: turbo",
        "  - name: busyTimeout", "    value: 0.5",
    ))
    write(folder, "a.yaml", component("x", "state.nosuch") + "---\n" + component(
        "y", "state.classy", "  - {name: connectionString, value: db}", extra="  version: v9\n",
    ) + "---\n" + component("z", "state.dummy", "  - {name: timeout, value: 0.5}"))
    write(folder, "c.yaml", "kind: Component\nmetadata: {name: [\n")
    s = "component 'statestore' (state.dummy)"
    assert run(folder, registry) == [
        ("components/a.yaml:6: component 'x' (state.nosuch): field 'spec.type': unknown component "
        "type 'state.nosuch'; known types: pubsub.plain, secretstores.local.env, "
        "secretstores.local.file, state.classy, state.dummy"),
        ("components/a.yaml:17: component 'y' (state.classy): field 'spec.version': component "
        "type 'state.classy' has no version 'v9'; supported: v1, v2"),
        ("components/a.yaml:19: component 'z' (state.dummy): field 'spec.metadata.connectionString'"
        ": is required: a string"),
        ("components/a.yaml:26: component 'z' (state.dummy): field 'spec.metadata.timeout': "
        "expected a duration such as 20s, 500ms or 1h (a plain number means seconds) of at "
        "least 1, got '0.5'"),
        (f"components/b.yaml:1: {s}: field 'spec.metadata.connectionString': is required: "
        "a string"),
        (f"components/b.yaml:9: {s}: field 'spec.metadata.timeout': expected a duration such as "
        "20s, 500ms or 1h (a plain number means seconds) of at least 1, got 'soon'"),
        (f"components/b.yaml:11: {s}: field 'spec.metadata.disableWAL': expected true or false, "
        "got 'maybe'"),
        (f"components/b.yaml:13: {s}: field 'spec.metadata.mode': expected one of fast, safe, "
        "got 'turbo'"),
        ("components/c.yaml:3: invalid YAML: expected the node content, but found '<stream end>'"
        " (while parsing a flow node at line 3)"),
    ]


def test_outbox_settings_of_a_pubsub(folder: Path, registry: Registry) -> None:
    write(folder, "p.yaml", component(
        "p", "pubsub.plain", "  - {name: durability, value: sometimes}",
        "  - {name: onFull, value: dropOldest}", "  - {name: maxMessages, value: none}",
    ))
    assert run(folder, registry) == [
        ("components/p.yaml:8: component 'p' (pubsub.plain): field 'spec.metadata.durability': "
         "expected one of full, normal, got 'sometimes'"),
        ("components/p.yaml:10: component 'p' (pubsub.plain): field 'spec.metadata.maxMessages': "
         "expected a whole number of at least 1, got 'none'"),
    ]


def test_env_and_secret_values_are_not_needed(folder: Path, registry: Registry) -> None:
    write(folder, "stores.yaml", STORES)
    write(folder, "state.yaml", component(
        "statestore", "state.dummy",
        "  - name: connectionString", "    secretKeyRef: {name: db, key: url}",
        "  - name: timeout", "    envRef: STATE_TIMEOUT",
        extra="auth:\n  secretStore: vault\n",
    ))
    assert run(folder, registry) == []


def test_secret_store_references(folder: Path, registry: Registry) -> None:
    write(folder, "stores.yaml", STORES)
    ref = ("  - name: connectionString", "    secretKeyRef: {name: db}")
    write(folder, "a.yaml", component("a", "state.dummy", *ref))
    write(folder, "b.yaml", component("b", "state.dummy", *ref, extra="auth: {secretStore: x}\n"))
    write(folder, "c.yaml", component("c", "state.dummy", *ref, extra="auth: {secretStore: a}\n"))
    stores = "secret stores: envsecrets, vault"
    assert run(folder, registry) == [
        ("components/a.yaml:9: component 'a' (state.dummy): field "
        "'spec.metadata.connectionString': secretKeyRef needs a secret store: set "
        "auth.secretStore to one of: envsecrets, vault"),
        (f"components/b.yaml:10: component 'b' (state.dummy): field 'auth.secretStore': secret "
        f"store 'x' is not defined; {stores}"),
        (f"components/c.yaml:10: component 'c' (state.dummy): field 'auth.secretStore': secret "
        f"store 'a' is not a secret store; {stores}"),
    ]
    assert run(folder, registry, default_secret_store="vault") == run(folder, registry)[1:]


def test_the_only_secret_store_is_the_default(folder: Path, registry: Registry) -> None:
    write(folder, "store.yaml", STORES.split("---")[0])
    write(folder, "a.yaml", component(
        "a", "state.dummy", "  - name: connectionString", "    secretKeyRef: {name: db}"))
    assert run(folder, registry) == []
    write(folder, "more.yaml", STORES.split("---")[1])
    assert len(run(folder, registry)) == 1  # two stores: the component must name one


def test_app_id_limits_checks_to_components_in_scope(folder: Path, registry: Registry) -> None:
    write(folder, "stores.yaml", STORES + "scopes: [other]\n")
    write(folder, "a.yaml", component("a", "state.nosuch", extra="scopes: [other]\n"))
    write(folder, "b.yaml", component(
        "b", "state.dummy", "  - name: connectionString", "    secretKeyRef: {name: db}",
        "  - {name: tableName, value: '{appID}'}", extra="auth: {secretStore: envsecrets}\n",
    ))
    assert [p[:20] for p in run(folder, registry, app_id="other")] == ["components/a.yaml:6:"]
    assert run(folder, registry, app_id="mine") == [
        ("components/b.yaml:11: component 'b' (state.dummy): field 'auth.secretStore': secret "
        "store 'envsecrets' is not in scope for app 'mine'")
    ]
    assert len(run(folder, registry)) == 1  # without an app id every component is checked


def test_path_problems_come_first(folder: Path, registry: Registry) -> None:
    write(folder, "a.yaml", component("x", "state.nosuch"))
    got = [str(p) for p in validate([folder, Path("missing")], registry=registry)]
    assert got[0].startswith("<resources>: resources path 'missing' does not exist")
    assert got[1].startswith("components/a.yaml:6:")


def test_subscriptions_and_resiliency_are_checked(folder: Path, registry: Registry) -> None:
    write(folder, "subs.yaml", """\
        apiVersion: dapr.io/v2alpha1
        kind: Subscription
        metadata: {name: orders}
        spec:
          pubsubname: pubsub
          topic: orders
          routes: {rules: [{match: 'event.type ==', path: /o}], default: /d}
          bogus: 1
        ---
        apiVersion: dapr.io/v2alpha1
        kind: Subscription
        metadata: {name: fine}
        spec: {pubsubname: pubsub, topic: fine, routes: {default: /f}}
        """)
    write(folder, "res.yaml", """\
        apiVersion: dapr.io/v1alpha1
        kind: Resiliency
        metadata: {name: res}
        spec:
          policies:
            retries:
              quick: {policy: sometimes, maxRetries: 3}
            timeouts:
              short: forever
          targets:
            apps:
              other: {timeout: short}
        """)
    out = run(folder, registry)
    by_file = {line.split(":")[0] for line in out}
    assert by_file == {"components/res.yaml", "components/subs.yaml"}, out
    assert any("subs.yaml:7:" in line and "match" in line for line in out), out
    assert any("subs.yaml:8:" in line and "unknown field" in line for line in out), out
    assert any("res.yaml:7:" in line and "sometimes" in line for line in out), out
    assert any("res.yaml:9:" in line for line in out), out
    assert not any("'fine'" in line for line in out), out


def test_subscriptions_out_of_scope_are_not_checked(folder: Path, registry: Registry) -> None:
    write(folder, "subs.yaml", """\
        apiVersion: dapr.io/v2alpha1
        kind: Subscription
        metadata: {name: orders}
        spec: {pubsubname: pubsub, topic: orders, routes: {default: 5}}
        scopes: [other]
        """)
    assert run(folder, registry, app_id="me") == []
    assert len(run(folder, registry, app_id="other")) == 1
