"""Hostile input to the parsers: component YAML, CloudEvents from the broker, serial byte
streams, and the cloud sync protocol from a peer.

What already exists is not repeated: tests/config/test_loader.py fuzzes random YAML text and
shapes, tests/bindings/test_serial_framing.py checks that any split of a well-formed stream
gives the same frames. Here: anchor bombs and huge files (in a real ``edge-runtime validate``
process, so a hang is a failed test, not a stuck one), arbitrary envelopes through a real broker
into a real sidecar, arbitrary bytes into every framing with bounded buffers and every byte
accounted for, and garbled CBOR and protobuf sent to a real cloud server.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.bindings.serial.framing import (
    Drop,
    FixedDecoder,
    LengthDecoder,
    LineDecoder,
    RawDecoder,
)
from edge_runtime.cloudsync import hlc as hlcs
from edge_runtime.cloudsync.protocol import sync_pb2
from edge_runtime.cloudsync.sources import decode_payload
from edge_runtime.config.loader import MAX_FILE_BYTES, load_resources
from edge_runtime.pubsub.cloudevents import EnvelopeError, expiration_of, parse
from tests.cloudsync.procs import API_TOKEN, DEVICE_TOKEN
from tests.faults._hostile import Sidecar, problems_in_log
from tests.faults._protofuzz import fill
from tests.support.components import mqtt_pubsub

# Hypothesis would warn (an error under pytest's settings) when it writes out a big body, as
# it does when another plugin (schemathesis) turns its observability on.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

HEAD = """apiVersion: dapr.io/v1alpha1
kind: {kind}
metadata:
  name: bomb
"""


def laughs(indent: str, levels: int = 10) -> str:
    """A billion-laughs anchor chain (9^levels leaves when expanded) as mapping lines."""
    lines = [f'{indent}l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{indent}l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]"
              for i in range(1, levels)]
    return "\n".join(lines) + "\n"


BOMBS = {
    "component labels": HEAD.format(kind="Component") + "  labels:\n" + laughs("    ")
    + "spec:\n  type: state.in-memory\n  version: v1\n  metadata:\n  - name: x\n"
    "    value: *l9\n",
    "component scopes": HEAD.format(kind="Component") + "  labels:\n" + laughs("    ")
    + "spec:\n  type: state.in-memory\n  version: v1\nscopes: *l9\n",
    "subscription": HEAD.format(kind="Subscription") + "  labels:\n" + laughs("    ")
    + "spec:\n  pubsubname: p\n  topic: t\n  routes:\n    rules: *l9\n    default: /x\n"
    "  metadata: *l9\n",
    "resiliency": HEAD.format(kind="Resiliency") + "  labels:\n" + laughs("    ")
    + "spec:\n  policies:\n    retries: *l9\n    timeouts: *l9\n  targets:\n    apps: *l9\n",
    "configuration": HEAD.format(kind="Configuration") + "  labels:\n" + laughs("    ")
    + "spec:\n  nameResolution: *l9\n  tracing: *l9\n",
    "self reference": HEAD.format(kind="Component") + "spec: &s\n  type: state.in-memory\n"
    "  metadata:\n  - name: x\n    value: *s\n",
}


def validate(folder: Path, limit_s: float = 60) -> subprocess.CompletedProcess[str]:
    """``edge-runtime validate`` on ``folder`` in its own process; a hang fails the test."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "edge_runtime", "validate", "--resources-path", str(folder),
             "--app-id", "app"],
            capture_output=True, text=True, timeout=limit_s, check=False)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"edge-runtime validate hung on {folder}") from None


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_anchor_bombs_get_a_clear_answer_without_expanding(tmp_path: Path, name: str) -> None:
    (tmp_path / "bomb.yaml").write_text(BOMBS[name])
    done = validate(tmp_path)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode in (0, 1), done.stderr[-3000:]
    for line in done.stdout.splitlines():  # every problem names file:line
        assert line.startswith(f"{tmp_path / 'bomb.yaml'}:"), line
    print(f"{name}: exit {done.returncode}, {len(done.stdout.splitlines())} problem(s)")


def test_a_huge_file_is_refused_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("w") as f:
        f.write(HEAD.format(kind="Component") + "spec:\n  type: state.in-memory\n  metadata:\n")
        while f.tell() <= MAX_FILE_BYTES:
            f.write("  - {name: padding, value: '" + "x" * 1000 + "'}\n")
    done = validate(tmp_path)
    assert done.returncode == 1
    assert done.stdout.startswith(f"{path}:1: the file is"), done.stdout[:300]
    (problem,) = load_resources([tmp_path]).problems
    assert problem.mark is not None
    assert problem.mark.line == 1


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fan=st.lists(st.lists(st.integers(0, 30), min_size=1, max_size=12), min_size=1,
                    max_size=14),
       where=st.sampled_from(["value", "labels", "scopes"]))
