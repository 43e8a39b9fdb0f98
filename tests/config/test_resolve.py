"""resolve_metadata: values, envRef, secretKeyRef through a real file store, tokens, scopes."""

from __future__ import annotations

import json
import socket
import textwrap
import uuid
from pathlib import Path

import pytest

from edge_runtime.config.loader import load_resources
from edge_runtime.config.manifest import ComponentManifest, Mark, MetadataItem, SecretRef
from edge_runtime.config.metadata import MetadataError, ResolvedMetadata
from edge_runtime.config.resolve import expand_tokens, in_scope, resolve_metadata
from edge_runtime.registry import ComponentContext
from edge_runtime.secretstores import SecretStore, secret_getter
from edge_runtime.secretstores.file import create as create_file_store

COMPONENTS = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: localsecretstore
spec:
  type: secretstores.local.file
  metadata:
  - name: secretsFile
    value: secrets.json
  - name: multiValued
    value: true
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: broker
spec:
  type: pubsub.mqtt3
  metadata:
  - name: url
    value: tcp://localhost:1883
  - name: consumerID
    value: "{appID}-{uuid}"
  - name: username
    envRef: BROKER_USER
  - name: password
    secretKeyRef:
      name: broker
      key: password
  - name: caCert
    secretKeyRef: {name: caCert}
  - name: qos
    value: 1
auth:
  secretStore: localsecretstore
