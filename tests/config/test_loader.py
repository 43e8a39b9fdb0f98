"""load_resources: daprd-style folders load cleanly; every broken input is a file:line problem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.config.loader import load_resources
from edge_runtime.config.manifest import Mark, MetadataItem, Resources, SecretRef

STATE = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
  namespace: default
  labels: {team: edge}
spec:
  type: state.sqlite
  version: v1
  ignoreErrors: true
  initTimeout: 1m30s
  metadata:
  - name: connectionString
    value: "data/state.db"
  - name: timeout
    value: 20s
  - name: busyTimeout
    value: 2s
  - name: disableWAL
    value: false
  - name: tableName
    value: state
  - name: metadataTableName
    value: metadata
  - name: cleanupInterval
    value: 1h
  - name: keyPrefix
    value: appid
auth:
  secretStore: localsecretstore
scopes:
- app1
- app2
"""

SECRETS = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: localsecretstore
spec:
  type: secretstores.local.file
  version: v1
  metadata:
  - name: secretsFile
    value: secrets.json
  - name: nestedSeparator
    value: ":"
  - name: multiValued
    value: "false"
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: envsecrets
spec:
  type: secretstores.local.env
  metadata:
  - name: prefix
    value: MYAPP_
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``components`` folder; the cwd is its parent so marks read components/x.yaml."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "components").mkdir()
    return Path("components")


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")


def load(folder: Path, text: str, name: str = "c.yaml") -> Resources:
    write(folder, name, text)
    return load_resources([folder])


def problems(res: Resources) -> list[str]:
    return [str(p) for p in res.problems]


def test_daprd_style_folder_loads_cleanly(folder: Path) -> None:
    write(folder, "state.yaml", STATE)
    write(folder, "secrets.yml", SECRETS)
    write(folder, "notes.txt", "not: [yaml")
    (folder / "sub").mkdir()
    write(folder / "sub", "ignored.yaml", "not: [yaml")
    res = load_resources([folder])
    assert res.problems == []
    assert res.files == ["components/secrets.yml", "components/state.yaml"]
    assert [c.name for c in res.components] == ["localsecretstore", "envsecrets", "statestore"]
    store, env, state = res.components
    assert state.type == "state.sqlite"
    assert state.block == "state"
    assert state.version == "v1"
    assert state.namespace == "default"
    assert state.ignore_errors is True
    assert state.init_timeout_s == 90.0
    assert state.secret_store == "localsecretstore"
    assert state.scopes == ("app1", "app2")
    assert state.mark == Mark("components/state.yaml", 1)
    assert state.mark_of("spec.type") == Mark("components/state.yaml", 8)
    assert state.mark_of("auth.secretStore") == Mark("components/state.yaml", 30)
    assert {i.name: i.value for i in state.metadata} == {
        "connectionString": "data/state.db", "timeout": "20s", "busyTimeout": "2s",
        "disableWAL": "false", "tableName": "state", "metadataTableName": "metadata",
        "cleanupInterval": "1h", "keyPrefix": "appid",
    }
    assert state.metadata[0].mark == Mark("components/state.yaml", 14)
    assert store.metadata[1].value == ":"
    assert store.ignore_errors is False
    assert store.init_timeout_s == 5.0
    assert env.version == "v1"  # the default
    assert env.mark == Mark("components/secrets.yml", 16)
    assert env.scopes == ()
    assert env.secret_store is None


def test_single_file_path_and_missing_path(folder: Path) -> None:
    write(folder, "state.yaml", STATE)
    res = load_resources([folder / "state.yaml", Path("elsewhere")])
    assert [c.name for c in res.components] == ["statestore"]
    assert problems(res) == [
        ("<resources>: resources path 'elsewhere' does not exist; "
        "expected a folder of component YAML files or one YAML file")
    ]


def test_same_file_twice_is_read_once(folder: Path) -> None:
    write(folder, "state.yaml", STATE)
    res = load_resources([folder, folder / "state.yaml"])
    assert res.problems == []
    assert len(res.components) == 1


