"""The envelope's fast path (cached pieces) makes exactly the bytes of the general one."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from edge_runtime.pubsub import cloudevents
from edge_runtime.pubsub.cloudevents import PublishOptions, envelope


@pytest.mark.parametrize(("data", "content_type"), [
    (b'{"a": 1.50, "b": [1, 2]}', "application/json"),
    (b' {"x":"\\u00e9"} ', "application/json; charset=utf-8"),
    (b"not json {", "application/json"),
    (b"[" * 100_000, "application/json"),
    (b"caf\xc3\xa9 text", "text/plain"),
    (b"\xff\xfe binary", "text/plain"),
    (b"\x00\x01\x02", "application/octet-stream"),
    (b"<a/>", "application/xml"),
    (b'{"k":"v"}', "application/vnd.thing+json"),
])
@pytest.mark.parametrize(("traceparent", "tracestate"), [("", ""), ("00-ab-cd-01", "k=v")])
def test_fast_path_bytes_equal_the_general_ones(
    monkeypatch: pytest.MonkeyPatch, data: bytes, content_type: str, traceparent: str,
    tracestate: str,
) -> None:
    monkeypatch.setattr(cloudevents, "_uuid4", lambda: "0b7b8e0e-46a0-4f57-9d5c-5b0b5a8f2a11")
    fast = envelope(data, content_type, topic="t/ü", pubsub="p", source="app",
                    traceparent=traceparent, tracestate=tracestate)
    slow = cloudevents._full_envelope(data, content_type, "t/ü", "p", "app", PublishOptions(),
                                      traceparent, tracestate)
    assert fast == slow
    if content_type == "application/json" and data.strip().startswith(b"{\"a\""):
        checked = envelope(data, content_type, topic="t/ü", pubsub="p", source="app",
                           traceparent=traceparent, tracestate=tracestate, json_checked=True)
        assert checked == slow


def test_ids_are_random_version_4_uuids_and_differ_after_fork() -> None:
    ids = [cloudevents._uuid4() for _ in range(2000)]  # several pools
    assert len(set(ids)) == len(ids)
    for text in ids[:600]:
        assert uuid.UUID(text).version == 4
        assert str(uuid.UUID(text)) == text
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child's next id must not be the parent's next one
        os.write(w, cloudevents._uuid4().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(r, 64).decode()
    os.close(r)
    os.close(w)
    assert child != cloudevents._uuid4()


def test_the_envelope_is_json_with_its_fields() -> None:
    out = json.loads(envelope(b'{"n": 1}', "application/json", topic="t", pubsub="p",
                              source="a"))
    assert out["data"] == {"n": 1}
    assert (out["topic"], out["source"], out["pubsubname"]) == ("t", "a", "p")
    assert (out["datacontenttype"], out["specversion"]) == ("application/json", "1.0")
