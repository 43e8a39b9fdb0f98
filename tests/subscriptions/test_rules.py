"""The CEL-subset rule compiler: what it accepts, how it evaluates, what it refuses."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.subscriptions import RuleError, compile_rule

EVENT: dict[str, Any] = {
    "type": "alarm",
    "source": "sensor-1",
    "data": {"temp": 30, "ratio": 0.5, "ok": True, "name": "pump", "tags": ["a", "b"],
             "x-y": {"z": None}, "nested": {"deep": {"v": 7}}},
}


@pytest.mark.parametrize(("expr", "expected"), [
    ('event.type == "alarm"', True),
    ("event.type == 'alarm'", True),
    ('event.type != "alarm"', False),
    ("event.data.temp > 25", True),
    ("event.data.temp >= 30 && event.data.temp <= 30", True),
    ("event.data.temp < 30", False),
    ("event.data.ratio == 0.5", True),
    ("event.data.temp == 30.0", True),
    ("event.data.nested.deep.v == 7", True),
    ('event.data["x-y"].z == null', True),
    ('event.data.tags[1] == "b"', True),
    ("event.data.tags[5] == 1", False),
    ("event.data.ok", True),
    ("!event.data.ok", False),
    ("event.data.ok == true", True),
    ("event.data.ok == 1", False),  # a bool is not a number
    ('event.data.temp == "30"', False),  # different kinds are unequal
    ('event.data.temp != "30"', True),
    ('event.data.name > "a"', True),
    ('event.data.temp > "a"', False),  # no ordering across kinds
    ("-5 < event.data.temp", True),
    ("event.data.temp > 2e1", True),
    ("(event.data.temp > 100 || event.type == \"alarm\") && !(event.source == \"x\")", True),
    ("true", True),
    ("false || true", True),
    ('event.type == "a\\"b"', False),
    ('event.source == "sensor\\u002d1"', True),
    # a missing field makes a comparison false, whatever the operator
    ("event.missing == 1", False),
    ("event.missing != 1", False),
    ("event.data.temp.deeper == 1", False),
    # non-booleans in logic are errors, absorbed as CEL does
    ("event.missing || true", True),
    ("event.missing && false", False),
    ("event.missing || false", False),
    ("!event.missing", False),
    ("event.data.name", False),
])
def test_evaluates(expr: str, expected: bool) -> None:
    assert compile_rule(expr)(EVENT) is expected


def test_empty_match_always_matches() -> None:
    assert compile_rule("")({}) is True
    assert compile_rule("   ")({"x": 1}) is True


def test_event_that_is_not_a_mapping_never_raises() -> None:
    rule = compile_rule("event.a.b == 1")
    assert rule([]) is False  # type: ignore[arg-type]
    assert rule({"a": "text"}) is False


def test_rules_compare_by_source() -> None:
    assert compile_rule("event.a == 1") == compile_rule("event.a == 1")
    assert len({compile_rule("event.a == 1"), compile_rule("event.a == 1")}) == 1


@pytest.mark.parametrize(("expr", "column", "words"), [
    ("size(event.a) > 1", 1, "function calls are not supported"),
    ('event.type.startsWith("a")', 12, "method calls are not supported"),
    ("event.a in [1, 2]", 9, "'in' operator is not supported"),
    ("data.x == 1", 1, "unknown name 'data'"),
    ("event.a + 1 == 2", 9, "arithmetic is not supported"),
    ("event.a ? 1 : 2", 9, "conditional operator"),
    ('"text"', 1, "string literal, not a condition"),
    ("5", 1, "number literal, not a condition"),
    ("event.a ==", 11, "ends too early"),
    ("1 < event.a < 3", 13, "chained comparisons"),
    ("event.a = 1", 9, "use '=='"),
    ("'open", 1, "unterminated string"),
    ('"bad \\q escape"', 6, "unsupported escape"),
    ("event.a == 1 1", 14, "unexpected '1'"),
    ("event.[1]", 7, "expected a field name"),
    ("event.a[x]", 9, "string or integer literal"),
    ("(event.a == 1", 14, "expected ')'"),
    ("1 && event.a", 3, "'&&' needs conditions"),
    ("!5", 1, "'!' needs a condition"),
    ("-event.a < 1", 1, "'-' is only supported before a number"),
    ("event.a == 1u", 13, "number suffix"),
    ("event.a == 1e999", 12, "out of range"),
    ("(" * 100 + "true" + ")" * 100, 66, "nested more than"),
])
def test_refuses_with_position(expr: str, column: int, words: str) -> None:
    with pytest.raises(RuleError) as info:
        compile_rule(expr)
    assert words in str(info.value)
    assert f"column {column}:" in str(info.value)
    assert info.value.expression == expr


def test_error_names_the_expression() -> None:
    with pytest.raises(RuleError, match=r"rule 'has\(event.a\)': column 1: "):
        compile_rule("has(event.a)")


TOKENS = st.sampled_from([
    "event", ".", "data", "type", "[", "]", "(", ")", "==", "!=", "<", "<=", ">", ">=", "&&",
    "||", "!", "-", "1", "2.5", "1e3", '"s"', "'q'", "true", "false", "null", " ", "x", "+",
    "in", ",", "?", ":", '"', "\\", "\u00e9", "\n",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(TOKENS, max_size=25).map("".join))
def test_fuzz_token_soup_compiles_or_raises_rule_error(text: str) -> None:
    try:
        rule = compile_rule(text)
    except RuleError:
        return
    assert isinstance(rule(EVENT), bool)
    assert isinstance(rule({}), bool)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_fuzz_any_text_compiles_or_raises_rule_error(text: str) -> None:
    try:
        rule = compile_rule(text)
    except RuleError:
        return
    assert isinstance(rule(EVENT), bool)


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=10,
))
def test_fuzz_evaluation_never_raises(value: Any) -> None:
    for expr in ("event.data.temp > 1", 'event.data == "x"', "event.data[0] != null",
                 "!event.data || event.data.a <= 2.5"):
        assert isinstance(compile_rule(expr)({"data": value}), bool)