def test_value_sources_and_json_like_values(folder: Path) -> None:
    res = load(folder, """\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata:
          name: s
        spec:
          type: state.sqlite
          metadata:
          - {name: a, value: true}
          - {name: b, value: 5}
          - {name: c, value: 1.50}
          - {name: d, value: "quoted"}
          - {name: e, value: 0x1F}
          - {name: f, value: yes}
          - {name: g, value: null}
          - {name: h, value: 2.0}
          - {name: i, value: 1e-7}
          - {name: j, value: 0.00001}
          - {name: k, value: 2024-01-02}
          - {name: l, value: ""}
          - {name: m}
          - {name: n, envRef: MY_VAR}
          - {name: o, value: "", envRef: MY_VAR}
          - {name: p, secretKeyRef: {name: db}}
          - {name: q, secretKeyRef: {name: db, key: password}}
          - name: r
            value: |
              two
              lines
        """)
    assert res.problems == []
    (comp,) = res.components
    got = {i.name: (i.value, i.env_ref, i.secret_ref) for i in comp.metadata}
    assert got == {
        "a": ("true", None, None), "b": ("5", None, None), "c": ("1.5", None, None),
        "d": ("quoted", None, None), "e": ("31", None, None), "f": ("true", None, None),
        "g": (None, None, None), "h": ("2", None, None), "i": ("1e-7", None, None),
        "j": ("0.00001", None, None), "k": ("2024-01-02", None, None), "l": ("", None, None),
        "m": (None, None, None), "n": (None, "MY_VAR", None), "o": ("", "MY_VAR", None),
        "p": (None, None, SecretRef("db", "db")), "q": (None, None, SecretRef("db", "password")),
        "r": ("two\nlines\n", None, None),
    }
    # The mark is the line of the key the value comes from.
    assert comp.metadata[0].mark.line == 8
    assert comp.metadata[-1] == MetadataItem("r", Mark("components/c.yaml", 26), "two\nlines\n")


def test_multi_document_file_with_other_kinds(folder: Path) -> None:
    res = load(folder, """\
        # leading comment
        ---
        apiVersion: dapr.io/v2alpha1
        kind: Subscription
        metadata:
          name: orders
        spec: {topic: orders, routes: {default: /orders}, pubsubname: mqtt}
        ---
        ---
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {name: a}
        spec: {type: pubsub.mqtt3}
        ---
        apiVersion: dapr.io/v1alpha1
        kind: Resiliency
        metadata: {name: r}
        spec: {policies: {}}
        """)
    assert res.problems == []
    assert [c.name for c in res.components] == ["a"]
    assert res.components[0].mark == Mark("components/c.yaml", 10)
    assert [(o.kind, o.name, o.api_version, o.mark.line) for o in res.others] == [
        ("Subscription", "orders", "dapr.io/v2alpha1", 3),
        ("Resiliency", "r", "dapr.io/v1alpha1", 15),
    ]
    assert res.others[0].body["spec"]["routes"] == {"default": "/orders"}


def test_empty_and_comment_only_files(folder: Path) -> None:
    write(folder, "a.yaml", "")
    write(folder, "b.yaml", "# nothing here\n")
    res = load_resources([folder])
    assert res.problems == []
    assert res.components == []
    assert res.files == ["components/a.yaml", "components/b.yaml"]


