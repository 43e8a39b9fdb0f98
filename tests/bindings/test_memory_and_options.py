"""``bindings.in-memory``'s operations, the common binding metadata, and Go's JSON encoding
of an HTTP request's ``data``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from edge_runtime.api.bindings import go_json
from edge_runtime.bindings import (
    BindingOptions,
    InvokeError,
    PubsubRoute,
    StateRoute,
    parse_options,
)
from edge_runtime.bindings.memory import MemoryBinding, create
from edge_runtime.builtin import builtin_registry
from edge_runtime.config.manifest import ComponentManifest, Mark
from edge_runtime.config.metadata import MetadataError, ResolvedMetadata, Value
from edge_runtime.config.validate import validate
from edge_runtime.registry import ComponentContext

YAML = "components/b.yaml"


def manifest() -> ComponentManifest:
    return ComponentManifest("b", "bindings.in-memory", "v1", Mark(YAML, 1))


def md(**values: str) -> ResolvedMetadata:
    return ResolvedMetadata(
        [Value(k, v, Mark(YAML, 10 + i)) for i, (k, v) in enumerate(values.items())]
    )


class TestMemoryOperations:
    async def test_create_get_list_delete(self) -> None:
        b = MemoryBinding("b")
        r = await b.invoke("create", b"one", {"key": "k1"})
        assert r is not None
        assert r.metadata == {"key": "k1", "emitted": "false"}  # input side not started
        r = await b.invoke("create", b"two", {})
        assert r is not None
        generated = r.metadata["key"]
        assert len(generated) == 32
        got = await b.invoke("get", b"", {"KEY": "k1"})  # metadata names are case-insensitive
        assert got is not None
        assert got.data == b"one"
        listed = await b.invoke("list", b"", {})
        assert listed is not None
        assert json.loads(listed.data) == ["k1", generated]
        assert await b.invoke("delete", b"", {"key": "k1"}) is None
        assert await b.invoke("delete", b"", {"key": "k1"}) is None  # missing: fine
        with pytest.raises(InvokeError, match="no item with key 'k1'"):
            await b.invoke("get", b"", {"key": "k1"})
        with pytest.raises(InvokeError, match="needs the metadata key"):
            await b.invoke("delete", b"", {})

    async def test_create_emits_with_the_request_metadata(self) -> None:
        b = MemoryBinding("b")
        seen: list[tuple[bytes, Mapping[str, str]]] = []

        async def handler(data: bytes, metadata: Mapping[str, str]) -> None:
            seen.append((data, metadata))

        await b.start(handler)
        r = await b.invoke("create", b"payload", {"key": "k", "color": "red"})
        assert r is not None
        assert r.metadata["emitted"] == "true"
        assert seen == [(b"payload", {"key": "k", "color": "red"})]

    async def test_a_failed_emit_keeps_nothing(self) -> None:
        b = MemoryBinding("b")

        async def handler(data: bytes, metadata: Mapping[str, str]) -> None:
            raise OSError("disk full")

        await b.start(handler)
        with pytest.raises(InvokeError, match="not stored: disk full"):
            await b.invoke("create", b"x", {"key": "k"})
        listed = await b.invoke("list", b"", {})
        assert listed is not None
        assert json.loads(listed.data) == []

    async def test_max_items_forgets_the_oldest(self, tmp_path: Path) -> None:
        ctx = ComponentContext(manifest(), md(maxItems="2"), "app", tmp_path)
        b = create(ctx)
        for key in ("a", "b", "c"):
            await b.invoke("create", key.encode(), {"key": key})
        await b.invoke("create", b"a2", {"key": "b"})  # a rewrite makes it the newest
        listed = await b.invoke("list", b"", {})
        assert listed is not None
        assert json.loads(listed.data) == ["c", "b"]


class TestOptions:
    def test_defaults(self) -> None:
        assert parse_options(manifest(), md()) == BindingOptions()

    @pytest.mark.parametrize(
        ("direction", "inp", "out"),
        [("input", True, False), ("output", False, True), (" Input , OUTPUT ", True, True)],
    )
    def test_direction(self, direction: str, inp: bool, out: bool) -> None:
        opts = parse_options(manifest(), md(direction=direction))
        assert (opts.input, opts.output, opts.direction_given) == (inp, out, True)

    def test_route_and_targets(self) -> None:
        opts = parse_options(manifest(), md(route="/in", targetPubsub="p", targetTopic="t/1"))
        assert opts.route == "/in"
        assert opts.target == PubsubRoute("p", "t/1")
        opts = parse_options(manifest(), md(targetStateStore="s", targetKey="latest"))
        assert opts.target == StateRoute("s", "latest")

    def test_every_problem_is_reported_with_its_line(self) -> None:
        with pytest.raises(MetadataError) as info:
            parse_options(manifest(), md(direction="inbound", targetPubsub="p",
                                         targetKey="k"))
        text = str(info.value)
        assert f"{YAML}:10" in text
        assert "expected input, output or input,output, got 'inbound'" in text
        assert f"{YAML}:11" in text
        assert "targetPubsub needs targetTopic" in text
        assert "targetKey needs targetStateStore" in text

    def test_both_targets_or_an_output_only_target_are_refused(self) -> None:
        with pytest.raises(MetadataError, match="not both"):
            parse_options(manifest(), md(targetPubsub="p", targetTopic="t",
                                         targetStateStore="s", targetKey="k"))
        with pytest.raises(MetadataError, match="route input events"):
            parse_options(manifest(), md(direction="output", targetPubsub="p",
                                         targetTopic="t"))

    def test_validate_checks_binding_metadata(self, tmp_path: Path) -> None:
        (tmp_path / "b.yaml").write_text(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: b}\n"
            "spec:\n  type: bindings.in-memory\n  version: v1\n  metadata:\n"
            "  - {name: maxItems, value: lots}\n"
        )
        problems = validate([tmp_path], registry=builtin_registry())
        assert [p.field for p in problems] == ["spec.metadata.maxItems"]
        assert problems[0].mark is not None
        assert problems[0].mark.line == 8


class TestGoJson:
    @pytest.mark.parametrize(
        ("value", "encoded"),
        [
            ("hi", b'"hi"'),  # a string keeps its quotes (contract §2.5)
            (None, b"null"),  # no data at all
            ({"b": 1, "a": [1.0, 2.5, True]}, b'{"a":[1,2.5,true],"b":1}'),  # sorted keys
            ("<a&b>", b'"\\u003ca\\u0026b\\u003e"'),  # Go's HTML-safe escaping
            ("h\u00e9\u2028", '"h\u00e9\\u2028"'.encode()),  # UTF-8 kept, U+2028 escaped
            (1e21, b"1e+21"),
        ],
    )
    def test_like_go(self, value: object, encoded: bytes) -> None:
        assert go_json(value) == encoded
