"""secretstores.local.env and secretstores.local.file, built through their factories."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edge_runtime.config.manifest import ComponentManifest, Mark
from edge_runtime.config.metadata import MetadataError, ResolvedMetadata, Value
from edge_runtime.errors import ComponentError
from edge_runtime.registry import ComponentContext
from edge_runtime.secretstores import (
    SecretNotFoundError,
    SecretStore,
    SecretStoreError,
    SecretStoreNotFoundError,
    secret_getter,
)
from edge_runtime.secretstores import env as env_store
from edge_runtime.secretstores import file as file_store

NESTED = {
    "db": {"user": "edge", "password": "pw", "port": 5432, "ratio": 1.50},
    "flags": [True, False, None],
    "plain": "text",
    "empty": {},
}


def ctx(tmp_path: Path, type_: str, **metadata: str) -> ComponentContext:
    manifest = ComponentManifest(name="secrets", type=type_, version="v1", mark=Mark("s.yaml", 1))
    values = [Value(k, v, Mark("s.yaml", 5)) for k, v in metadata.items()]
    return ComponentContext(
        manifest=manifest, metadata=ResolvedMetadata(values), app_id="app", data_dir=tmp_path
    )


async def make_file_store(tmp_path: Path, content: object, **metadata: str) -> SecretStore:
    (tmp_path / "secrets.json").write_text(json.dumps(content))
    store = file_store.create(ctx(tmp_path, "secretstores.local.file", secretsFile="secrets.json",
                                  **metadata))
    await store.init()
    return store


# --- env -----------------------------------------------------------------------------------

async def test_env_store_with_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("EDGE_")]:
        monkeypatch.delenv(name)  # e.g. CI's EDGE_RUNTIME_GPIO_SIM_VM
    monkeypatch.setenv("EDGE_DB", "pw")
    monkeypatch.setenv("EDGE_TOKEN", "t")
    monkeypatch.setenv("EDGE_", "exactly the prefix")
    monkeypatch.setenv("OTHER", "o")
    store = env_store.create(ctx(tmp_path, "secretstores.local.env", prefix="EDGE_"))
    assert isinstance(store, SecretStore)
    await store.init()
    assert await store.get_secret("DB") == {"DB": "pw"}
    with pytest.raises(SecretNotFoundError, match="environment variable 'EDGE_NOPE' is not set"):
        await store.get_secret("NOPE")
    with pytest.raises(SecretNotFoundError):
        await store.get_secret("")
    bulk = await store.bulk_get()
    assert bulk == {"DB": {"DB": "pw"}, "TOKEN": {"TOKEN": "t"}}
    await store.close()


async def test_env_store_never_hands_out_runtime_variables(tmp_path: Path) -> None:
    environ = {"DAPR_API_TOKEN": "x", "APP_API_TOKEN": "y", "dapr_http_port": "1", "HOME": "/h"}
    store = env_store.EnvSecretStore(environ=environ)
    for key in ("DAPR_API_TOKEN", "APP_API_TOKEN", "dapr_http_port"):
        with pytest.raises(SecretNotFoundError, match="not available from the environment"):
            store.get_secret_sync(key)
    assert await store.bulk_get() == {"HOME": {"HOME": "/h"}}
    # Checked on the full name: a prefix cannot be used to reach DAPR_* variables.
    assert await env_store.EnvSecretStore("DAPR_", environ).bulk_get() == {}
    assert env_store.create(ctx(tmp_path, "secretstores.local.env")).prefix == ""


# --- file ----------------------------------------------------------------------------------

async def test_file_store_flattens_nested_values(tmp_path: Path) -> None:
    store = await make_file_store(tmp_path, NESTED)
    assert isinstance(store, SecretStore)
    assert await store.get_secret("db:user") == {"db:user": "edge"}
    assert await store.get_secret("db:port") == {"db:port": "5432"}
    assert await store.get_secret("db:ratio") == {"db:ratio": "1.5"}
    assert store.get_secret_sync("flags:0") == {"flags:0": "true"}
    assert store.get_secret_sync("flags:2") == {"flags:2": ""}
    with pytest.raises(SecretNotFoundError, match="secret 'db' not found"):
        await store.get_secret("db")
    with pytest.raises(SecretNotFoundError):
        await store.get_secret("empty")
    assert await store.bulk_get() == {
        "db:user": {"db:user": "edge"}, "db:password": {"db:password": "pw"},
        "db:port": {"db:port": "5432"}, "db:ratio": {"db:ratio": "1.5"},
        "flags:0": {"flags:0": "true"}, "flags:1": {"flags:1": "false"},
        "flags:2": {"flags:2": ""}, "plain": {"plain": "text"},
    }
    await store.close()
    with pytest.raises(SecretStoreError, match="not initialised"):
        await store.get_secret("plain")


async def test_file_store_numbers_keep_their_written_text(tmp_path: Path) -> None:
    (tmp_path / "secrets.json").write_text('{"n": 1.50, "big": 12345678901234567890123}')
    store = file_store.create(ctx(tmp_path, "secretstores.local.file", secretsFile="secrets.json"))
    await store.init()
    assert await store.bulk_get() == {"n": {"n": "1.50"}, "big": {"big": "12345678901234567890123"}}


async def test_file_store_separator_and_multi_valued(tmp_path: Path) -> None:
    store = await make_file_store(tmp_path, NESTED, nestedSeparator=".")
    assert await store.get_secret("db.password") == {"db.password": "pw"}
    multi = await make_file_store(tmp_path, NESTED, multiValued="true", nestedSeparator="/")
    assert await multi.get_secret("db") == {
        "user": "edge", "password": "pw", "port": "5432", "ratio": "1.5",
    }
    assert await multi.get_secret("plain") == {"plain": "text"}
    assert await multi.get_secret("flags") == {"0": "true", "1": "false", "2": ""}
    assert await multi.get_secret("empty") == {}
    assert set(await multi.bulk_get()) == {"db", "flags", "plain", "empty"}
    nested = await make_file_store(tmp_path, {"a": {"b": {"c": "x"}}}, multiValued="true")
    assert await nested.get_secret("a") == {"b:c": "x"}
    # An empty separator means the default, as in Dapr.
    default = await make_file_store(tmp_path, NESTED, nestedSeparator="")
    assert "db:user" in await default.bulk_get()


async def test_file_store_returns_copies(tmp_path: Path) -> None:
    store = await make_file_store(tmp_path, {"a": "1"})
    (await store.get_secret("a"))["a"] = "changed"
    assert await store.get_secret("a") == {"a": "1"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param('{"a": 1,\n "b": }', r"is not valid JSON: Expecting value at line 2 column 7",
                     id="bad-json"),
        pytest.param('["a"]', "must hold a JSON object at the top level, got list",
                     id="not-an-object"),
        pytest.param('{"a": NaN}', "NaN is not valid JSON", id="nan"),
        pytest.param('{"a:b": "1", "a": {"b": "2"}}',
                     "two entries flatten to the name 'a:b' \\(nestedSeparator ':'\\)",
                     id="clash"),
        pytest.param(b"\xff\xfe", "cannot read secretsFile", id="not-utf8"),
    ],
)
async def test_file_store_bad_files_are_clear_component_errors(
    tmp_path: Path, content: str | bytes, message: str
) -> None:
    path = tmp_path / "secrets.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    store = file_store.create(ctx(tmp_path, "secretstores.local.file", secretsFile="secrets.json"))
    with pytest.raises(ComponentError, match=message) as err:
        await store.init()
    assert str(err.value).startswith("component 'secrets' (secretstores.local.file): ")
    assert err.value.__cause__ is None  # no library traceback chained to the message


async def test_file_store_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    # Not under the data dir, but next to where the runtime runs: found there.
    (work / "local.json").write_text('{"where": "cwd"}')
    store = file_store.create(ctx(data_dir, "secretstores.local.file", secretsFile="local.json"))
    await store.init()
    assert await store.get_secret("where") == {"where": "cwd"}
    # The data dir wins when both exist.
    (data_dir / "local.json").write_text('{"where": "data"}')
    await store.init()
    assert await store.get_secret("where") == {"where": "data"}
    # Absolute paths are used as given.
    absolute = file_store.create(
        ctx(data_dir, "secretstores.local.file", secretsFile=str(work / "local.json"))
    )
    await absolute.init()
    assert await absolute.get_secret("where") == {"where": "cwd"}
    # Neither exists: the error names both places.
    missing = file_store.create(ctx(data_dir, "secretstores.local.file", secretsFile="nope.json"))
    with pytest.raises(ComponentError) as err:
        await missing.init()
    assert str(err.value) == (
        "component 'secrets' (secretstores.local.file): secretsFile not found (looked for "
        f"'{data_dir / 'nope.json'}' or '{work / 'nope.json'}')"
    )


def test_file_store_metadata_errors(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match=r"spec\.metadata\.secretsFile'?: is required"):
        file_store.create(ctx(tmp_path, "secretstores.local.file"))
    with pytest.raises(MetadataError, match="must name a JSON file"):
        file_store.create(ctx(tmp_path, "secretstores.local.file", secretsFile=" "))
    with pytest.raises(MetadataError, match=r"multiValued'?: expected true or false"):
        file_store.create(ctx(tmp_path, "secretstores.local.file", secretsFile="s.json",
                              multiValued="sometimes"))


# --- the sync accessor ---------------------------------------------------------------------

async def test_secret_getter(tmp_path: Path) -> None:
    store = await make_file_store(tmp_path, NESTED, multiValued="true")
    get = secret_getter({"vault": store, "env": env_store.EnvSecretStore(environ={"A": "1"})})
    assert get("vault", "db", "password") == "pw"
    assert get("env", "A", "A") == "1"
    with pytest.raises(SecretStoreNotFoundError, match=r"no secret store named 'x' is loaded "
                       r"\(secret stores: env, vault\)"):
        get("x", "db", "password")
    with pytest.raises(SecretNotFoundError, match="secret 'db' has no key 'pass'"):
        get("vault", "db", "pass")
    with pytest.raises(LookupError):
        get("vault", "nope", "nope")