def test_random_alias_graphs_load(tmp_path: Path, fan: list[list[int]], where: str) -> None:
    """Anchors referring to earlier anchors, any fan-out: loading walks no alias twice."""
    lines = ['    a0: &a0 "x"']
    for i, refs in enumerate(fan, start=1):
        lines.append(f"    a{i}: &a{i} [" + ",".join(f"*a{r % i}" for r in refs) + "]")
    last = f"*a{len(fan)}"
    doc = HEAD.format(kind="Component") + "  labels:\n" + "\n".join(lines) + "\n"
    doc += "spec:\n  type: state.in-memory\n  metadata:\n  - name: x\n"
    doc += f"    value: {last if where == 'value' else 'ok'}\n"
    if where == "scopes":
        doc += f"scopes: {last}\n"
    (tmp_path / "c.yaml").write_text(doc)
    res = load_resources([tmp_path])
    assert all(p.mark is not None and p.mark.line >= 1 for p in res.problems)


# ------------------------------------------------------------------ CloudEvents
JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
JSON_ANY = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                        max_leaves=10)
ENVELOPES = st.fixed_dictionaries({}, optional={
    "id": JSON_LEAF, "specversion": st.sampled_from(["1.0", "0.3", ""]) | JSON_LEAF,
    "type": JSON_ANY, "source": JSON_ANY, "datacontenttype": JSON_LEAF,
    "data": JSON_ANY, "data_base64": st.text(max_size=20) | JSON_LEAF,
    "expiration": st.sampled_from(["2000-01-01T00:00:00Z", "2999-01-01T00:00:00+01:00",
                                   "not a date", "", "9999-12-31T23:59:59", "0000"])
    | JSON_LEAF,
    "topic": JSON_ANY, "traceparent": JSON_LEAF,
})


def _raw_envelopes() -> st.SearchStrategy[bytes]:
    deep = st.integers(100, 40_000).map(lambda n: b"[" * n + b"]" * n)
    return st.one_of(
        st.binary(max_size=300), ENVELOPES.map(lambda e: json.dumps(e).encode()),
        JSON_ANY.map(lambda v: json.dumps(v).encode()), deep,
        ENVELOPES.map(lambda e: json.dumps(e).encode()[:-1] + b"\xff}"),
    )


@settings(max_examples=400, deadline=None)
@given(raw=_raw_envelopes())
def test_parse_answers_an_envelope_or_envelope_error(raw: bytes) -> None:
    try:
        event = parse(raw)
    except EnvelopeError:
        return
    assert isinstance(event, dict)
    when = expiration_of(event)
    assert when is None or (isinstance(when, datetime) and when.tzinfo is not None)


SUBSCRIPTION = """\
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: hostile}
spec:
  pubsubname: mqtt
  topic: hostile/#
  routes:
    rules:
    - {match: 'event.type == "alarm" && event.data.level > 3', path: /alarm}
    default: /events
"""


def subscribed(url: str) -> str:
    """An MQTT pubsub on the broker at ``url`` and a subscription with a routing rule."""
    return "\n" + mqtt_pubsub(url, "hostile-sub", type_="pubsub.mqtt") + "---\n" + SUBSCRIPTION


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Any]:
    from tests.support.mosquitto import Mosquitto, mosquitto_path

    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    m = Mosquitto(tmp_path / "broker")
    m.start()
    yield m
    m.stop()


@settings(max_examples=1, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payloads=st.lists(_raw_envelopes(), min_size=150, max_size=150))
def test_random_envelopes_from_the_broker_leave_the_sidecar_serving(
        tmp_path_factory: pytest.TempPathFactory, broker: Any, payloads: list[bytes]) -> None:
    """150 arbitrary messages on a subscribed topic (no app is up: they are taken into the
    inbox or refused there); the sidecar stays up, its log clean, its inbox bounded by them."""
    import paho.mqtt.client as paho

    sc = Sidecar(tmp_path_factory.mktemp("envelopes"),
                 components=subscribed(broker.url), app_id="hostile-sub").start()
    try:
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="hostile-pub")
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        infos = [client.publish(f"hostile/{i % 7}", p, qos=1) for i, p in enumerate(payloads)]
        for info in infos:
            info.wait_for_publish(30)
        client.loop_stop()
        client.disconnect()
        with httpx.Client(base_url=sc.url, timeout=10) as http:
            assert http.get("/v1.0/healthz/outbound").status_code == 204
            meta = http.get("/v1.0/metadata").json()
        assert sc.alive()
        assert problems_in_log(sc.log_text()) == []
        print(f"envelopes sent: {len(payloads)}; sidecar up; subscriptions "
              f"{len(meta.get('subscriptions', []))}")
    finally:
        sc.stop()