GOOD_HEAD = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.sqlite
"""
C = "components/c.yaml"
S = "component 'statestore' (state.sqlite)"

BROKEN = [
    pytest.param(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: [x\n",
        [(f"{C}:4: invalid YAML: expected ',' or ']', but got '<stream end>' "
         "(while parsing a flow sequence at line 3)")],
        id="syntax-error",
    ),
    pytest.param(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n\tname: x\n",
        [(f"{C}:4: invalid YAML: found character '\\t' that cannot start any token; "
         "indent with spaces, YAML does not allow tabs")],
        id="tabs",
    ),
    pytest.param(
        "- apiVersion: dapr.io/v1alpha1\n- kind: Component\n",
        [(f"{C}:1: expected a resource (a mapping with apiVersion, kind, metadata and spec), "
         "got a list")],
        id="not-a-mapping",
    ),
    pytest.param(
        "just text\n",
        [(f"{C}:1: expected a resource (a mapping with apiVersion, kind, metadata and spec), "
         "got 'just text'")],
        id="scalar-document",
    ),
    pytest.param(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  namespace: x\n"
        "spec:\n  type: state.sqlite\n",
        [f"{C}:3: field 'metadata.name': is required: expected a component name"],
        id="missing-name",
    ),
    pytest.param(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: s\nspec:\n"
        "  version: v1\n",
        [(f"{C}:5: component 's': field 'spec.type': is required: "
         "expected '<building block>.<name>' such as state.sqlite")],
        id="missing-type",
    ),
    pytest.param(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: s\n",
        [(f"{C}:1: component 's': field 'spec.type': is required: "
         "expected '<building block>.<name>' such as state.sqlite")],
        id="missing-spec",
    ),
    pytest.param(
        GOOD_HEAD.replace("state.sqlite", "sqlite"),
        [(f"{C}:6: component 'statestore' (sqlite): field 'spec.type': "
         "expected '<building block>.<name>' such as state.sqlite, got 'sqlite'")],
        id="bad-type-shape",
    ),
    pytest.param(
        GOOD_HEAD.replace("name: statestore", "name: my store"),
        [(f"{C}:4: component 'my store' (state.sqlite): field 'metadata.name': "
         "a component name must not contain spaces, '/' or '||'")],
        id="bad-name",
    ),
    pytest.param(
        GOOD_HEAD.replace("name: statestore", "name: 123"),
        [(f"{C}:4: field 'metadata.name': expected a string, got the number 123 "
         "(quote it to make it text)")],
        id="name-not-text",
    ),
    pytest.param(
        GOOD_HEAD.replace("dapr.io/v1alpha1", "dapr.io/v1"),
        [f"{C}:1: {S}: field 'apiVersion': expected dapr.io/v1alpha1, got 'dapr.io/v1'"],
        id="wrong-api-version",
    ),
    pytest.param(
        GOOD_HEAD.replace("apiVersion: dapr.io/v1alpha1\n", ""),
        [f"{C}:1: {S}: field 'apiVersion': is required: expected dapr.io/v1alpha1"],
        id="missing-api-version",
    ),
    pytest.param(
        GOOD_HEAD.replace("kind: Component\n", ""),
        [f"{C}:1: field 'kind': is required: expected a resource kind such as Component"],
        id="missing-kind",
    ),
    pytest.param(
        GOOD_HEAD.replace("kind: Component", "kind: component"),
        [f"{C}:2: field 'kind': expected 'Component' (kinds are case-sensitive)"],
        id="kind-case",
    ),
    pytest.param(
        GOOD_HEAD + "  ignoreErrors: maybe\n",
        [f"{C}:7: {S}: field 'spec.ignoreErrors': expected true or false, got 'maybe'"],
        id="bad-bool",
    ),
    pytest.param(
        GOOD_HEAD + "  initTimeout: soon\n",
        [(f"{C}:7: {S}: field 'spec.initTimeout': expected a positive duration such as 5s, "
         "500ms or 1m, got 'soon'")],
        id="bad-duration",
    ),
    pytest.param(
        GOOD_HEAD + "  initTimeout: 0s\n",
        [(f"{C}:7: {S}: field 'spec.initTimeout': expected a positive duration such as 5s, "
         "500ms or 1m, got '0s'")],
        id="zero-duration",
    ),
    pytest.param(
        GOOD_HEAD + "  metdata: []\n",
        [(f"{C}:7: {S}: field 'spec.metdata': unknown field; "
         "expected one of: type, version, ignoreErrors, initTimeout, metadata")],
        id="unknown-spec-field",
    ),
    pytest.param(
        GOOD_HEAD + "  type: state.redis\n",
        [f"{C}:7: {S}: field 'spec.type': key 'type' is given twice (first at line 6)"],
        id="duplicate-key",
    ),
    pytest.param(
        GOOD_HEAD + "  metadata: {connectionString: x}\n",
        [(f"{C}:7: {S}: field 'spec.metadata': expected a list of {{name, value}} entries, "
         "got a mapping")],
        id="metadata-not-a-list",
    ),
    pytest.param(
        GOOD_HEAD + "  metadata:\n  - connectionString\n  - value: x\n  - {name: a, valu: b}\n",
        [
            f"{C}:8: {S}: field 'spec.metadata[0]': expected a mapping, got 'connectionString'",
            f"{C}:9: {S}: field 'spec.metadata[1].name': is required: expected the metadata name",
            (f"{C}:10: {S}: field 'spec.metadata[2].valu': unknown field; "
            "expected one of: name, value, envRef, secretKeyRef"),
        ],
        id="bad-entry-shapes",
    ),
    pytest.param(
        GOOD_HEAD + "  metadata:\n  - name: a\n    value: 1\n  - name: b\n    value: [1, 2]\n"
        "  - name: c\n    value:\n      x: 1\n  - name: d\n    value: .inf\n",
        [
            (f"{C}:11: {S}: field 'spec.metadata[1].value': "
            "expected a string, number or boolean, got a list"),
            (f"{C}:13: {S}: field 'spec.metadata[2].value': "
            "expected a string, number or boolean, got a mapping"),
            (f"{C}:16: {S}: field 'spec.metadata[3].value': "
            "expected a string, number or boolean, got inf; quote it"),
        ],
        id="bad-values",
    ),
    pytest.param(
        GOOD_HEAD + "  metadata:\n  - name: a\n    value: x\n    envRef: A\n"
        "  - name: b\n    secretKeyRef: {key: k}\n  - name: c\n    envRef: 5\n",
        [
            (f"{C}:10: {S}: field 'spec.metadata[0]': give only one of value, envRef or "
            "secretKeyRef"),
            (f"{C}:12: {S}: field 'spec.metadata[1].secretKeyRef.name': is required: "
            "expected the secret's name"),
            (f"{C}:14: {S}: field 'spec.metadata[2].envRef': expected a string, got the number 5 "
            "(quote it to make it text)"),
        ],
        id="bad-sources",
    ),
    pytest.param(
        GOOD_HEAD + "  metadata:\n  - name: timeout\n    value: 1s\n  - name: Timeout\n"
        "    value: 2s\n",
        [(f"{C}:10: {S}: field 'spec.metadata[1].name': metadata 'Timeout' is given twice "
         "(first at line 8); names are matched case-insensitively")],
        id="duplicate-metadata-name",
    ),
    pytest.param(
        GOOD_HEAD + "scopes: app1\n",
        [f"{C}:7: {S}: field 'scopes': expected a list of app ids, got 'app1'"],
        id="scopes-not-a-list",
    ),
    pytest.param(
        GOOD_HEAD + "scopes:\n- app1\n- 42\n",
        [f"{C}:9: {S}: field 'scopes[1]': expected an app id, got the number 42"],
        id="scope-not-text",
    ),
    pytest.param(
        GOOD_HEAD + "auth:\n  secretstore: x\n",
        [f"{C}:8: {S}: field 'auth.secretstore': unknown field; expected one of: secretStore"],
        id="auth-typo",
    ),
    pytest.param(
        GOOD_HEAD + "status: {}\n",
        [(f"{C}:7: {S}: field 'status': unknown field; "
         "expected one of: apiVersion, kind, metadata, spec, auth, scopes")],
        id="unknown-top-level-field",
    ),
    pytest.param(
        "base: &b {type: state.sqlite}\n" + GOOD_HEAD.replace("  type: state.sqlite\n", "")
        + "  <<: *b\n",
        [
            (f"{C}:1: component 'statestore': field 'base': unknown field; "
            "expected one of: apiVersion, kind, metadata, spec, auth, scopes"),
            (f"{C}:6: component 'statestore': field 'spec.type': is required: "
            "expected '<building block>.<name>' such as state.sqlite"),
            (f"{C}:7: component 'statestore': field 'spec': YAML merge keys (<<) are not "
            "supported; write the fields out"),
        ],
        id="merge-key",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_broken_input_is_reported_with_file_and_line(
    folder: Path, text: str, expected: list[str]
) -> None:
    res = load(folder, text)
    assert problems(res) == expected
    assert res.components == []


def test_problems_in_one_document_do_not_hide_the_others(folder: Path) -> None:
    res = load(folder, GOOD_HEAD + "  initTimeout: soon\n---\n" + GOOD_HEAD.replace(
        "statestore", "other"))
    assert [p.mark for p in res.problems] == [Mark(C, 7)]
    assert [c.name for c in res.components] == ["other"]


def test_syntax_error_keeps_earlier_documents(folder: Path) -> None:
    res = load(folder, GOOD_HEAD + "---\nkey: [unclosed\n")
    assert [c.name for c in res.components] == ["statestore"]
    assert [p.mark for p in res.problems] == [Mark(C, 9)]


def test_duplicate_component_names_name_both_places(folder: Path) -> None:
    write(folder, "a.yaml", GOOD_HEAD)
    write(folder, "b.yaml", "# second\n" + GOOD_HEAD.replace("state.sqlite", "state.other"))
    res = load_resources([folder])
    assert problems(res) == [
        ("components/b.yaml:5: component 'statestore' (state.other): field 'metadata.name': "
        "component name 'statestore' is already used at components/a.yaml:4; "
        "names must be unique")
    ]
    assert [c.type for c in res.components] == ["state.sqlite"]


def test_not_utf8(folder: Path) -> None:
    (folder / "c.yaml").write_bytes(b"apiVersion: x\nkind: \xff\n")
    assert problems(load_resources([folder])) == [
        f"{C}:2: the file is not UTF-8 text (byte 0xff at offset 20)"
    ]


def test_control_character(folder: Path) -> None:
    (folder / "c.yaml").write_bytes(b"a: 1\nb: \x01\n")
    assert problems(load_resources([folder])) == [
        f"{C}:2: invalid YAML: character '\\x01' is not allowed in YAML text"
    ]


def test_deep_nesting_is_a_problem_not_a_crash(folder: Path) -> None:
    (folder / "c.yaml").write_text("a: " + "[" * 800 + "]" * 800 + "\n")
    (msg,) = problems(load_resources([folder]))
    assert msg.startswith(f"{C}:1: invalid YAML")


# --- never raises --------------------------------------------------------------------------

KEYS = st.sampled_from(
    ["apiVersion", "kind", "metadata", "spec", "name", "type", "version", "value", "envRef",
     "secretKeyRef", "key", "auth", "secretStore", "scopes", "ignoreErrors", "initTimeout"]
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
    st.sampled_from(["Component", "dapr.io/v1alpha1", "state.sqlite", "5s", "x"]),
)
TREES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=10,
)
ENTRIES = st.lists(
    st.dictionaries(st.sampled_from(["name", "value", "envRef", "secretKeyRef"]), TREES),
    max_size=4,
)
COMPONENTS = st.fixed_dictionaries(
    {"apiVersion": st.just("dapr.io/v1alpha1"), "kind": st.just("Component")},
    optional={
        "metadata": st.fixed_dictionaries({}, optional={"name": SCALARS}) | TREES,
        "spec": st.fixed_dictionaries(
            {}, optional={"type": SCALARS, "version": SCALARS, "ignoreErrors": SCALARS,
                          "initTimeout": SCALARS, "metadata": ENTRIES | TREES},
        ),
        "auth": st.dictionaries(st.just("secretStore"), SCALARS) | TREES,
        "scopes": st.lists(SCALARS, max_size=3) | TREES,
    },
)

FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def check_never_raises(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    res = load_resources([path.parent])
    for p in res.problems:
        assert p.mark is None or p.mark.line >= 1
        assert str(p)


@FUZZ
@given(text=st.text(max_size=300))
def test_random_text_never_raises(tmp_path: Path, text: str) -> None:
    check_never_raises(tmp_path / "c.yaml", text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_never_raises(tmp_path: Path, data: bytes) -> None:
    check_never_raises(tmp_path / "c.yaml", data)


@FUZZ
@given(docs=st.lists(COMPONENTS | st.dictionaries(KEYS, TREES, max_size=5), min_size=1,
                    max_size=3))
def test_random_resource_shapes_never_raise(tmp_path: Path, docs: list[object]) -> None:
    check_never_raises(tmp_path / "c.yaml", yaml.safe_dump_all(docs).encode())


@FUZZ
@given(pos=st.integers(0, len(STATE)), junk=st.binary(max_size=6), cut=st.integers(0, 6))
def test_damaged_valid_file_never_raises(tmp_path: Path, pos: int, junk: bytes, cut: int) -> None:
    base = STATE.encode()
    check_never_raises(tmp_path / "c.yaml", base[:pos] + junk + base[pos + cut:])
