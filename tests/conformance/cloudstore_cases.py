"""The table of cloud store implementations the cloud store conformance suite runs over.

A PostgreSQL row joins here once that store exists (its factory, skipped with the reason when
no PostgreSQL binaries are found)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.cloudsync.server.sqlite import SqliteCloudStore
from edge_runtime.cloudsync.server.store import CloudStore


@dataclass(frozen=True)
class CloudCase:
    """One implementation: how to make a store over a folder, and whether it persists."""

    id: str
    factory: Callable[[Path], CloudStore]
    persistent: bool


CLOUD_CASES = [
    CloudCase("sqlite-file", lambda d: SqliteCloudStore(d / "cloud.db"), True),
    CloudCase("sqlite-memory", lambda _: SqliteCloudStore(None), False),
]
