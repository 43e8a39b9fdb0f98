"""The table of cloud store implementations the cloud store conformance suite runs over.

The PostgreSQL row gets one database per test folder (reopening in a test finds the same
data) in a throwaway cluster started once per session; skipped with the reason when there
are no PostgreSQL binaries or asyncpg."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_runtime.cloudsync.server.sqlite import SqliteCloudStore
from edge_runtime.cloudsync.server.store import CloudStore
from tests.support import postgres

_databases: dict[Path, str] = {}


def _postgres(folder: Path) -> CloudStore:
    reason = postgres.unavailable()
    if reason is not None:
        pytest.skip(reason)
    from edge_runtime.cloudsync.server.postgres import PostgresCloudStore

    if folder not in _databases:
        _databases[folder] = postgres.cluster().create_db()
    return PostgresCloudStore(_databases[folder])


@dataclass(frozen=True)
class CloudCase:
    """One implementation: how to make a store over a folder, and whether it persists."""

    id: str
    factory: Callable[[Path], CloudStore]
    persistent: bool


CLOUD_CASES = [
    CloudCase("sqlite-file", lambda d: SqliteCloudStore(d / "cloud.db"), True),
    CloudCase("sqlite-memory", lambda _: SqliteCloudStore(None), False),
    CloudCase("postgresql", _postgres, True),
]
