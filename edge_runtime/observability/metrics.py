"""Prometheus metrics, all named ``edge_runtime_*``, in one registry of our own.

Counters exist for every drop, retry, reconnect and quarantine (DESIGN.md §5). Modules import
the metric they update from here, so the full list lives in one place.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "edge_runtime_http_requests",
    "Dapr HTTP API requests answered, by route group and status code.",
    ["route", "status"],
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
UP = Gauge("edge_runtime_up", "1 while the sidecar serves its API.", registry=REGISTRY)


def render() -> bytes:
    """The registry in the Prometheus text format."""
    return generate_latest(REGISTRY)
