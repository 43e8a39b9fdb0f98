"""A sensor app for edge-runtime, written against the official Dapr Python SDK only.

It takes readings from the input binding ``sensor`` (the sidecar POSTs each one to
``/sensor``), keeps rolling statistics over the last ``SENSOR_WINDOW`` readings in the state
store ``statestore`` under the key ``stats``, and publishes every reading with the rolling mean
to the topic ``readings`` of the pub/sub ``pubsub``. With ``SENSOR_SIMULATE_EVERY`` (seconds)
it also feeds the binding itself with a simulated temperature, standing in for a GPIO or serial
binding, which would deliver to the same route without any change here.

Run it the way any Dapr app runs, after ``--`` (see README.md beside it)::

    edge-runtime run --app-id sensor --app-port 8080 \
        --resources-path examples/sensor/components -- python examples/sensor/app.py

Environment: ``APP_PORT`` (the sidecar sets it from ``--app-port``), ``DAPR_HTTP_PORT`` and
``DAPR_GRPC_PORT`` (set by the sidecar; the SDK reads them), ``SENSOR_WINDOW`` (default 10),
``SENSOR_SIMULATE_EVERY`` (default 0: off).
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError

STORE, KEY, PUBSUB, TOPIC, BINDING = "statestore", "stats", "pubsub", "readings", "sensor"
WINDOW = int(os.environ.get("SENSOR_WINDOW", "10"))


def fold(stats: dict | None, celsius: float, at: float) -> dict:
    """The rolling statistics after one more reading (pure: easy to test)."""
    stats = stats or {"count": 0, "window": []}
    window = ([*stats["window"], celsius])[-WINDOW:]
    return {
        "count": stats["count"] + 1,
        "window": window,
        "mean": round(sum(window) / len(window), 3),
        "min": min(window),
        "max": max(window),
        "last": {"celsius": celsius, "at": at},
    }


class Sensor:
    """Readings in, rolling state and published readings out. One reading at a time: the
    state is read and written with its ETag, so a second instance could not lose an update."""

    def __init__(self, client: DaprClient) -> None:
        self.client = client
        self.lock = threading.Lock()

    def reading(self, body: bytes) -> dict:
        celsius = float(json.loads(body)["celsius"])
        if not math.isfinite(celsius):
            raise ValueError("celsius must be a finite number")
        with self.lock:
            while True:
                item = self.client.get_state(STORE, KEY)
                stats = fold(json.loads(item.data) if item.data else None, celsius, time.time())
                try:
                    self.client.save_state(STORE, KEY, json.dumps(stats), etag=item.etag or None)
                    break
                except DaprGrpcError as exc:  # ETag mismatch: someone wrote first; fold again
                    if "etag" not in str(exc).lower():
                        raise
        event = {"celsius": celsius, "mean": stats["mean"], "count": stats["count"]}
        self.client.publish_event(
            PUBSUB, TOPIC, json.dumps(event), data_content_type="application/json"
        )
        return stats


def handler_for(sensor: Sensor) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_OPTIONS(self) -> None:  # the sidecar asks whether we take the binding
            self.send_response(200 if self.path == f"/{BINDING}" else 404)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            self._reply(200 if self.path == "/healthz" else 404, b"")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.path != f"/{BINDING}":
                self._reply(404, b"")
                return
            try:
                stats = sensor.reading(body)
            except (ValueError, KeyError, TypeError) as exc:
                # A malformed reading will not get better: 400 says so (no retry loop).
                self._reply(400, json.dumps({"error": str(exc)}).encode())
                return
            self._reply(200, json.dumps({"mean": stats["mean"]}).encode())

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per reading would flood the journal

    return Handler


def simulate(client: DaprClient, every: float, stop: threading.Event) -> None:
    """A temperature drifting around 21 C, written to the binding like a driver would."""
    celsius = 21.0
    while not stop.wait(every):
        celsius = round(celsius + random.uniform(-0.3, 0.3), 2)
        client.invoke_binding(BINDING, "create", json.dumps({"celsius": celsius}))


def main() -> int:
    port = int(os.environ.get("APP_PORT", "8080"))
    every = float(os.environ.get("SENSOR_SIMULATE_EVERY", "0"))
    stop = threading.Event()
    with DaprClient() as client:  # waits until the sidecar's API answers
        server = ThreadingHTTPServer(("127.0.0.1", port), handler_for(Sensor(client)))
        server.daemon_threads = True

        def on_signal(_signum: int, _frame: object) -> None:
            stop.set()
            threading.Thread(target=server.shutdown).start()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        if every > 0:
            threading.Thread(target=simulate, args=(client, every, stop), daemon=True).start()
        print(f"sensor app: listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)  # noqa: T201
        server.serve_forever()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
