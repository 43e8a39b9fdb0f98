"""``/metrics`` without prometheus_client's exposition module: our text-format writer gives
the bytes ``generate_latest`` gives, and importing the metrics does not load the exposition
module (its HTTP servers and clients: ~1 MiB of RSS), while the package stays whole for anyone
who asks for the rest of it."""

from __future__ import annotations

import math

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics import Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client.registry import CollectorRegistry

from edge_runtime.observability import metrics
from tests.support.fresh import run_python

AWKWARD = ['plain', 'q"uote', "back\\slash", "new\nline", "ünï ☃", "", "a,b={c}"]


def test_render_matches_generate_latest_for_every_kind() -> None:
    reg = CollectorRegistry(auto_describe=True)
    c = Counter("c_events", "Help with \\ and\nnewline.", ["a", "b"], registry=reg)
    g = Gauge("g_level", "A gauge.", ["k"], registry=reg)
    h = Histogram("h_seconds", "A histogram.", ["k"], buckets=(0.1, 1.0, 10.0), registry=reg)
    s = Summary("s_bytes", "A summary.", registry=reg)
    Counter("c_plain", "No labels.", registry=reg).inc(3)
    Gauge("g_unset", "Never set.", registry=reg)
    Info("i_build", "An info.", registry=reg).info({"version": "1.2", "odd": 'x"y'})
    Enum("e_state", "An enum.", states=["up", "down"], registry=reg).state("down")
    for i, v in enumerate(AWKWARD):
        c.labels(v, str(i)).inc(i + 0.5)
        g.labels(v).set([0, -1.5, 1e-9, 1e21, math.inf, -math.inf, math.nan][i])
        h.labels(v).observe(i * 0.7)
    s.observe(12)
    assert metrics.render(reg) == generate_latest(reg)


def test_render_matches_generate_latest_for_the_registry() -> None:
    metrics.HTTP_REQUESTS.labels(route='x"\\\n', status="500").inc()
    metrics.GRPC_LATENCY.labels(method="GetState", status="OK").observe(0.003)
    try:
        assert metrics.render() == generate_latest(metrics.REGISTRY)
        assert b'edge_runtime_http_requests_total{route="x\\"\\\\\\n",status="500"} 1.0' in (
            metrics.render())
    finally:
        metrics.HTTP_REQUESTS.remove('x"\\\n', "500")
        metrics.GRPC_LATENCY.remove("GetState", "OK")


CHECK = """
import sys
from edge_runtime.observability import metrics
heavy = sorted(m for m in ("prometheus_client.exposition", "http.server", "wsgiref",
                           "prometheus_client.process_collector") if m in sys.modules)
assert heavy == [], heavy
assert metrics.render().startswith(b"# HELP ")
assert "prometheus_client.exposition" not in sys.modules
# The rest of the package is there for whoever asks: its __init__ runs then.
import prometheus_client
assert prometheus_client.Counter is metrics.Counter
assert prometheus_client.generate_latest(metrics.REGISTRY) == metrics.render()
from prometheus_client import values, exposition, REGISTRY
assert REGISTRY is not metrics.REGISTRY
print("ok")
"""


def test_metrics_import_only_the_core_of_prometheus_client() -> None:
    assert run_python(CHECK).strip() == "ok"
