"""schemathesis against edge_runtime/api/http/openapi.json, served by a real sidecar.

For every operation in the description (shutdown aside: it ends the sidecar), schemathesis
generates requests, valid ones and ones that break the schema (negative mode), and each answer
must be documented for that operation (status code, content type, body schema), carry a Dapr
error code other than the generic ``ERROR``, and hold no traceback. ``make test`` runs a few
examples per operation; ``make faults`` many more.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis (the test extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402 - after the skip
from hypothesis import strategies as st  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from edge_runtime.api.http import meta as http_meta  # noqa: E402
from tests.faults._hostile import TOKEN, Sidecar, problems_in_log  # noqa: E402

SPEC = Path(http_meta.__file__).parent / "openapi.json"
SCHEMA = schemathesis.openapi.from_path(str(SPEC))
OPERATIONS = [r.ok() for r in SCHEMA.get_all_operations()]
IDS = [f"{op.method.upper()} {op.path}" for op in OPERATIONS]
# Hypothesis would warn (an error under pytest's settings) when it writes out a 64 KiB body.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
COUNTS = {"requests": 0, "not http": 0}
STORE = {"storeName": "statestore"}
KNOWN: dict[str, dict[str, str]] = {
    **{p: STORE for p in SCHEMA.raw_schema["paths"] if p.startswith(("/v1.0/state",
                                                                      "/v1.0-alpha1/state"))},
    **{p: {"pubsubName": "pubsub"} for p in SCHEMA.raw_schema["paths"] if "/publish/" in p},
    "/v1.0/bindings/{name}": {"name": "loop"},
    "/v1.0/secrets/{storeName}/{key}": {"storeName": "envsecrets"},
    "/v1.0/secrets/{storeName}/bulk": {"storeName": "envsecrets"},
    "/v1.0/invoke/{appId}/method/{method}": {"appId": "hostile"},
}


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    sc = Sidecar(tmp_path_factory.mktemp("openapi"), max_body="64Ki",
                 env={"DAPR_API_TOKEN": TOKEN}).start()
    yield sc
    sc.stop()


def _run(sidecar: Sidecar, operation: Any, examples: int) -> None:
    if operation.path == "/v1.0/shutdown":
        pytest.skip("shutdown ends the sidecar; its token check is in test_api_access.py")
    strategy = (operation.as_strategy(GenerationMode.POSITIVE)
                | operation.as_strategy(GenerationMode.NEGATIVE))

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy, known=st.booleans())
    def run(case: Any, known: bool) -> None:
        if known and case.path_parameters:
            # Random names reach only the unknown-component errors; half the time, name a
            # component the sidecar has, so the success and conflict answers are checked too.
            for name in list(case.path_parameters):
                if name in KNOWN.get(operation.path, {}):
                    case.path_parameters[name] = KNOWN[operation.path][name]
        response = case.call(base_url=sidecar.url, headers={"dapr-api-token": TOKEN},
                             timeout=30)
        COUNTS["requests"] += 1
        assert b"Traceback" not in response.content
        if response.content in (b"invalid HTTP request", b"Invalid HTTP request received."):
            # The HTTP server's own answer to bytes that are not HTTP (a control character in
            # a header schemathesis made up; ours, or uvicorn's where httptools is missing):
            # the request never reached the Dapr API.
            assert response.status_code == 400
            COUNTS["not http"] += 1
            return
        if response.status_code >= 400 and response.status_code != 401 and response.content:
            body = response.json()
            if "errorCode" in body:
                assert body["errorCode"] != "ERROR", body
        if response.status_code in (404, 405) and response.json().get("errorCode") in (
                "ERR_NOT_FOUND", "ERR_METHOD_NOT_ALLOWED"):
            return  # a generated path that left the route (e.g. an empty segment)
        case.validate_response(response, checks=CHECKS)

    run()


@pytest.mark.parametrize("operation", OPERATIONS, ids=IDS)
def test_schemathesis_short(sidecar: Sidecar, operation: Any) -> None:
    _run(sidecar, operation, 15)


@pytest.mark.faults_long
@pytest.mark.parametrize("operation", OPERATIONS, ids=IDS)
def test_schemathesis_long(sidecar: Sidecar, operation: Any) -> None:
    _run(sidecar, operation, 300)


def test_the_sidecar_survived_with_a_clean_log(sidecar: Sidecar) -> None:
    print(f"schemathesis requests: {COUNTS['requests']} ({COUNTS['not http']} refused by the"
          " HTTP parser before the API)")
    assert sidecar.alive()
    assert problems_in_log(sidecar.log_text()) == []
