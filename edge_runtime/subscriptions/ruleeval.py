"""How compiled rules evaluate (see :mod:`edge_runtime.subscriptions.rules` for the
semantics). Every function here returns a closure over the envelope; none raises for any
JSON value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["COMPARE", "MISSING", "Cond", "Eval", "and_", "compare", "not_", "or_", "path",
           "truthy"]


class _Missing:
    """The value of a path that does not resolve."""

    __slots__ = ()


MISSING = _Missing()
ERROR = None  # the tri-state "error" of a boolean expression (True / False / None)

Value = Any
Eval = Callable[[Mapping[str, Any]], Value]
Cond = Callable[[Mapping[str, Any]], bool | None]


def path(selectors: list[str | int]) -> Eval:
    """``event.a["b"][0]``: the value, or :data:`MISSING` when a step does not resolve."""
    steps = tuple(selectors)

    def get(event: Mapping[str, Any]) -> Any:
        cur: Any = event
        for step in steps:
            if isinstance(step, str):
                if not isinstance(cur, Mapping) or step not in cur:
                    return MISSING
                cur = cur[step]
            else:
                if not isinstance(cur, list) or not 0 <= step < len(cur):
                    return MISSING
                cur = cur[step]
        return cur

    return get


def truthy(fn: Eval) -> Cond:
    """A value used as a condition: a boolean is itself, anything else an error."""
    def cond(event: Mapping[str, Any]) -> bool | None:
        v = fn(event)
        return v if isinstance(v, bool) else ERROR

    return cond


def not_(fn: Cond) -> Cond:
    """``!``: an error stays an error."""
    def cond(event: Mapping[str, Any]) -> bool | None:
        v = fn(event)
        return None if v is None else not v

    return cond


def and_(a: Cond, b: Cond) -> Cond:
    """``&&``: false wins over an error, as in CEL."""
    def cond(event: Mapping[str, Any]) -> bool | None:
        x = a(event)
        if x is False:
            return False
        y = b(event)
        if y is False:
            return False
        return True if x is True and y is True else ERROR

    return cond


def or_(a: Cond, b: Cond) -> Cond:
    """``||``: true wins over an error, as in CEL."""
    def cond(event: Mapping[str, Any]) -> bool | None:
        x = a(event)
        if x is True:
            return True
        y = b(event)
        if y is True:
            return True
        return False if x is False and y is False else ERROR

    return cond


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    if isinstance(v, Mapping):
        return "map"
    return "other"


def _equal(x: Any, y: Any) -> bool:
    kx, ky = _kind(x), _kind(y)
    if kx != ky:
        return False
    if kx == "list":
        return len(x) == len(y) and all(_equal(a, b) for a, b in zip(x, y, strict=True))
    if kx == "map":
        return x.keys() == y.keys() and all(_equal(x[k], y[k]) for k in x)
    return bool(x == y)


_ORDERED = ("number", "string", "bool")
COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda x, y: x < y, "<=": lambda x, y: x <= y,
    ">": lambda x, y: x > y, ">=": lambda x, y: x >= y,
}
COMPARE["=="] = _equal
COMPARE["!="] = lambda x, y: not _equal(x, y)


def compare(op: str, a: Eval, b: Eval) -> Cond:
    """A comparison: false with a missing operand or kinds that do not compare."""
    test = COMPARE[op]
    ordering = op not in ("==", "!=")

    def cond(event: Mapping[str, Any]) -> bool:
        x, y = a(event), b(event)
        if x is MISSING or y is MISSING:
            return False
        if ordering:
            kind = _kind(x)
            if kind not in _ORDERED or kind != _kind(y):
                return False
            if kind == "number" and (_nan(x) or _nan(y)):
                return False
        return bool(test(x, y))

    return cond


def _nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)