scopes: [sensor]
"""


def manifest(*items: MetadataItem, store: str | None = None) -> ComponentManifest:
    return ComponentManifest(
        name="c", type="state.sqlite", version="v1", mark=Mark("c.yaml", 1),
        metadata=items, secret_store=store,
    )


def item(name: str, line: int, **kw: object) -> MetadataItem:
    return MetadataItem(name, Mark("c.yaml", line), **kw)  # type: ignore[arg-type]


def problems(err: pytest.ExceptionInfo[MetadataError]) -> list[str]:
    return [str(p) for p in err.value.problems]


@pytest.fixture
def loaded(tmp_path: Path) -> tuple[ComponentManifest, ComponentManifest]:
    (tmp_path / "components").mkdir()
    (tmp_path / "components" / "c.yaml").write_text(COMPONENTS)
    res = load_resources([tmp_path / "components"])
    assert res.problems == []
    store, broker = res.components
    return store, broker


async def file_store(tmp_path: Path, manifest: ComponentManifest) -> SecretStore:
    secrets = {"broker": {"password": "s3cret"}, "caCert": "PEM {appID}"}
    (tmp_path / "secrets.json").write_text(json.dumps(secrets))
    ctx = ComponentContext(
        manifest=manifest, metadata=resolve_metadata(manifest, app_id="sensor", environ={}),
        app_id="sensor", data_dir=tmp_path,
    )
    store: SecretStore = create_file_store(ctx)
    await store.init()
    return store


async def test_secret_key_ref_env_ref_and_tokens_end_to_end(
    tmp_path: Path, loaded: tuple[ComponentManifest, ComponentManifest]
) -> None:
    store_manifest, broker = loaded
    store = await file_store(tmp_path, store_manifest)
    md = resolve_metadata(
        broker, app_id="sensor", environ={"BROKER_USER": "edge"},
        get_secret=secret_getter({"localsecretstore": store}),
    )
    values = md.as_dict()
    prefix, _, generated = values["consumerID"].partition("-")
    assert prefix == "sensor"
    assert uuid.UUID(generated).version == 4
    assert values["username"] == "edge"
    assert values["password"] == "s3cret"
    assert values["caCert"] == "PEM sensor"  # key defaults to the name; tokens apply (as Dapr)
    assert values["qos"] == "1"
    assert md["PASSWORD"].mark.line == 27  # case-insensitive lookup, mark of secretKeyRef
    assert in_scope(broker, "sensor")
    assert not in_scope(broker, "other")
    assert in_scope(store_manifest, "anyone")


async def test_missing_secret_key_and_store_are_reported(
    tmp_path: Path, loaded: tuple[ComponentManifest, ComponentManifest]
) -> None:
    store_manifest, broker = loaded
    store = await file_store(tmp_path, store_manifest)
    broken = manifest(
        item("a", 3, secret_ref=SecretRef("broker", "user")),
        item("b", 4, secret_ref=SecretRef("nope", "nope")),
        store="localsecretstore",
    )
    getter = secret_getter({"localsecretstore": store})
    with pytest.raises(MetadataError) as err:
        resolve_metadata(broken, app_id="x", environ={}, get_secret=getter)
    assert problems(err) == [
        ("c.yaml:3: component 'c' (state.sqlite): field 'spec.metadata.a': secretKeyRef 'broker' "
        "key 'user' in secret store 'localsecretstore': secret 'broker' has no key 'user'"),
        ("c.yaml:4: component 'c' (state.sqlite): field 'spec.metadata.b': secretKeyRef 'nope' "
        "key 'nope' in secret store 'localsecretstore': secret 'nope' not found"),
    ]
    with pytest.raises(MetadataError) as err:
        resolve_metadata(broker, app_id="x", environ={"BROKER_USER": "u"},
                         get_secret=secret_getter({}))
    assert problems(err)[0].endswith(
        "secretKeyRef 'broker' key 'password' in secret store 'localsecretstore': "
        "no secret store named 'localsecretstore' is loaded (secret stores: none)"
    )


def test_secret_store_default_and_absence() -> None:
    m = manifest(item("a", 3, secret_ref=SecretRef("s", "k")))
    seen: list[tuple[str, str, str]] = []

    def getter(store: str, name: str, key: str) -> str:
        seen.append((store, name, key))
        return "v"

    md = resolve_metadata(m, app_id="x", environ={}, get_secret=getter,
                          default_secret_store="fallback")
    assert md.text("a") == "v"
    assert seen == [("fallback", "s", "k")]
    with pytest.raises(MetadataError) as err:
        resolve_metadata(m, app_id="x", environ={}, get_secret=getter)
    assert problems(err) == [
        ("c.yaml:3: component 'c' (state.sqlite): field 'spec.metadata.a': secretKeyRef 's' "
        "needs a secret store: set auth.secretStore to the name of a secretstores component")
    ]
    with pytest.raises(MetadataError) as err:
        resolve_metadata(manifest(*m.metadata, store="s"), app_id="x", environ={})
    assert problems(err)[0].endswith("secretKeyRef 's': secret stores are not available here")


def test_env_ref_rules() -> None:
    m = manifest(
        item("set", 3, env_ref="A"),
        item("empty-value", 4, value="", env_ref="A"),
        item("value-wins", 5, value="given"),
        item("missing", 6, env_ref="NOT_SET"),
        item("denied", 7, env_ref="DAPR_API_TOKEN"),
        item("denied-too", 8, env_ref="app_api_token"),
        item("nothing", 9),
    )
    with pytest.raises(MetadataError) as err:
        resolve_metadata(m, app_id="x", environ={"A": "from-env", "DAPR_API_TOKEN": "t"})
    assert problems(err) == [
        ("c.yaml:6: component 'c' (state.sqlite): field 'spec.metadata.missing': "
        "environment variable 'NOT_SET' (envRef) is not set"),
        ("c.yaml:7: component 'c' (state.sqlite): field 'spec.metadata.denied': envRef "
        "'DAPR_API_TOKEN' is not allowed: APP_API_TOKEN and DAPR_* variables are never passed "
        "to components"),
        ("c.yaml:8: component 'c' (state.sqlite): field 'spec.metadata.denied-too': envRef "
        "'app_api_token' is not allowed: APP_API_TOKEN and DAPR_* variables are never passed "
        "to components"),
    ]
    ok = manifest(*m.metadata[:3], m.metadata[6])
    md = resolve_metadata(ok, app_id="x", environ={"A": "from-env"})
    assert md.as_dict() == {
        "set": "from-env", "empty-value": "from-env", "value-wins": "given", "nothing": "",
    }
    assert isinstance(md, ResolvedMetadata)


def test_tokens() -> None:
    assert expand_tokens("{appID}", app_id="a") == "a"
    assert expand_tokens("{namespace}", app_id="a") == "a"
    assert expand_tokens("{namespace}", app_id="a", namespace="prod") == "prod.a"
    assert expand_tokens("{podName}", app_id="a") == socket.gethostname()
    assert expand_tokens("{podName}/{appID}", app_id="a", pod_name="pi-7") == "pi-7/a"
    first, second = expand_tokens("{uuid} {uuid}", app_id="a").split()
    assert first != second
    assert uuid.UUID(first).version == 4
    assert expand_tokens("{other} {APPID} plain", app_id="a") == "{other} {APPID} plain"
    assert expand_tokens("{appID}", app_id="{uuid}") == "{uuid}"  # not expanded twice


def test_tokens_through_yaml(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(textwrap.dedent("""\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {name: p}
        spec:
          type: pubsub.mqtt3
          metadata:
          - {name: consumerID, value: "{namespace}"}
        """))
    (m,) = load_resources([tmp_path]).components
    md = resolve_metadata(m, app_id="sensor", namespace="farm", environ={})
    assert md.text("consumerID") == "farm.sensor"