# ------------------------------------------------------------------ serial framing
DECODERS = {
    "line": lambda: LineDecoder(b"\r\n", 64),
    "line-1": lambda: LineDecoder(b"\n", 16),
    "length-1": lambda: LengthDecoder(1, "big", 40),
    "length-2le": lambda: LengthDecoder(2, "little", 100),
    "length-4": lambda: LengthDecoder(4, "big", 1000),
    "fixed": lambda: FixedDecoder(7),
    "raw": lambda: RawDecoder(50),
}
BOUNDS = {"line": 64 + 2, "line-1": 16 + 1, "length-1": 40 + 1, "length-2le": 100 + 2,
          "length-4": 1000 + 4, "fixed": 7, "raw": 50}
ACTIONS = st.lists(st.one_of(
    st.binary(max_size=200).map(lambda b: ("feed", b)),
    st.sampled_from([b"\r\n", b"\n", b"\x00\x05hello", b"\xff\xff\xff\xff", b"\x00"])
    .map(lambda b: ("feed", b)),
    st.just(("idle", b"")), st.just(("reset", b"")),
), max_size=60)


@pytest.mark.parametrize("framing", sorted(DECODERS))
def test_any_byte_stream_is_framed_with_bounded_buffers(framing: str) -> None:
    """No exception; what is held in memory never passes max frame plus prefix (a length
    decoder's ``pending`` also counts bytes it will skip, which it does not hold, so the
    buffer itself is looked at); frames never add up to more than went in."""

    @settings(max_examples=300, deadline=None)
    @given(actions=ACTIONS)
    def run(actions: list[tuple[str, bytes]]) -> None:
        decoder = DECODERS[framing]()
        fed = out = 0
        for action, data in actions:
            if action == "feed":
                fed += len(data)
                produced = decoder.feed(data)
            elif action == "idle":
                produced = decoder.idle()
            else:
                produced = decoder.reset()
            for item in produced:
                if isinstance(item, Drop):
                    assert item.size >= 0
                    assert item.reason in ("oversized", "truncated", "garbled")
                    assert item.detail
                else:
                    assert isinstance(item, bytes)
                    assert item
                    out += len(item)
            held = len(decoder._buf)  # type: ignore[attr-defined]
            assert 0 <= held <= BOUNDS[framing], (framing, held)
        assert out <= fed

    run()


# ------------------------------------------------------------------ cloud sync
@settings(max_examples=500, deadline=None)
@given(payload=st.binary(max_size=200) | st.sampled_from([
    b"\x9f" * 5000, b"\x81" * 100_000 + b"\x01", b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\xd8\x1e\x82\x01\x00", b"\xc1\xfb\x7f\xf0\x00\x00\x00\x00\x00\x00", b"\xd9\x01\x02\x80",
    b"\xc0\x63abc", b"\xa1\x80\x01", b"\xd9\x01\x02\x81\x80", b"\xc4\x82\x01\x19\xff\xff",
]))
def test_garbled_cbor_is_a_value_error(payload: bytes) -> None:
    with contextlib.suppress(ValueError):  # anything else fails the test
        decode_payload(payload)


