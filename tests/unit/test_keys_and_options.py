"""Pure pieces of the API core: key prefixes, ttl and option parsing, the error table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_runtime import errors as E
from edge_runtime.api.universal import parse_options, parse_ttl
from edge_runtime.config.settings import parse_quantity
from edge_runtime.errors import APIError, FieldViolation
from edge_runtime.state import Concurrency, InvalidRequestError
from edge_runtime.state.keys import IllegalKeyError, KeyPrefix


@given(st.text().filter(lambda k: "||" not in k))
def test_prefix_round_trip(key: str) -> None:
    p = KeyPrefix.from_strategy("appid", app_id="app", component="c")
    assert p.strip(p.apply(key)) == key


def test_prefix_strategies() -> None:
    assert KeyPrefix.from_strategy("", app_id="a", component="c").apply("k") == "a||k"
    assert KeyPrefix.from_strategy("AppID", app_id="a", component="c").apply("k") == "a||k"
    assert KeyPrefix.from_strategy("name", app_id="a", component="c").apply("k") == "c||k"
    assert KeyPrefix.from_strategy("none", app_id="a", component="c").apply("k") == "k"
    ns = KeyPrefix.from_strategy("namespace", app_id="a", component="c", namespace="prod")
    assert ns.apply("k") == "prod.a||k"
    assert KeyPrefix.from_strategy("namespace", app_id="a", component="c").apply("k") == "a||k"
    assert KeyPrefix.from_strategy("fleet", app_id="a", component="c").apply("k") == "fleet||k"
    assert KeyPrefix.from_strategy("", app_id="", component="c").apply("k") == "k"
    with pytest.raises(ValueError, match="must not contain"):
        KeyPrefix.from_strategy("a||b", app_id="a", component="c")
    with pytest.raises(IllegalKeyError):
        KeyPrefix("a").apply("x||y")


@pytest.mark.parametrize(
    ("raw", "want"), [("", None), ("-1", None), ("0", None), ("1", 1), ("2147483647", 2147483647)]
)
def test_ttl(raw: str, want: int | None) -> None:
    assert parse_ttl({"ttlInSeconds": raw}) == want
    assert parse_ttl({"TTLINSECONDS": raw}) == want


@pytest.mark.parametrize("raw", ["x", "-2", "2147483648", "1.0", " "])
def test_bad_ttl(raw: str) -> None:
    with pytest.raises(InvalidRequestError):
        parse_ttl({"ttlInSeconds": raw})


def test_options() -> None:
    assert parse_options("", "") is Concurrency.LAST_WRITE
    assert parse_options("first-write", "strong") is Concurrency.FIRST_WRITE
    assert parse_options("last-write", "eventual") is Concurrency.LAST_WRITE
    for conc, cons in (("first", ""), ("", "weak"), ("FIRST-WRITE", "")):
        with pytest.raises(InvalidRequestError):
            parse_options(conc, cons)


def test_error_bodies() -> None:
    legacy = APIError(E.STATE_SAVE, "boom")
    assert legacy.json_body() == {"errorCode": "ERR_STATE_SAVE", "message": "boom"}
    rich = APIError(
        E.STATE_ILLEGAL_KEY,
        "bad",
        resource=("state", "s"),
        violations=(FieldViolation("a||b", "bad"),),
    )
    body = rich.json_body()
    assert body["errorCode"] == "ERR_MALFORMED_REQUEST"
    types = [d["@type"].rsplit(".", 1)[1] for d in body["details"]]
    assert types == ["ErrorInfo", "ResourceInfo", "BadRequest"]
    assert body["details"][0]["reason"] == "DAPR_STATE_ILLEGAL_KEY"


def test_our_errors_are_resource_exhausted_on_grpc() -> None:
    for kind in (E.PUBSUB_OUTBOX_FULL, E.STORAGE_FULL, E.BODY_TOO_LARGE):
        assert kind.grpc is E.GrpcCode.RESOURCE_EXHAUSTED
    assert (E.PUBSUB_OUTBOX_FULL.http, E.STORAGE_FULL.http, E.BODY_TOO_LARGE.http) == (
        429,
        507,
        413,
    )


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("4Mi", 4 << 20),
        ("512Ki", 512 << 10),
        ("1048576", 1 << 20),
        ("2MB", 2_000_000),
        ("1Gi", 1 << 30),
    ],
)
def test_quantity(text: str, n: int) -> None:
    assert parse_quantity(text) == n


def test_bad_quantity() -> None:
    with pytest.raises(ValueError, match="expected a size"):
        parse_quantity("lots")
