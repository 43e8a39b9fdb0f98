"""Resource YAML (Dapr's component format) → manifests, with ``file:line`` for every problem.

:func:`load_resources` is pure: it reads files and nothing else (no environment, no secrets, no
tokens; see ``config/resolve.py`` for those). It never raises on bad input: each problem becomes
a :class:`ConfigProblem` naming the file and 1-based line of the offending YAML node.

Rules (Dapr's, contract §6.1, unless marked *ours*):

* A path may be a folder (its top-level ``*.yaml``/``*.yml`` files, sorted by name; sub-folders
  are not read) or one file. A missing path is a problem.
* Files are multi-document (``---``); empty documents are skipped. *Ours*: a file over
  :data:`MAX_FILE_BYTES` (1 MiB) is a problem and is not parsed.
* ``kind: Component`` needs ``apiVersion: dapr.io/v1alpha1``. Other kinds are kept as
  :class:`RawResource` for the code that understands them.
* Metadata values may be strings, numbers or booleans and become text as Dapr's JSON-ish value
  does (``true`` → ``"true"``, ``5`` → ``"5"``, ``1.50`` → ``"1.5"``). YAML 1.1 booleans
  (``yes``, ``on``) count as booleans, as with Dapr's YAML → JSON conversion.
* *Ours*: unknown fields in ``spec``, ``auth``, a metadata entry or at the top level, duplicate
  mapping keys, duplicate metadata names (case-insensitive) and more than one value source in
  an entry are problems (Dapr ignores or silently picks one). ``metadata`` (Kubernetes'
  ObjectMeta: labels, annotations ...) may hold anything besides ``name``/``namespace``.
* A component document with any problem is left out of ``Resources.components``; a repeated
  component name is a problem naming both places, and the first one is kept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from edge_runtime.config.manifest import (
    ComponentManifest,
    ConfigProblem,
    Mark,
    MetadataItem,
    RawResource,
    Resources,
    SecretRef,
)
from edge_runtime.config.metadata import parse_duration

API_VERSION = "dapr.io/v1alpha1"
KNOWN_KINDS = ("Component", "Configuration", "HTTPEndpoint", "Resiliency", "Subscription")
DEFAULT_VERSION = "v1"
DEFAULT_INIT_TIMEOUT_S = 5.0
YAML_SUFFIXES = (".yaml", ".yml")
# *Ours*: component files are a few KB (certificates included); PyYAML reads ~1 MB/s on a Pi,
# so a bigger file is a mistake or an attack, answered at once instead of after minutes.
MAX_FILE_BYTES = 1024 * 1024

_TAG = "tag:yaml.org,2002:"
_TYPE = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+")
_BAD_NAME = re.compile(r"[\s/]|\|\|")
_TOP_KEYS = ("apiVersion", "kind", "metadata", "spec", "auth", "scopes")
_SPEC_KEYS = ("type", "version", "ignoreErrors", "initTimeout", "metadata")
_ENTRY_KEYS = ("name", "value", "envRef", "secretKeyRef")

Pairs = dict[str, tuple[ScalarNode, Node]]


def load_resources(paths: Sequence[Path]) -> Resources:
    """Read every resource document under ``paths``; never raises for bad input."""
    res = Resources()
    names: dict[str, Mark] = {}
    seen: set[Path] = set()
    for path in paths:
        for file in _files(path, res):
            key = file.absolute()
            if key not in seen:
                seen.add(key)
                _load_file(file, res, names)
    return res


def _files(path: Path, res: Resources) -> list[Path]:
    expected = "expected a folder of component YAML files or one YAML file"
    try:
        if path.is_file():
            return [path]
        if path.is_dir():
            found = [p for p in path.iterdir() if p.suffix.lower() in YAML_SUFFIXES]
            return sorted((p for p in found if p.is_file()), key=lambda p: p.name)
        what = "is not a file or folder" if path.exists() else "does not exist"
    except OSError as e:
        what = f"cannot be read ({e.strerror or e})"
    res.problems.append(ConfigProblem(None, f"resources path '{path}' {what}; {expected}"))
    return []


def _load_file(file: Path, res: Resources, names: dict[str, Mark]) -> None:
    name = str(file)
    try:
        size = file.stat().st_size
        if size > MAX_FILE_BYTES:
            msg = (f"the file is {size} bytes; a resource file may be at most {MAX_FILE_BYTES} "
                   "(split it, or look for what made it this big)")
            res.problems.append(ConfigProblem(Mark(name, 1), msg))
            return
        data = file.read_bytes()
    except OSError as e:
        res.problems.append(ConfigProblem(None, f"cannot read '{name}': {e.strerror or e}"))
        return
    res.files.append(name)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        msg = f"the file is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})"
        res.problems.append(ConfigProblem(Mark(name, line), msg))
        return
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)
        while loader.check_node():
            node = loader.get_node()
            if node is not None and not _is_null(node):
                _Document(loader, name, res, names).read(node)
    except yaml.MarkedYAMLError as e:
        res.problems.append(_syntax_problem(name, e))
    except yaml.reader.ReaderError as e:
        line = text[: e.position].count("\n") + 1
        char = chr(e.character) if isinstance(e.character, int) else e.character
        msg = f"invalid YAML: character {char!r} is not allowed in YAML text"
        res.problems.append(ConfigProblem(Mark(name, line), msg))
    except RecursionError:
        line = loader.get_mark().line + 1 if loader is not None else 1
        res.problems.append(ConfigProblem(Mark(name, line), "invalid YAML: nested too deeply"))
    finally:
        if loader is not None:
            loader.dispose()


def _syntax_problem(file: str, e: yaml.MarkedYAMLError) -> ConfigProblem:
    where = e.problem_mark or e.context_mark
    line = where.line + 1 if where is not None else 1
    what = e.problem or e.context or "not valid YAML"
    msg = f"invalid YAML: {what}"
    if e.context and e.problem and e.context_mark is not None:
        msg += f" ({e.context} at line {e.context_mark.line + 1})"
    if "\\t" in what or "\t" in what:
        msg += "; indent with spaces, YAML does not allow tabs"
    return ConfigProblem(Mark(file, line), msg)


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _TAG + "null"


def _tag(node: Node) -> str:
    return node.tag.removeprefix(_TAG) if isinstance(node, ScalarNode) else ""


def _describe(node: Node) -> str:
    """The node as a person would name it, for ``got ...``."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    tag = _tag(node)
    text = node.value if len(node.value) <= 60 else node.value[:57] + "..."
    if tag == "null":
        return "nothing (null)"
    if tag == "bool":
        return f"the boolean {text}"
    if tag in ("int", "float"):
        return f"the number {text}"
    return repr(text)


