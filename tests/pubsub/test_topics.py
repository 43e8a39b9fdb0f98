"""MQTT topic names and filters: validation branches, and matching checked against paho's
matcher (an independent implementation) with hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub

from edge_runtime.pubsub.mqtt.topics import (
    MAX_LENGTH,
    matches,
    shared,
    split_shared,
    validate_filter,
    validate_topic,
)

# Few distinct level names so that generated filters and topics often match.
LEVEL = st.sampled_from(["a", "b", "ab", "", "$x", "ü", "x y"])
TOPIC = st.lists(LEVEL, min_size=1, max_size=5).map("/".join).filter(bool)
FILTER = st.builds(
    lambda levels, tail: "/".join(levels + tail),
    st.lists(st.one_of(LEVEL, st.just("+")), min_size=0, max_size=4),
    st.sampled_from([[], ["#"]]),
).filter(bool)
GROUP = st.text(alphabet="gh1_-", min_size=1, max_size=5)


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("", "empty"),
        ("a\x00b", "NUL"),
        ("x" * (MAX_LENGTH + 1), "65536 bytes"),
        ("a\ud800", "surrogate"),
        ("a/+/b", "wildcards"),
        ("a/#", "wildcards"),
        ("a+", "wildcards"),
    ],
)
def test_invalid_topics(topic: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_topic(topic)


@pytest.mark.parametrize(
    ("topic_filter", "message"),
    [
        ("", "empty"),
        ("a/#/b", "last level"),
        ("a/b#", "last level"),
        ("a#", "last level"),
        ("a/b+", "whole level"),
        ("+a", "whole level"),
        ("$share/", "group name"),
        ("$share//a", "group name"),
        ("$share/g+/a", r"'\+'"),
        ("$share/g#/a", "'#'"),
        ("$share/g", "filter after the group"),
        ("$share/g/", "filter after the group"),
        ("$share/g/a/#/b", "last level"),
        ("é" * (MAX_LENGTH // 2 + 1), "bytes long"),
    ],
)
def test_invalid_filters(topic_filter: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_filter(topic_filter)


@pytest.mark.parametrize(
    "topic_filter",
    ["#", "+", "a/+/c", "a/#", "/", "+/+", "$SYS/#", "$share/g/a/+", "$share/g/#", "a//b"],
)
def test_valid_filters(topic_filter: str) -> None:
    validate_filter(topic_filter)


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/+", "a/", True),  # + matches an empty level
        ("a/+", "a", False),
        ("a/#", "a", True),  # # matches the parent level too
        ("a/#", "a/b/c", True),
        ("a/#", "ab", False),
        ("#", "a/b", True),
        ("#", "$SYS/load", False),  # $-topics are not matched by a leading wildcard
        ("+/load", "$SYS/load", False),
        ("$SYS/#", "$SYS/load", True),
        ("$share/g/a/+", "a/b", True),
        ("$share/g/#", "$SYS/x", False),
        ("a/b/c", "a/b", False),
        ("a/b", "a/b/c", False),
    ],
)
def test_matches_examples(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic_filter, topic) is expected


def test_shared_and_split() -> None:
    assert shared("g", "a/+") == "$share/g/a/+"
    assert shared("other", "$share/g/a") == "$share/g/a"  # already shared: unchanged
    assert split_shared("$share/g/a/b") == ("g", "a/b")
    assert split_shared("$share/g") == ("g", "")
    assert split_shared("a/b") == (None, "a/b")
    for bad in ("", "a/b", "a+", "#"):
        with pytest.raises(ValueError, match="group"):
            shared(bad, "x")


@given(FILTER, TOPIC)
def test_matches_agrees_with_paho(topic_filter: str, topic: str) -> None:
    validate_filter(topic_filter)
    validate_topic(topic)
    assert matches(topic_filter, topic) == topic_matches_sub(topic_filter, topic)


@given(TOPIC)
def test_a_topic_is_a_filter_that_matches_itself(topic: str) -> None:
    validate_filter(topic)
    assert matches(topic, topic)


@given(TOPIC)
def test_hash_matches_everything_but_dollar_topics(topic: str) -> None:
    assert matches("#", topic) is not topic.startswith("$")


@given(GROUP, FILTER, TOPIC)
def test_share_prefix_is_ignored_for_matching(group: str, topic_filter: str, topic: str) -> None:
    with_group = shared(group, topic_filter)
    validate_filter(with_group)
    assert split_shared(with_group) == (group, topic_filter)
    assert matches(with_group, topic) == matches(topic_filter, topic)
