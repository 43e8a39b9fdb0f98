"""A compiler for the subset of CEL that subscription routing rules use (contract §3.1).

Rules see the CloudEvent envelope as the variable ``event``. Supported:

* field access from ``event``: ``event.type``, ``event.data.temp``, and indexing with a string
  or integer literal (``event.data["x-y"]``, ``event.data.items[0]``);
* literals: strings (``"..."`` or ``'...'`` with ``\\\\ \\" \\' \\n \\r \\t \\uXXXX`` escapes),
  numbers (``42``, ``-1.5``, ``2e3``), ``true``, ``false``, ``null``;
* ``==`` ``!=`` ``<`` ``<=`` ``>`` ``>=``, ``&&`` ``||`` ``!`` and parentheses, with CEL's
  precedence (``!`` binds tightest, then comparisons, then ``&&``, then ``||``).

Anything else (function calls, ``in``, arithmetic, ``?:``, other names) is rejected by
:func:`compile_rule` with a :class:`RuleError` naming the expression and the 1-based column.
``compile_rule`` raises nothing else, whatever the input.

Evaluation (:meth:`Rule.__call__`) never raises. Its semantics:

* a path that does not resolve (missing key, indexing a non-container) is *missing*; any
  comparison with a missing value is false (so ``event.x != 1`` is false when ``x`` is absent);
* ``==``/``!=`` compare values of the same kind (null, bool, number, string, list, map); values
  of different kinds are unequal (``1 == "1"`` is false, ``true == 1`` is false, ``1 == 1.0``
  is true); ordering compares numbers with numbers, strings with strings and bools with bools,
  otherwise it is false;
* ``&&``, ``||`` and ``!`` need booleans; a non-boolean operand (a missing field, a string) is
  an *error* value, absorbed as in CEL (``err || true`` is true, ``err && false`` is false) and
  otherwise making the whole rule not match.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edge_runtime.subscriptions.ruleeval import (
    COMPARE,
    MISSING,
    Cond,
    Eval,
    and_,
    compare,
    not_,
    or_,
    path,
    truthy,
)

__all__ = ["Rule", "RuleError", "compile_rule"]

MAX_LENGTH = 4096
MAX_DEPTH = 64


class RuleError(ValueError):
    """A rule expression is outside the supported subset; the message says where and why."""

    def __init__(self, expression: str, position: int, problem: str) -> None:
        shown = expression if len(expression) <= 200 else expression[:197] + "..."
        super().__init__(f"rule {shown!r}: column {position + 1}: {problem}")
        self.expression = expression
        self.position = position
        self.problem = problem


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """A compiled rule; call it with the envelope (a JSON object) to get whether it matches.

    Equality and hashing go by the source text.
    """

    source: str
    _fn: Cond

    def __call__(self, event: Mapping[str, Any]) -> bool:
        try:
            return self._fn(event) is True
        except Exception:  # noqa: BLE001 - a rule must never break delivery; not matching is safe
            return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    def __repr__(self) -> str:
        return f"Rule({self.source!r})"


def always() -> Rule:
    """A rule that matches every event (a rule written with an empty ``match``)."""
    return Rule("", lambda _e: True)


# --- tokens ------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<str>["'])
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!().\[\]-])
    """,
    re.VERBOSE,
)
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "r": "\r", "t": "\t", "/": "/"}
_UNSUPPORTED_OPS = {
    "+": "arithmetic is not supported", "*": "arithmetic is not supported",
    "/": "arithmetic is not supported", "%": "arithmetic is not supported",
    "?": "the conditional operator ?: is not supported", ":": "':' is not supported",
    "=": "use '==' to compare", "&": "use '&&'", "|": "use '||'",
    "{": "map literals are not supported", "}": "map literals are not supported",
    ",": "lists and function arguments are not supported",
}


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # num, name, str, op, end
    text: str
    pos: int
    value: Any = None


def _tokenize(src: str) -> list[_Tok]:
    """The tokens; a lexical error becomes a final ``bad`` token (carrying its
    :class:`RuleError`), raised only when the parser reaches it, so the leftmost problem is
    the one reported."""
    toks: list[_Tok] = []
    i = 0
    try:
        while i < len(src):
            i = _next_token(src, i, toks)
    except RuleError as exc:
        toks.append(_Tok("bad", src[exc.position:exc.position + 1], exc.position, exc))
    toks.append(_Tok("end", "", len(src)))
    return toks


