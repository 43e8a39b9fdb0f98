"""Prometheus metrics, all named ``edge_runtime_*``, in one registry of our own.

Counters exist for every drop, retry, reconnect and quarantine (DESIGN.md §5). Modules import
the metric they update from here, so the full list lives in one place.

Only prometheus_client's core is imported (its registry and metric types, not the package's
``__init__``, which also imports the exposition module's HTTP servers, push gateway client and
WSGI/ASGI apps: ~1 MiB of RSS, docs/performance/footprint.md). We serve ``/metrics`` ourselves,
so :func:`render` writes the text format (0.0.4) itself; tests/unit/test_metrics_render.py
holds it byte for byte to prometheus_client's ``generate_latest``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from edge_runtime.support.lazypkg import without_init

without_init("prometheus_client")
from prometheus_client.metrics import Counter, Gauge, Histogram  # noqa: E402 - after the package
from prometheus_client.registry import CollectorRegistry  # noqa: E402 - ditto
from prometheus_client.samples import Sample  # noqa: E402 - ditto
from prometheus_client.utils import floatToGoString  # noqa: E402 - ditto

_float_text = cast("Callable[[float], str]", floatToGoString)  # untyped in the library

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "edge_runtime_http_requests",
    "Dapr HTTP API requests answered, by route group and status code.",
    ["route", "status"],
    registry=REGISTRY,
)
GRPC_REQUESTS = Counter(
    "edge_runtime_grpc_requests",
    "Dapr gRPC API calls answered, by method (e.g. GetState) and status code name (OK,"
    " INVALID_ARGUMENT ...); a streaming call is counted when it ends.",
    ["method", "status"],
    registry=REGISTRY,
)
GRPC_LATENCY = Histogram(
    "edge_runtime_grpc_request_seconds",
    "Time to answer a unary Dapr gRPC API call, by method and status code name (streams,"
    " which last as long as the client keeps them, are left out).",
    ["method", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
             10.0),
    registry=REGISTRY,
)
GRPC_STREAMS = Gauge(
    "edge_runtime_grpc_streaming_subscriptions",
    "Streaming subscriptions (SubscribeTopicEventsAlpha1) open now.",
    registry=REGISTRY,
)
DB_COMMITS = Counter(
    "edge_runtime_db_commits",
    "SQLite transactions committed by a writer thread (one fsync each in full durability).",
    ["db"],
    registry=REGISTRY,
)
DB_ROWS = Counter(
    "edge_runtime_db_operations",
    "Write operations committed; divided by commits it gives the group-commit batch size.",
    ["db"],
    registry=REGISTRY,
)
DB_QUARANTINED = Counter(
    "edge_runtime_db_quarantined",
    "Database files found corrupt at start, moved to quarantine/ and recreated empty.",
    ["db"],
    registry=REGISTRY,
)
STATE_EXPIRED_DELETED = Counter(
    "edge_runtime_state_expired_deleted",
    "Expired state rows deleted by the periodic cleanup.",
    ["store"],
    registry=REGISTRY,
)
STORAGE_FULL = Counter(
    "edge_runtime_storage_full",
    "Writes refused because the disk or the data dir's budget was full.",
    ["db"],
    registry=REGISTRY,
)
COMPONENT_INIT_FAILURES = Counter(
    "edge_runtime_component_init_failures",
    "Components that failed to initialise (skipped when ignoreErrors is true).",
    ["component", "type"],
    registry=REGISTRY,
)
OUTBOX_APPENDED = Counter(
    "edge_runtime_outbox_appended",
    "Messages committed to an outbox (acknowledged to the app).",
    ["relay"],
    registry=REGISTRY,
)
OUTBOX_DELIVERED = Counter(
    "edge_runtime_outbox_delivered",
    "Outbox messages the far side acknowledged (broker PUBACK), then deleted.",
    ["relay"],
    registry=REGISTRY,
)
OUTBOX_DROPPED = Counter(
    "edge_runtime_outbox_dropped",
    "Outbox messages dropped, by reason: expired (TTL) or full (onFull: dropOldest).",
    ["relay", "reason"],
    registry=REGISTRY,
)
OUTBOX_UNWRITTEN = Counter(
    "edge_runtime_outbox_unwritten",
    "Outbox messages the far side acknowledged before their commit ran (the fast lane):"
    " never written to storage.",
    ["relay"],
    registry=REGISTRY,
)
OUTBOX_RESENDS = Counter(
    "edge_runtime_outbox_resends",
    "Times a relay went back to its oldest unacknowledged message after a failure.",
    ["relay"],
    registry=REGISTRY,
)
OUTBOX_REJECTED = Counter(
    "edge_runtime_outbox_rejected",
    "Publishes refused because the outbox was full (onFull: reject).",
    ["relay"],
    registry=REGISTRY,
)
UP = Gauge("edge_runtime_up", "1 while the sidecar serves its API.", registry=REGISTRY)


def render(registry: CollectorRegistry = REGISTRY) -> bytes:
    """The registry in the Prometheus text format, version 0.0.4: what prometheus_client's
    ``generate_latest(registry)`` writes for it (metric and label names are all legacy
    Prometheus names here, so none needs quoting)."""
    out: list[str] = []
    for metric in registry.collect():
        name, kind = metric.name, metric.type
        if kind == "counter":
            name += "_total"
        elif kind == "info":
            name, kind = name + "_info", "gauge"
        kind = _TEXT_TYPES.get(kind, kind)
        doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n")
        # OpenMetrics-only samples (``_created``) go last, as gauges of their own.
        extra: dict[str, list[str]] = {}
        for sample in metric.samples:
            for suffix in ("_created", "_gsum", "_gcount"):
                if sample.name == metric.name + suffix:
                    extra.setdefault(suffix, []).append(_sample_line(sample))
                    break
            else:
                out.append(_sample_line(sample))
        for suffix, lines in sorted(extra.items()):
            out.append(f"# HELP {metric.name}{suffix} {doc}\n"
                       f"# TYPE {metric.name}{suffix} gauge\n")
            out.extend(lines)
    return "".join(out).encode()


# OpenMetrics types the 0.0.4 text format writes as another.
_TEXT_TYPES = {"stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}


def _sample_line(s: Sample) -> str:
    labels = ""
    if s.labels:
        labels = "{" + ",".join(
            '{}="{}"'.format(k, v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"'))
            for k, v in sorted(s.labels.items())) + "}"
    stamp = "" if s.timestamp is None else f" {int(float(s.timestamp) * 1000):d}"
    return f"{s.name}{labels} {_float_text(s.value)}{stamp}\n"

# --- MQTT pub/sub (edge_runtime.pubsub.mqtt); ``component`` is the component name -----------
MQTT_CONNECTED = Gauge(
    "edge_runtime_mqtt_connected",
    "1 while the component holds an accepted MQTT connection, else 0.",
    ["component"],
    registry=REGISTRY,
)
MQTT_RECONNECTS = Counter(
    "edge_runtime_mqtt_reconnects",
    "Connection attempts after the first one (after a loss or a failed attempt).",
    ["component"],
    registry=REGISTRY,
)
MQTT_CONNECTION_LOSSES = Counter(
    "edge_runtime_mqtt_connection_losses",
    "Accepted MQTT connections that ended other than by our own close.",
    ["component"],
    registry=REGISTRY,
)
MQTT_CONNECT_FAILURES = Counter(
    "edge_runtime_mqtt_connect_failures",
    "Connection attempts that failed, by reason (network, timeout, tls, refused,"
    " not_authorized).",
    ["component", "reason"],
    registry=REGISTRY,
)
MQTT_TAKEOVERS = Counter(
    "edge_runtime_mqtt_takeovers",
    "Client-id takeover loops detected (the broker closing us right after accepting us).",
    ["component"],
    registry=REGISTRY,
)
MQTT_PUBLISH_FAILURES = Counter(
    "edge_runtime_mqtt_publish_failures",
    "Publishes that raised, by reason (not_connected, refused, timeout, invalid).",
    ["component", "reason"],
    registry=REGISTRY,
)
MQTT_SUBSCRIBE_FAILURES = Counter(
    "edge_runtime_mqtt_subscribe_failures",
    "Topic filters the broker refused in a SUBACK.",
    ["component"],
    registry=REGISTRY,
)
MQTT_MESSAGES_RECEIVED = Counter(
    "edge_runtime_mqtt_messages_received",
    "Incoming MQTT messages (redeliveries included).",
    ["component"],
    registry=REGISTRY,
)
MQTT_MESSAGES_ACKED = Counter(
    "edge_runtime_mqtt_messages_acked",
    "Incoming QoS 1/2 messages acknowledged to the broker after their handler returned.",
    ["component"],
    registry=REGISTRY,
)
MQTT_HANDLER_FAILURES = Counter(
    "edge_runtime_mqtt_handler_failures",
    "Incoming messages whose handler raised: not acknowledged, redelivered after a reconnect.",
    ["component"],
    registry=REGISTRY,
)
MQTT_MESSAGES_UNROUTED = Counter(
    "edge_runtime_mqtt_messages_unrouted",
    "Incoming messages matching no subscription: not acknowledged (redelivered on reconnect).",
    ["component"],
    registry=REGISTRY,
)
MQTT_MESSAGES_DROPPED = Counter(
    "edge_runtime_mqtt_messages_dropped",
    "Incoming messages acknowledged without delivery, by reason (bad_topic: not UTF-8).",
    ["component", "reason"],
    registry=REGISTRY,
)

# --- inbox and delivery to the app (edge_runtime.inbox) -----------------------------------
# ``subscription`` is the inbox key ``pubsub|topic``.
INBOX_RECEIVED = Counter(
    "edge_runtime_inbox_received",
    "Incoming events taken by the inbox (each acknowledged to the broker after its commit, or"
    " after the app accepted it from the fast lane).",
    ["subscription"],
    registry=REGISTRY,
)
INBOX_FAST_LANE = Counter(
    "edge_runtime_inbox_fast_lane",
    "Incoming events of subscriptions with a fast lane, by path: delivered from memory with no"
    " row written (no_row), delivered or retried with a row written (row: the app was slow or"
    " failed), or stored on arrival because events were waiting (stored).",
    ["subscription", "path"],
    registry=REGISTRY,
)
INBOX_DUPLICATES = Counter(
    "edge_runtime_inbox_duplicates",
    "Incoming events not stored because their CloudEvent id was seen (still acknowledged).",
    ["subscription"],
    registry=REGISTRY,
)
INBOX_REJECTED = Counter(
    "edge_runtime_inbox_rejected",
    "Incoming events refused because the inbox backlog was full (not acknowledged: the broker"
    " keeps them).",
    ["subscription"],
    registry=REGISTRY,
)
INBOX_DELIVERED = Counter(
    "edge_runtime_inbox_delivered",
    "Delivery attempts to the app by outcome (success, retry, drop; poison: not deliverable).",
    ["subscription", "outcome"],
    registry=REGISTRY,
)
INBOX_RETRIES = Counter(
    "edge_runtime_inbox_retries",
    "Deliveries scheduled for another attempt after a failure.",
    ["subscription"],
    registry=REGISTRY,
)
INBOX_DROPPED = Counter(
    "edge_runtime_inbox_dropped",
    "Events removed without delivery, by reason (app_drop, expired, unrouted ...); each is also"
    " dead-lettered when the subscription has a dead-letter topic.",
    ["subscription", "reason"],
    registry=REGISTRY,
)
INBOX_EXPIRED = Counter(
    "edge_runtime_inbox_expired",
    "Events whose expiration passed before delivery (dropped; dead-lettered when configured).",
    ["subscription"],
    registry=REGISTRY,
)
INBOX_DEADLETTERED = Counter(
    "edge_runtime_inbox_deadlettered",
    "Events dead-lettered: to the subscription's dead-letter topic, or parked in the local"
    " deadletters table (where=local).",
    ["subscription", "where"],
    registry=REGISTRY,
)
INBOX_BACKLOG = Gauge(
    "edge_runtime_inbox_backlog",
    "Events in the inbox waiting for delivery.",
    ["subscription"],
    registry=REGISTRY,
)
INBOX_BACKLOG_BYTES = Gauge(
    "edge_runtime_inbox_backlog_bytes",
    "Bytes of events in the inbox waiting for delivery (all subscriptions).",
    registry=REGISTRY,
)
INBOX_PARKED = Gauge(
    "edge_runtime_inbox_deadletters",
    "Events parked in the local deadletters table (list and replay with"
    " `edge-runtime deadletters`).",
    registry=REGISTRY,
)
INBOX_SEEN_PRUNED = Counter(
    "edge_runtime_inbox_seen_pruned",
    "Dedup ids forgotten by age or by the per-subscription count limit.",
    registry=REGISTRY,
)

# --- bindings (edge_runtime.bindings, api/bindings.py, runtime/binding_inputs.py) ----------
# Input events share the inbox metrics above under the key ``binding:<name>``.
BINDING_INVOCATIONS = Counter(
    "edge_runtime_binding_invocations",
    "Output binding invocations by binding, operation and result (success, failure).",
    ["binding", "operation", "result"],
    registry=REGISTRY,
)
BINDING_EVENTS_NOT_STORED = Counter(
    "edge_runtime_binding_events_not_stored",
    "Failed attempts to commit an input binding event to the inbox (the binding was told;"
    " a binding that retries counts each attempt, and one that cannot redeliver counts its"
    " own drops, e.g. edge_runtime_gpio_events_lost).",
    ["binding"],
    registry=REGISTRY,
)
GPIO_EVENTS_LOST = Counter(
    "edge_runtime_gpio_events_lost",
    "GPIO edge events lost: the kernel's event buffer overflowed (a gap in seq), or the inbox"
    " could not store them after retries.",
    ["binding"],
    registry=REGISTRY,
)
BINDING_EVENTS_DECLINED = Counter(
    "edge_runtime_binding_events_declined",
    "Input binding events parked as dead letters because the app declined the binding"
    " (its OPTIONS probe failed) after they were committed.",
    ["binding"],
    registry=REGISTRY,
)

# --- service invocation ---------------------------------------------------------------------
INVOCATIONS = Counter(
    "edge_runtime_invocations",
    "Service invocations answered, by route (local app or remote sidecar) and result: ok (the "
    "app answered 2xx/3xx), app_error (it answered another status) or failed (no answer).",
    ["route", "result"],
    registry=REGISTRY,
)
INVOCATION_RETRIES = Counter(
    "edge_runtime_invocation_retries",
    "Invocation attempts retried, by reason: unreachable (built-in, the peer sidecar could not "
    "be reached) or policy (a Resiliency retry policy).",
    ["reason"],
    registry=REGISTRY,
)
INVOCATION_REFUSED = Counter(
    "edge_runtime_invocation_refused",
    "Invocations refused without trying because the target app's circuit breaker is open.",
    ["app"],
    registry=REGISTRY,
)

# --- bindings.serial, bindings.cron (edge_runtime/bindings/serial, bindings/cron) -----------
SERIAL_FRAMES = Counter(
    "edge_runtime_serial_frames",
    "Frames read from a serial port and committed to the inbox.",
    ["binding"],
    registry=REGISTRY,
)
SERIAL_FRAMES_DROPPED = Counter(
    "edge_runtime_serial_frames_dropped",
    "Serial input dropped, by reason: oversized (over maxFrameBytes), truncated (incomplete"
    " at an idle gap or when the port went away), garbled (not valid text in the encoding,"
    " or a length prefix out of sync), overflow (the queue to the inbox was full), not_stored"
    " (the inbox refused it).",
    ["binding", "reason"],
    registry=REGISTRY,
)
SERIAL_CONNECTED = Gauge(
    "edge_runtime_serial_connected",
    "1 while the serial port is open, 0 while it is missing (unplugged) and being retried.",
    ["binding"],
    registry=REGISTRY,
)
SERIAL_DISCONNECTS = Counter(
    "edge_runtime_serial_disconnects",
    "Times an open serial port went away (unplugged adapter, I/O error).",
    ["binding"],
    registry=REGISTRY,
)
SERIAL_BYTES = Counter(
    "edge_runtime_serial_bytes",
    "Bytes read from (in) and written to (out) a serial port.",
    ["binding", "direction"],
    registry=REGISTRY,
)
CLOCK_JUMPS = Counter(
    "edge_runtime_clock_jumps",
    "Wall-clock jumps seen against the monotonic clock (support/clockwatch.py), by direction.",
    ["direction"],
    registry=REGISTRY,
)

CRON_FIRES = Counter(
    "edge_runtime_cron_fires",
    "Times a cron binding's schedule fired (each is one input event).",
    ["binding"],
    registry=REGISTRY,
)

# --- cloud sync -----------------------------------------------------------------------------
CLOUDSYNC_SENT = Counter(
    "edge_runtime_cloudsync_records_sent",
    "Records sent to the cloud, by stream (state:<store> or events); resends count again.",
    ["stream"],
    registry=REGISTRY,
)
CLOUDSYNC_ACKED = Counter(
    "edge_runtime_cloudsync_records_acked",
    "Records the cloud acknowledged (and the device then deleted), by stream.",
    ["stream"],
    registry=REGISTRY,
)
CLOUDSYNC_RECONNECTS = Counter(
    "edge_runtime_cloudsync_reconnects",
    "Cloud sync streams that ended (or could not open) and were retried, by reason.",
    ["reason"],
    registry=REGISTRY,
)
CONFIGURATION_UPDATES_LOST = Counter(
    "edge_runtime_configuration_updates_lost",
    "Configuration updates the app's subscription endpoint did not take (not retried, as in"
    " daprd), by store.",
    ["store"],
    registry=REGISTRY,
)
APP_EVENTS_UNHANDLED = Counter(
    "edge_runtime_app_events_unhandled",
    "Events a gRPC app answered UNIMPLEMENTED: counted as processed (daprd's rule) and so"
    " acknowledged without being handled, by pubsub.",
    ["pubsub"],
    registry=REGISTRY,
)