def _peek(node: Node, key: str) -> str | None:
    """The first string value of ``key`` in a mapping node, without judging anything else."""
    if isinstance(node, MappingNode):
        for k, v in node.value:
            if isinstance(k, ScalarNode) and k.value == key and _tag(v) == "str":
                return str(v.value)
    return None


def _label(name: str | None, type_: str | None) -> str:
    """``component 'name' (type)`` for messages, from what is readable."""
    if name is None:
        return ""
    return f"component {name!r}" + (f" ({type_})" if type_ is not None else "")


class _BadValueError(Exception):
    """A value that cannot be used; the message says what is expected."""


def _duration(node: Node) -> float:
    """A duration node in seconds; ``-1`` when it is not one."""
    if not isinstance(node, ScalarNode) or _tag(node) not in ("str", "int", "float"):
        return -1.0
    try:
        return parse_duration(str(node.value))
    except ValueError:
        return -1.0


def _json_number(value: float) -> str:
    """A float as Go's JSON encoder writes it (what Dapr's dynamic value holds)."""
    if not math.isfinite(value):
        raise _BadValueError(f"expected a string, number or boolean, got {value}; quote it")
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    if 1e-6 <= abs(value) < 1e21:
        from decimal import Decimal  # only here: decimal is 0.3 MiB of RSS

        return format(Decimal(repr(value)), "f")
    return re.sub(r"e([+-])0(\d)$", r"e\1\2", repr(value))