class CloudServer:
    """``edge-runtime cloud serve`` as a plain child process (the async ``tests.cloudsync``
    helper wants one event loop for its whole life; hypothesis tests are synchronous)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.log = root / "cloud.log"
        ports = root / "ports.json"
        args = [sys.executable, "-m", "edge_runtime", "cloud", "serve", "--host", "127.0.0.1",
                "--grpc-port", "0", "--http-port", "0", "--store", f"sqlite://{root}/cloud.db",
                "--ports-file", str(ports)]
        env = {**os.environ, "EDGE_CLOUD_TOKEN": API_TOKEN, "EDGE_CLOUD_DEVICE_TOKEN":
               DEVICE_TOKEN}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, stderr=log, env=env)
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the cloud did not start"
            try:
                self.ports = json.loads(ports.read_text())
                break
            except (OSError, ValueError):
                time.sleep(0.05)
        self.endpoint = f"127.0.0.1:{self.ports['grpc']}"

    def devices(self) -> int:
        return httpx.get(f"http://127.0.0.1:{self.ports['http']}/v1/devices", timeout=10,
                         headers={"authorization": f"Bearer {API_TOKEN}"}).status_code

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[CloudServer]:
    server = CloudServer(tmp_path / "cloud")
    yield server
    server.stop()


AUTH = (("authorization", f"Bearer {DEVICE_TOKEN}"),)
C = grpc.StatusCode


def _sync(channel: grpc.Channel, messages: list[bytes],
          timeout: float = 5) -> tuple[grpc.StatusCode, str]:
    stream = channel.stream_stream("/edge_runtime.cloudsync.v1.CloudSync/Sync")
    try:
        for _ in stream(iter(messages), metadata=AUTH, timeout=timeout):
            pass
    except grpc.RpcError as err:
        code: grpc.StatusCode = err.code()
        return code, err.details() or ""
    return C.OK, ""


def test_garbled_protobuf_and_cbor_from_a_device_never_crash_the_cloud(
        cloud: CloudServer) -> None:
    """Streams opened with random bytes, random DeviceMessages and well-formed hellos
    followed by batches whose records carry junk: each stream ends (or is answered), the
    server keeps serving, and its log holds no traceback."""
    service = sync_pb2.DESCRIPTOR.services_by_name["CloudSync"]
    assert service.methods_by_name["Sync"].full_name == "edge_runtime.cloudsync.v1.CloudSync.Sync"
    codes: dict[str, int] = {}

    @settings(max_examples=80, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        kind = data.draw(st.integers(0, 2))
        if kind == 0:
            messages = data.draw(st.lists(st.binary(max_size=80), min_size=1, max_size=3))
        elif kind == 1:
            messages = [fill(data, sync_pb2.DeviceMessage()).SerializeToString()
                        for _ in range(data.draw(st.integers(1, 3)))]
        else:
            hello = sync_pb2.DeviceMessage(hello=sync_pb2.Hello(device_id="dev-hostile"))
            batch = sync_pb2.DeviceMessage()
            fill(data, batch.batch)
            for record in batch.batch.records:
                record.payload = data.draw(st.binary(max_size=40))
            messages = [hello.SerializeToString(), batch.SerializeToString()]
        code, details = _sync(channel, messages)
        codes[code.name] = codes.get(code.name, 0) + 1
        assert code != C.UNKNOWN, (code, details)

    with grpc.insecure_channel(cloud.endpoint) as channel:
        run()
    print(f"cloud streams by status: {codes}")
    assert cloud.proc.poll() is None
    assert cloud.devices() == 200
    assert problems_in_log(cloud.log.read_text(errors="replace")) == []


def test_a_device_cannot_drag_the_cloud_clock_past_the_end_of_time(cloud: CloudServer) -> None:
    """Found by the test above: one record with an HLC near 2^64 pushed the cloud's clock past
    what fixed64 holds, and from then on every stream of every device failed."""
    hello = sync_pb2.DeviceMessage(hello=sync_pb2.Hello(device_id="dev-a"))
    for hlc in ((1 << 64) - 1, (1 << 63) - 1, hlcs.pack(hlcs.MAX_REMOTE_MS + 1)):
        batch = sync_pb2.DeviceMessage(batch=sync_pb2.Batch(stream="events", epoch="e", records=[
            sync_pb2.Record(kind=sync_pb2.Record.EVENT, target="p/t", key=f"k{hlc}", seq=1,
                            hlc=hlc)]))
        with grpc.insecure_channel(cloud.endpoint) as channel:
            code, _ = _sync(channel, [hello.SerializeToString(), batch.SerializeToString()], 3)
            assert code in (C.INVALID_ARGUMENT, C.DEADLINE_EXCEEDED, C.OK), code
            # another device still gets its Welcome, with a clock that fits in 64 bits
            stream = channel.stream_stream("/edge_runtime.cloudsync.v1.CloudSync/Sync")
            other = sync_pb2.DeviceMessage(hello=sync_pb2.Hello(device_id="dev-b"))
            call = stream(iter([other.SerializeToString()]), metadata=AUTH, timeout=3)
            welcome = sync_pb2.CloudMessage.FromString(next(call))
            assert welcome.WhichOneof("body") == "welcome"
            assert welcome.welcome.server_hlc < hlcs.pack(int((time.time() + 86400) * 1000))
            call.cancel()
    assert problems_in_log(cloud.log.read_text(errors="replace")) == []


def test_the_clock_ignores_a_timestamp_from_the_far_future() -> None:
    clock = hlcs.HLC()
    now = clock.now()
    assert clock.update((1 << 64) - 1) < hlcs.pack(int((time.time() + 60) * 1000))
    # Far ahead but plausible (a device that booted in 1970 meets the cloud): adopted.
    ahead = hlcs.pack(int((time.time() + 3 * 365 * 86400) * 1000))
    assert clock.update(ahead) > ahead > now
