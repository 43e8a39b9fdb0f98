"""Subscriptions from the app's /dapr/subscribe reply and from Subscription YAML; routing."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.config.loader import load_resources
from edge_runtime.subscriptions import (
    BulkSettings,
    Subscription,
    SubscriptionType,
    combine,
    from_app_json,
    from_resources,
    load,
    route_for,
    save,
)


def _app(items: Any) -> tuple[list[Subscription], list[str]]:
    return from_app_json(json.dumps(items).encode())


# --- the app's reply -----------------------------------------------------------------------

def test_v1_route_as_the_python_sdk_sends_it() -> None:
    subs, problems = _app([{"pubsubname": "mqtt", "topic": "orders", "route": "/events/o",
                            "metadata": {"rawPayload": "true"}, "deadLetterTopic": "dead"}])
    assert problems == []
    [s] = subs
    assert (s.pubsub_name, s.topic, s.default_path, s.rules) == ("mqtt", "orders", "/events/o", ())
    assert s.metadata == {"rawPayload": "true"}
    assert s.raw_payload
    assert s.dead_letter_topic == "dead"
    assert s.type is SubscriptionType.PROGRAMMATIC
    assert s.key == "mqtt|orders"
    assert s.bulk == BulkSettings(False, 100, 1000)


def test_v2_routes_in_order_then_default() -> None:
    subs, problems = _app([{
        "pubsubname": "p", "topic": "sensors/+/temp",
        "routes": {"rules": [{"match": 'event.type == "alarm"', "path": "/alarm"},
                             {"match": "event.data.temp > 30", "path": "/hot"}],
                   "default": "/temp"},
        "bulkSubscribe": {"enabled": True, "maxMessagesCount": 10, "maxAwaitDurationMs": 50},
    }])
    assert problems == []
    [s] = subs
    assert route_for(s, {"type": "alarm", "data": {"temp": 40}}) == "/alarm"
    assert route_for(s, {"type": "reading", "data": {"temp": 40}}) == "/hot"
    assert route_for(s, {"type": "reading", "data": {"temp": 10}}) == "/temp"
    assert s.bulk == BulkSettings(True, 10, 50)
    assert s.paths() == ["/alarm", "/hot", "/temp"]


def test_route_is_the_default_when_routes_has_none() -> None:
    [s], _ = _app([{"pubsubname": "p", "topic": "t", "route": "/r",
                    "routes": {"rules": [{"match": "event.a == 1", "path": "/a"}]}}])
    assert route_for(s, {"a": 2}) == "/r"
    [s], _ = _app([{"pubsubname": "p", "topic": "t", "route": "/r",
                    "routes": {"default": "/d"}}])
    assert route_for(s, {}) == "/d"


def test_rules_without_default_drop_unmatched_events() -> None:
    [s], problems = _app([{"pubsubname": "p", "topic": "t",
                           "routes": {"rules": [{"match": "event.a == 1", "path": "/a"}]}}])
    assert problems == []
    assert route_for(s, {"a": 1}) == "/a"
    assert route_for(s, {"a": 2}) is None


def test_empty_match_always_matches() -> None:
    [s], _ = _app([{"pubsubname": "p", "topic": "t",
                    "routes": {"rules": [{"match": "", "path": "/all"}]}}])
    assert route_for(s, {}) == "/all"


def test_keys_are_case_insensitive_as_go_decodes() -> None:
    subs, problems = _app([{"PubSubName": "p", "TOPIC": "t", "Routes": {
        "Rules": [{"Match": "event.a == 1", "PATH": "/a"}], "DEFAULT": "/d"},
        "DeadLetterTopic": "dl", "BULKSUBSCRIBE": {"Enabled": True}}])
    assert problems == []
    [s] = subs
    assert (s.pubsub_name, s.topic, s.default_path, s.dead_letter_topic) == ("p", "t", "/d", "dl")
    assert s.rules[0].path == "/a"
    assert s.bulk.enabled


@pytest.mark.parametrize(("item", "words"), [
    ({"pubsubname": "p", "topic": "t"}, "has no route"),
    ({"pubsubname": "p", "topic": "t", "routes": {"rules": []}}, "has no route"),
    ({"topic": "t", "route": "/r"}, "field 'pubsubname': is required"),
    ({"pubsubname": "p", "topic": 5, "route": "/r"}, "field 'topic': expected a string"),
    ({"pubsubname": "p", "topic": "t", "routes": {"rules": [{"match": "size(x)", "path": "/a"}]}},
     "field 'routes.rules[0].match': rule 'size(x)': column 1: function calls"),
    ({"pubsubname": "p", "topic": "t", "routes": {"rules": [{"match": "event.a == 1"}]}},
     "field 'routes.rules[0].path': is required"),
    ({"pubsubname": "p", "topic": "t", "routes": ["/a"]}, "field 'routes': expected a mapping"),
    ({"pubsubname": "p", "topic": "t", "route": "/r", "metadata": {"a": ["x"]}},
     "field 'metadata.a': expected a string"),
    ({"pubsubname": "p", "topic": "t", "route": "/r", "bulkSubscribe": {"enabled": "yes"}},
     "field 'bulkSubscribe.enabled': expected true or false"),
    ({"pubsubname": "p", "topic": "t", "route": "/r",
      "bulkSubscribe": {"maxMessagesCount": 0}}, "maxMessagesCount': expected a whole number"),
    ({"pubsubname": "p", "topic": "t", "routes": {"default": 7}},
     "field 'routes.default': expected a string"),
])
def test_bad_items_are_left_out_with_a_problem(item: dict[str, Any], words: str) -> None:
    good = {"pubsubname": "p", "topic": "ok", "route": "/ok"}
    subs, problems = _app([item, good])
    assert [s.topic for s in subs] == ["ok"]
    [problem] = problems
    assert problem.startswith("GET /dapr/subscribe: item 0")
    assert words in problem


def test_metadata_scalars_are_taken_as_text() -> None:
    [s], _ = _app([{"pubsubname": "p", "topic": "t", "route": "/r",
                    "metadata": {"rawPayload": True, "n": 5}}])
    assert s.metadata == {"rawPayload": "true", "n": "5"}


@pytest.mark.parametrize("body", [b"not json", b'{"a": 1}', b'"x"'])
def test_a_reply_that_is_not_an_array(body: bytes) -> None:
    subs, [problem] = from_app_json(body)
    assert subs == []
    assert problem.startswith("GET /dapr/subscribe:")


def test_empty_reply_and_null_items() -> None:
    assert from_app_json(b"") == ([], [])
    assert from_app_json(b"[]") == ([], [])
    _subs, [problem] = from_app_json(b"[null]")
    assert "item 0: expected an object" in problem


def test_duplicate_topics_keep_the_first() -> None:
    subs, [problem] = _app([{"pubsubname": "p", "topic": "t", "route": "/a"},
                            {"pubsubname": "p", "topic": "t", "route": "/b"}])
    assert [s.default_path for s in subs] == ["/a"]
    assert "already subscribed" in problem


# --- declarative resources -----------------------------------------------------------------

V2_YAML = """\
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: temps
spec:
  pubsubname: mqtt-pubsub
  topic: sensors/+/temp
  routes:
    rules:
      - match: 'event.type == "alarm"'
        path: /alarm
    default: /temp
  metadata:
    rawPayload: "true"
  deadLetterTopic: dead
  bulkSubscribe: {enabled: false, maxMessagesCount: 100, maxAwaitDurationMs: 1000}