class _Document:
    """Reads one YAML document; collects its problems, then commits it to ``res``."""

    def __init__(
        self, loader: yaml.SafeLoader, file: str, res: Resources, names: dict[str, Mark]
    ) -> None:
        self.loader = loader
        self.file = file
        self.res = res
        self.names = names
        self.problems: list[ConfigProblem] = []
        self.label = ""

    def mark(self, node: Node) -> Mark:
        return Mark(self.file, node.start_mark.line + 1)

    def add(self, node: Node, message: str, field: str = "") -> None:
        self.problems.append(ConfigProblem(self.mark(node), message, self.label, field))

    # --- generic shapes ------------------------------------------------------------------

    def pairs(self, node: Node, field: str) -> Pairs | None:
        """A mapping's ``{key: (key node, value node)}``; ``None`` (and a problem) otherwise."""
        if not isinstance(node, MappingNode):
            self.add(node, f"expected a mapping, got {_describe(node)}", field)
            return None
        out: Pairs = {}
        for k, v in node.value:
            sub = f"{field}.{k.value}" if field and isinstance(k, ScalarNode) else field
            if not isinstance(k, ScalarNode):
                self.add(k, f"expected a text key, got {_describe(k)}", field)
            elif _tag(k) == "merge":
                self.add(k, "YAML merge keys (<<) are not supported; write the fields out", field)
            elif k.value in out:
                first = out[k.value][0].start_mark.line + 1
                self.add(k, f"key {k.value!r} is given twice (first at line {first})", sub)
            else:
                out[k.value] = (k, v)
        return out

    def only(self, pairs: Pairs, allowed: tuple[str, ...], field: str) -> None:
        for key, (k, _) in pairs.items():
            if key not in allowed:
                sub = f"{field}.{key}" if field else key
                self.add(k, f"unknown field; expected one of: {', '.join(allowed)}", sub)

    def text(
        self, pairs: Pairs, key: str, field: str, parent: Node, *, required: str = ""
    ) -> str | None:
        """A non-empty string field; with ``required`` (what to expect), missing is a problem."""
        sub = f"{field}.{key}" if field else key
        pair = pairs.get(key)
        if pair is None or _is_null(pair[1]):
            if required:
                self.add(pair[0] if pair else parent, f"is required: expected {required}", sub)
            return None
        k, v = pair
        if not isinstance(v, ScalarNode) or _tag(v) != "str":
            hint = " (quote it to make it text)" if isinstance(v, ScalarNode) else ""
            self.add(k, f"expected a string, got {_describe(v)}{hint}", sub)
            return None
        if not v.value.strip():
            self.add(k, f"must not be empty: expected {required or 'a string'}", sub)
            return None
        return str(v.value)

    def value_text(self, node: Node) -> str | None:
        """A metadata value as text (``None`` for null); raises :class:`_BadValueError`."""
        if not isinstance(node, ScalarNode):
            raise _BadValueError(f"expected a string, number or boolean, got {_describe(node)}")
        tag = _tag(node)
        if tag == "null":
            return None
        if tag == "bool":
            return "true" if self.loader.construct_yaml_bool(node) else "false"
        if tag == "int":
            try:
                return str(self.loader.construct_yaml_int(node))
            except ValueError:
                raise _BadValueError("expected a string, number or boolean, got a number too "
                           "large to read; quote it to make it text") from None
        if tag == "float":
            return _json_number(self.loader.construct_yaml_float(node))
        return str(node.value)

    # --- documents -----------------------------------------------------------------------

    def read(self, root: Node) -> None:
        """Read ``root`` and commit the result (and its problems) to the resources."""
        pairs = self._top(root)
        if pairs is not None:
            kind = self.text(pairs, "kind", "", root, required="a resource kind such as Component")
            if kind == "Component":
                self._component(root, pairs)
            elif kind is not None:
                self._other(root, pairs, kind)
        self.res.problems.extend(sorted(self.problems, key=lambda p: p.mark.line if p.mark else 0))

    def _top(self, root: Node) -> Pairs | None:
        if not isinstance(root, MappingNode):
            expected = "a resource (a mapping with apiVersion, kind, metadata and spec)"
            self.add(root, f"expected {expected}, got {_describe(root)}")
            return None
        return self.pairs(root, "")

    def _other(self, root: Node, pairs: Pairs, kind: str) -> None:
        for known in KNOWN_KINDS:
            if kind != known and kind.lower() == known.lower():
                self.add(pairs["kind"][0], f"expected {known!r} (kinds are case-sensitive)", "kind")
                return
        try:
            body = self.loader.construct_document(root)
        except (yaml.YAMLError, ValueError, TypeError) as e:
            self.add(root, f"cannot read this {kind} document: {e}")
            return
        meta = body.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        version = body.get("apiVersion")
        self.res.others.append(
            RawResource(
                kind, name if isinstance(name, str) else "",
                version if isinstance(version, str) else "", self.mark(root), body,
            )
        )

    def _component(self, root: Node, top: Pairs) -> None:
        marks: list[tuple[str, Mark]] = []
        # Missing fields are reported at the parent's key line (``spec:``), else the document's.
        meta_at, meta_node = top.get("metadata", (root, root))
        spec_at, spec_node = top.get("spec", (root, root))
        self.label = _label(
            _peek(meta_node, "name") if "metadata" in top else None,
            _peek(spec_node, "type") if "spec" in top else None,
        )
        meta = self.pairs(meta_node, "metadata") if "metadata" in top else {}
        spec = self.pairs(spec_node, "spec") if "spec" in top else {}
        self.only(top, _TOP_KEYS, "")
        version = self.text(top, "apiVersion", "", root, required=API_VERSION)
        if version is not None and version != API_VERSION:
            self.add(top["apiVersion"][0], f"expected {API_VERSION}, got {version!r}", "apiVersion")
        name = namespace = None
        if meta is not None:
            name = self.text(meta, "name", "metadata", meta_at, required="a component name")
            namespace = self.text(meta, "namespace", "metadata", meta_at)
        found = self._spec(spec_at, spec, marks)
        secret_store = self._auth(top, marks)
        scopes = self._scopes(top)
        if name is None or meta is None:
            return
        key = meta["name"][0]
        marks.append(("metadata.name", self.mark(key)))
        if _BAD_NAME.search(name):
            self.add(key, "a component name must not contain spaces, '/' or '||'", "metadata.name")
        first = self.names.setdefault(name, self.mark(key))
        if first != self.mark(key):
            self.add(key, f"component name {name!r} is already used at {first}; "
                     "names must be unique", "metadata.name")
        if self.problems or found is None:
            return
        type_, version_, ignore, timeout, items = found
        self.res.components.append(
            ComponentManifest(
                name=name, type=type_, version=version_, mark=self.mark(root),
                namespace=namespace or "", ignore_errors=ignore, init_timeout_s=timeout,
                metadata=items, secret_store=secret_store, scopes=scopes,
                field_marks=tuple(marks),
            )
        )

    def _spec(
        self, node: Node, spec: Pairs | None, marks: list[tuple[str, Mark]]
    ) -> tuple[str, str, bool, float, tuple[MetadataItem, ...]] | None:
        if spec is None:
            return None
        self.only(spec, _SPEC_KEYS, "spec")
        expected = "'<building block>.<name>' such as state.sqlite"
        type_ = self.text(spec, "type", "spec", node, required=expected)
        if type_ is not None and not _TYPE.fullmatch(type_):
            self.add(spec["type"][0], f"expected {expected}, got {type_!r}", "spec.type")
        version = self.text(spec, "version", "spec", node) or DEFAULT_VERSION
        marks.extend((f"spec.{k}", self.mark(spec[k][0])) for k in ("type", "version") if k in spec)
        ignore = False
        if "ignoreErrors" in spec and not _is_null(spec["ignoreErrors"][1]):
            k, v = spec["ignoreErrors"]
            if isinstance(v, ScalarNode) and _tag(v) == "bool":
                ignore = bool(self.loader.construct_yaml_bool(v))
            elif _tag(v) == "str" and v.value.lower() in ("true", "false"):
                ignore = v.value.lower() == "true"
            else:
                self.add(k, f"expected true or false, got {_describe(v)}", "spec.ignoreErrors")
        timeout = DEFAULT_INIT_TIMEOUT_S
        if "initTimeout" in spec and not _is_null(spec["initTimeout"][1]):
            k, v = spec["initTimeout"]
            timeout = _duration(v)
            if timeout <= 0:
                self.add(k, "expected a positive duration such as 5s, 500ms or 1m, "
                         f"got {_describe(v)}", "spec.initTimeout")
        items = self._metadata(spec["metadata"]) if "metadata" in spec else ()
        if type_ is None:
            return None
        return type_, version, ignore, timeout, items

    def _metadata(self, pair: tuple[ScalarNode, Node]) -> tuple[MetadataItem, ...]:
        key, node = pair
        if _is_null(node):
            return ()
        if not isinstance(node, SequenceNode):
            self.add(key, "expected a list of {name, value} entries, "
                     f"got {_describe(node)}", "spec.metadata")
            return ()
        items: list[MetadataItem] = []
        names: dict[str, int] = {}
        for i, entry in enumerate(node.value):
            path = f"spec.metadata[{i}]"
            pairs = self.pairs(entry, path)
            if pairs is None:
                continue
            self.only(pairs, _ENTRY_KEYS, path)
            name = self.text(pairs, "name", path, entry, required="the metadata name")
            item = self._entry(entry, pairs, path, name or "")
            if name is None:
                continue
            first = names.setdefault(name.lower(), pairs["name"][0].start_mark.line + 1)
            if first != pairs["name"][0].start_mark.line + 1:
                self.add(pairs["name"][0], f"metadata {name!r} is given twice (first at line "
                         f"{first}); names are matched case-insensitively", f"{path}.name")
            elif item is not None:
                items.append(item)
        return tuple(items)

    def _entry(self, entry: Node, pairs: Pairs, path: str, name: str) -> MetadataItem | None:
        value: str | None = None
        env: str | None = None
        ref: SecretRef | None = None
        sources: list[ScalarNode] = []
        source = entry
        if "value" in pairs:
            k, v = pairs["value"]
            try:
                value = self.value_text(v)
            except _BadValueError as e:
                self.add(k, str(e), f"{path}.value")
                return None
            if value:
                sources.append(k)
            source = k
        if "envRef" in pairs:
            env = self.text(pairs, "envRef", path, entry, required="an environment variable name")
            sources.append(pairs["envRef"][0])
            source = pairs["envRef"][0]
        if "secretKeyRef" in pairs:
            k, v = pairs["secretKeyRef"]
            sources.append(k)
            source = k
            ref_pairs = self.pairs(v, f"{path}.secretKeyRef")
            if ref_pairs is not None:
                sub = f"{path}.secretKeyRef"
                self.only(ref_pairs, ("name", "key"), sub)
                secret = self.text(ref_pairs, "name", sub, v, required="the secret's name")
                if secret is not None:
                    ref = SecretRef(secret, self.text(ref_pairs, "key", sub, v) or secret)
        if len(sources) > 1:
            self.add(sources[1], "give only one of value, envRef or secretKeyRef", path)
        return MetadataItem(name, self.mark(source), value, env, ref)

    def _auth(self, top: Pairs, marks: list[tuple[str, Mark]]) -> str | None:
        if "auth" not in top or _is_null(top["auth"][1]):
            return None
        node = top["auth"][1]
        pairs = self.pairs(node, "auth")
        if pairs is None:
            return None
        self.only(pairs, ("secretStore",), "auth")
        store = self.text(pairs, "secretStore", "auth", node)
        if store is not None:
            marks.append(("auth.secretStore", self.mark(pairs["secretStore"][0])))
        return store

    def _scopes(self, top: Pairs) -> tuple[str, ...]:
        if "scopes" not in top or _is_null(top["scopes"][1]):
            return ()
        key, node = top["scopes"]
        if not isinstance(node, SequenceNode):
            self.add(key, f"expected a list of app ids, got {_describe(node)}", "scopes")
            return ()
        scopes: list[str] = []
        for i, item in enumerate(node.value):
            if _tag(item) == "str" and item.value.strip():
                scopes.append(item.value)
            else:
                self.add(item, f"expected an app id, got {_describe(item)}", f"scopes[{i}]")
        return tuple(scopes)
