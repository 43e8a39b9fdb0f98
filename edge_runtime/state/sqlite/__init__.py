"""``state.sqlite``: a Dapr-compatible state store in one SQLite file (contract §6.2, §8.1)."""

from edge_runtime.state.sqlite.store import SqliteStateStore, create

__all__ = ["SqliteStateStore", "create"]