scopes: [app1, app2]
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata:
  name: orders
spec:
  pubsubname: mqtt-pubsub
  topic: orders
  route: /orders
"""


def _resources(tmp_path: Path, text: str, app_id: str | None = "app1") -> tuple[
        list[Subscription], list[str]]:
    (tmp_path / "subs.yaml").write_text(text)
    res = load_resources([tmp_path])
    assert res.problems == []
    subs, problems = from_resources(res.others, app_id)
    return subs, [str(p) for p in problems]


def test_declarative_v1_and_v2(tmp_path: Path) -> None:
    subs, problems = _resources(tmp_path, V2_YAML)
    assert problems == []
    temps, orders = subs
    assert (temps.name, temps.type, temps.topic) == ("temps", SubscriptionType.DECLARATIVE,
                                                    "sensors/+/temp")
    assert route_for(temps, {"type": "alarm"}) == "/alarm"
    assert route_for(temps, {"type": "x"}) == "/temp"
    assert temps.metadata == {"rawPayload": "true"}
    assert temps.dead_letter_topic == "dead"
    assert orders.default_path == "/orders"
    assert orders.name == "orders"


def test_scopes(tmp_path: Path) -> None:
    subs, _ = _resources(tmp_path, V2_YAML, app_id="other")
    assert [s.name for s in subs] == ["orders"]  # no scopes: every app
    subs, _ = _resources(tmp_path, V2_YAML, app_id=None)
    assert len(subs) == 2


@pytest.mark.parametrize(("old", "new", "line", "words"), [
    ("      - match: 'event.type == \"alarm\"'", "      - match: 'event.type ==== 1'", 10,
     "field 'spec.routes.rules[0].match': rule 'event.type ==== 1': column 14"),
    ("  route: /orders", "  routes: {default: /orders}", 26,
     "field 'spec.routes': is not part of dapr.io/v1alpha1"),
    ("  topic: orders\n", "", 23, "field 'spec.topic': is required"),
    ("  deadLetterTopic: dead", "  deadLetterTopic: [dead]", 15,
     "field 'spec.deadLetterTopic': expected a string"),
    ("  deadLetterTopic: dead", "  deadLettrTopic: dead", 15,
     "field 'spec.deadlettrtopic': unknown"),
    ("scopes: [app1, app2]", "scopes: app1", 17, "field 'scopes': expected a list"),
    ("apiVersion: dapr.io/v2alpha1", "apiVersion: dapr.io/v3", 1, "expected dapr.io/v1alpha1 or"),
    ("    default: /temp", "    default: /temp\n  route: /x", 13,
     "field 'spec.route': is not part of dapr.io/v2alpha1"),
])
def test_bad_yaml_has_file_and_line(
    tmp_path: Path, old: str, new: str, line: int, words: str
) -> None:
    assert old in V2_YAML
    subs, problems = _resources(tmp_path, V2_YAML.replace(old, new), app_id=None)
    assert len(subs) == 1, problems
    [problem] = problems
    assert problem.startswith(f"{tmp_path / 'subs.yaml'}:{line}: subscription '"), problem
    assert words in problem


def test_duplicate_declarations_name_the_first(tmp_path: Path) -> None:
    text = V2_YAML + "---\n" + V2_YAML.split("---\n")[1].replace("name: orders", "name: again")
    subs, [problem] = _resources(tmp_path, text)
    assert [s.name for s in subs] == ["temps", "orders"]
    assert f"is already subscribed at {tmp_path / 'subs.yaml'}:25" in problem


def test_declarative_wins_over_programmatic(tmp_path: Path) -> None:
    declared, _ = _resources(tmp_path, V2_YAML)
    programmatic, _ = _app([{"pubsubname": "mqtt-pubsub", "topic": "orders", "route": "/p"},
                            {"pubsubname": "mqtt-pubsub", "topic": "new", "route": "/n"}])
    subs, [problem] = combine(declared, programmatic)
    assert [(s.topic, s.type) for s in subs] == [
        ("sensors/+/temp", SubscriptionType.DECLARATIVE), ("orders", SubscriptionType.DECLARATIVE),
        ("new", SubscriptionType.PROGRAMMATIC)]
    assert "declarative 'orders'" in problem


# --- the saved list ------------------------------------------------------------------------

def test_save_and_load_round_trip(tmp_path: Path) -> None:
    declared, _ = _resources(tmp_path, V2_YAML)
    subs = [*declared, Subscription("p", "t", default_path="/x",
                                    bulk=BulkSettings(True, 5, 7))]
    path = tmp_path / "data" / "subscriptions.json"
    save(path, subs)
    loaded = load(path)
    assert loaded == subs
    assert route_for(loaded[0], {"type": "alarm"}) == "/alarm"
    assert [p.name for p in path.parent.iterdir()] == ["subscriptions.json"]  # no temp left


def test_load_missing_and_damaged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "subscriptions.json"
    assert load(path) == []
    path.write_text("{broken")
    with caplog.at_level(logging.ERROR):
        assert load(path) == []
    assert "is not JSON" in caplog.text
    path.write_text(json.dumps({"format": 1, "subscriptions": [
        {"pubsubname": "p", "topic": "t", "routes": {"rules": [{"match": "f(", "path": "/"}]}},
        {"pubsubname": "p", "topic": "u", "route": "/u", "type": "NOPE"}]}))
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        [s] = load(path)
    assert s.topic == "u"
    assert s.type is SubscriptionType.PROGRAMMATIC
    assert "saved subscription left out" in caplog.text
