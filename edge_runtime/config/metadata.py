"""Typed decoding of a component's ``spec.metadata`` into a per-component dataclass.

A component declares its metadata as a frozen dataclass; each field is one metadata name::

    @dataclass(frozen=True)
    class SqliteMetadata:
        connection_string: str = meta("connectionString", aliases=("url",), required=True)
        timeout: float = meta("timeout", kind="duration", default=20.0)

Names match case-insensitively (as Dapr's decoder does). Supported kinds: ``str``, ``int``,
``float``, ``bool``, ``duration`` (Go syntax such as ``20s``, ``1h30m``, ``500ms``; a plain
number means seconds; the result is float seconds) and ``choice`` (``choices=(...)``, matched
case-insensitively, the result is the declared spelling). :func:`decode` collects every problem
and raises :class:`MetadataError` listing them all, each with ``file:line``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from edge_runtime.config.manifest import ComponentManifest, ConfigProblem, Mark

Kind = Literal["str", "int", "float", "bool", "duration", "choice"]
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

# The attribute a factory carries to declare its metadata dataclass (see declare_metadata).
METADATA_CLASS_ATTR = "metadata_class"

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off", ""}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class MetadataError(Exception):
    """One or more metadata values are invalid; ``problems`` says where and why."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Value:
    """A resolved metadata value: the name as written, the final string, where it was written."""

    name: str
    value: str
    mark: Mark


class ResolvedMetadata(Mapping[str, Value]):
    """Metadata after env, secret and token resolution; keys are matched case-insensitively."""

    def __init__(self, values: list[Value] | None = None) -> None:
        self._values: dict[str, Value] = {v.name.lower(): v for v in values or []}

    def __getitem__(self, name: str) -> Value:
        return self._values[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return (v.name for v in self._values.values())

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def text(self, name: str, default: str = "") -> str:
        """The string value of ``name`` or ``default``."""
        v = self._values.get(name.lower())
        return v.value if v is not None else default

    def as_dict(self) -> dict[str, str]:
        """``{name: value}`` with names as written."""
        return {v.name: v.value for v in self._values.values()}


def meta(
    name: str,
    *,
    kind: Kind = "str",
    default: Any = None,
    aliases: tuple[str, ...] = (),
    required: bool = False,
    choices: tuple[str, ...] = (),
    minimum: float | None = None,
    maximum: float | None = None,
    help: str = "",  # shadows the builtin on purpose: reads naturally where declared
) -> Any:
    """Declare a dataclass field as the metadata entry ``name``."""
    info = {
        "name": name,
        "kind": kind,
        "aliases": aliases,
        "required": required,
        "choices": choices,
        "minimum": minimum,
        "maximum": maximum,
        "help": help,
    }
    return dataclasses.field(default=default, metadata=info)


def parse_duration(text: str) -> float:
    """Go-style duration or plain seconds → seconds. Raises ``ValueError``."""
    s = text.strip()
    try:
        return float(s)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(text)
    return total


def parse_bool(text: str) -> bool:
    """``true/false/1/0/yes/no/on/off`` (case-insensitive). Raises ``ValueError``."""
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise ValueError(text)


def _convert(raw: str, info: Mapping[str, Any]) -> Any:
    kind: Kind = info["kind"]
    if kind == "str":
        return raw
    if kind == "bool":
        return parse_bool(raw)
    if kind == "choice":
        for choice in info["choices"]:
            if raw.strip().lower() == choice.lower():
                return choice
        raise ValueError(raw)
    number: float
    if kind == "int":
        number = int(raw.strip())
    elif kind == "float":
        number = float(raw.strip())
    else:
        number = parse_duration(raw)
    lo, hi = info["minimum"], info["maximum"]
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise ValueError(raw)
    return number


def _expected(info: Mapping[str, Any]) -> str:
    kind: Kind = info["kind"]
    what = {
        "str": "a string",
        "int": "a whole number",
        "float": "a number",
        "bool": "true or false",
        "duration": "a duration such as 20s, 500ms or 1h (a plain number means seconds)",
        "choice": "one of " + ", ".join(info["choices"]),
    }[kind]
    lo, hi = info["minimum"], info["maximum"]
    if lo is not None and hi is not None:
        what += f" from {lo:g} to {hi:g}"
    elif lo is not None:
        what += f" of at least {lo:g}"
    elif hi is not None:
        what += f" of at most {hi:g}"
    return what


def decode(
    cls: type[T],
    md: ResolvedMetadata,
    manifest: ComponentManifest,
    *,
    unresolved: Collection[str] = (),
) -> T:
    """Build ``cls`` from ``md``; raise :class:`MetadataError` listing every bad or missing entry.

    ``unresolved`` names entries whose values are not known yet (``envRef``/``secretKeyRef``
    while validating without secrets): a required entry among them counts as present and the
    result holds the field's default, so use such a result only to check the other values.
    """
    kwargs: dict[str, Any] = {}
    problems: list[ConfigProblem] = []
    pending = {n.lower() for n in unresolved}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        info = f.metadata
        if "name" not in info:
            continue
        names = (info["name"], *info["aliases"])
        found = next((md[n] for n in names if n in md), None)
        if found is None and any(n.lower() in pending for n in names):
            continue
        if found is None or (found.value == "" and info["kind"] != "str"):
            if info["required"]:
                problems.append(
                    ConfigProblem(
                        manifest.mark, f"is required: {_expected(info)}", manifest.describe(),
                        f"spec.metadata.{info['name']}",
                    )
                )
            continue
        try:
            kwargs[f.name] = _convert(found.value, info)
        except ValueError:
            problems.append(
                ConfigProblem(
                    found.mark,
                    f"expected {_expected(info)}, got {found.value!r}",
                    manifest.describe(),
                    f"spec.metadata.{found.name}",
                )
            )
    if problems:
        raise MetadataError(problems)
    return cls(**kwargs)


def problem(
    manifest: ComponentManifest, md: ResolvedMetadata, name: str, message: str
) -> MetadataError:
    """A :class:`MetadataError` for a cross-field check on entry ``name`` (its mark if present)."""
    mark = md[name].mark if name in md else manifest.mark
    return MetadataError(
        [ConfigProblem(mark, message, manifest.describe(), f"spec.metadata.{name}")]
    )


def declare_metadata(cls: type[Any]) -> Callable[[F], F]:
    """Decorate a component factory with the dataclass it decodes its metadata into.

    ``edge-runtime validate`` uses it (through :func:`declared_metadata`) to check metadata
    values with ``file:line`` without building the component. A factory that is a class may
    instead define a ``metadata_class`` class attribute.
    """

    def mark(factory: F) -> F:
        setattr(factory, METADATA_CLASS_ATTR, cls)
        return factory

    return mark


def declared_metadata(factory: object) -> type[Any] | None:
    """The metadata dataclass a factory declares, or ``None``."""
    cls = getattr(factory, METADATA_CLASS_ATTR, None)
    return cls if isinstance(cls, type) and dataclasses.is_dataclass(cls) else None