def _next_token(src: str, i: int, toks: list[_Tok]) -> int:
    m = _TOKEN.match(src, i)
    if m is None:
        ch = src[i]
        hint = _UNSUPPORTED_OPS.get(ch, "unexpected character")
        raise RuleError(src, i, f"{hint} ({ch!r})")
    kind = m.lastgroup or ""
    if kind == "str":
        text, end = _string(src, i)
        toks.append(_Tok("str", src[i:end], i, text))
        return end
    if kind == "num":
        end = m.end()
        if end < len(src) and (src[end].isalpha() or src[end] == "_"):
            raise RuleError(src, end, "unsupported number suffix or malformed number")
        text = m.group()
        num: float | int = float(text) if any(c in text for c in ".eE") else int(text)
        if isinstance(num, float) and not math.isfinite(num):
            raise RuleError(src, i, "number out of range")
        toks.append(_Tok("num", text, i, num))
    elif kind != "ws":
        toks.append(_Tok(kind, m.group(), i))
    return m.end()


def _string(src: str, start: int) -> tuple[str, int]:
    quote = src[start]
    if src.startswith(quote * 3, start):
        raise RuleError(src, start, "triple-quoted strings are not supported")
    out: list[str] = []
    i = start + 1
    while i < len(src):
        ch = src[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch in "\r\n":
            break
        if ch == "\\":
            nxt = src[i + 1:i + 2]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            if nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", src[i + 2:i + 6]):
                code = int(src[i + 2:i + 6], 16)
                if 0xD800 <= code <= 0xDFFF:
                    raise RuleError(src, i, "surrogate code points are not allowed in strings")
                out.append(chr(code))
                i += 6
                continue
            raise RuleError(src, i, "unsupported escape sequence in string")
        out.append(ch)
        i += 1
    raise RuleError(src, start, "unterminated string")


# --- parser --------------------------------------------------------------------------------

# A node is (static kind, evaluator). Kinds: "bool" (tri-state cond), "value" (a JSON value,
# possibly MISSING), plus literal kinds for type checks at load time.
_Node = tuple[str, Callable[[Mapping[str, Any]], Any]]


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = _tokenize(src)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Tok:
        tok = self.toks[self.i]
        if tok.kind == "bad":
            raise tok.value
        return tok

    def take(self) -> _Tok:
        tok = self.peek()
        self.i += 1
        return tok

    def fail(self, tok: _Tok, problem: str) -> RuleError:
        return RuleError(self.src, tok.pos, problem)

    def expect(self, text: str) -> _Tok:
        tok = self.take()
        if tok.kind != "op" or tok.text != text:
            got = "the end" if tok.kind == "end" else repr(tok.text)
            raise self.fail(tok, f"expected {text!r}, got {got}")
        return tok

    def parse(self) -> Cond:
        if not self.src.strip():
            raise RuleError(self.src, 0, "empty expression")
        kind, fn = self.or_expr()
        tok = self.peek()
        if tok.kind != "end":
            raise self.fail(tok, self._unexpected(tok))
        if kind not in ("bool", "value"):
            raise RuleError(self.src, 0, f"the expression is a {kind} literal, not a condition")
        return fn if kind == "bool" else truthy(fn)

    def _unexpected(self, tok: _Tok) -> str:
        if tok.kind == "op" and tok.text == "(":
            return "function calls are not supported"
        if tok.kind == "name" and tok.text == "in":
            return "the 'in' operator is not supported"
        return f"unexpected {tok.text!r}"

    def _logic_operand(self, node: _Node, tok: _Tok) -> Cond:
        kind, fn = node
        if kind == "bool":
            return fn
        if kind == "value":
            return truthy(fn)
        raise self.fail(tok, f"{tok.text!r} needs conditions on both sides, got a {kind} literal")

    def or_expr(self) -> _Node:
        left = self.and_expr()
        while self.peek().kind == "op" and self.peek().text == "||":
            op = self.take()
            a = self._logic_operand(left, op)
            b = self._logic_operand(self.and_expr(), op)
            left = ("bool", or_(a, b))
        return left

    def and_expr(self) -> _Node:
        left = self.comparison()
        while self.peek().kind == "op" and self.peek().text == "&&":
            op = self.take()
            a = self._logic_operand(left, op)
            b = self._logic_operand(self.comparison(), op)
            left = ("bool", and_(a, b))
        return left

    def comparison(self) -> _Node:
        left = self.unary()
        tok = self.peek()
        if tok.kind == "op" and tok.text in COMPARE:
            self.take()
            right = self.unary()
            left = ("bool", compare(tok.text, _value_of(left), _value_of(right)))
            nxt = self.peek()
            if nxt.kind == "op" and nxt.text in COMPARE:
                raise self.fail(nxt, "chained comparisons are not supported; join them with &&")
        return left

    def unary(self) -> _Node:
        tok = self.peek()
        if tok.kind == "op" and tok.text == "!":
            self.take()
            kind, fn = self._nested(self.unary)
            if kind not in ("bool", "value"):
                raise self.fail(tok, f"'!' needs a condition, got a {kind} literal")
            return "bool", not_(fn if kind == "bool" else truthy(fn))
        if tok.kind == "op" and tok.text == "-":
            self.take()
            num = self.peek()
            if num.kind != "num":
                raise self.fail(tok, "'-' is only supported before a number literal")
            self.take()
            return _literal("number", -num.value)
        return self.primary()

    def _nested(self, fn: Callable[[], _Node]) -> _Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(self.peek(), f"nested more than {MAX_DEPTH} levels deep")
        try:
            return fn()
        finally:
            self.depth -= 1

    def primary(self) -> _Node:
        tok = self.take()
        if tok.kind == "num":
            return _literal("number", tok.value)
        if tok.kind == "str":
            return _literal("string", tok.value)
        if tok.kind == "op" and tok.text == "(":
            node = self._nested(self.or_expr)
            self.expect(")")
            return node
        if tok.kind == "name":
            if tok.text in ("true", "false"):
                return _literal("value", tok.text == "true")
            if tok.text == "null":
                return _literal("null", None)
            if tok.text != "event":
                nxt = self.peek()
                if nxt.kind == "op" and nxt.text == "(":
                    raise self.fail(tok, f"function calls are not supported ({tok.text}(...))")
                raise self.fail(
                    tok, f"unknown name {tok.text!r}; rules see the envelope as 'event'"
                )
            return "value", path(self._selectors())
        if tok.kind == "end":
            raise self.fail(tok, "the expression ends too early")
        raise self.fail(tok, f"unexpected {tok.text!r}")

    def _selectors(self) -> list[str | int]:
        path: list[str | int] = []
        while self.peek().kind == "op" and self.peek().text in (".", "["):
            tok = self.take()
            if tok.text == ".":
                name = self.take()
                if name.kind != "name":
                    raise self.fail(name, "expected a field name after '.'")
                nxt = self.peek()
                if nxt.kind == "op" and nxt.text == "(":
                    raise self.fail(name, f"method calls are not supported (.{name.text}(...))")
                path.append(name.text)
            else:
                key = self.take()
                if key.kind == "str" or (key.kind == "num" and isinstance(key.value, int)):
                    path.append(key.value)
                else:
                    raise self.fail(key, "an index must be a string or integer literal")
                self.expect("]")
        nxt = self.peek()
        if nxt.kind == "op" and nxt.text == "(":
            raise self.fail(nxt, "function calls are not supported")
        return path


def _literal(kind: str, value: Any) -> _Node:
    return kind, lambda _e: value


def _value_of(node: _Node) -> Eval:
    kind, fn = node
    if kind != "bool":
        return fn

    def value(event: Mapping[str, Any]) -> Any:
        v = fn(event)
        return MISSING if v is None else v  # an error compares like a missing field

    return value


def compile_rule(expression: str) -> Rule:
    """Compile ``expression``; an empty one matches everything (as an empty ``match`` does).

    Raises :class:`RuleError` (and nothing else) for anything outside the subset.
    """
    if not isinstance(expression, str):
        raise RuleError(repr(expression), 0, "a rule must be a string")
    if not expression.strip():
        return always()
    if len(expression) > MAX_LENGTH:
        raise RuleError(expression, MAX_LENGTH, f"longer than {MAX_LENGTH} characters")
    try:
        fn = _Parser(expression).parse()
    except RecursionError:
        raise RuleError(expression, 0, "nested too deeply") from None
    return Rule(expression, fn)
