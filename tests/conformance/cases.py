"""The table of state store implementations the conformance suite runs over."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from edge_runtime.registry import Durability
from edge_runtime.state import TransactionalStore
from edge_runtime.state import memory as memory_store
from edge_runtime.state import sqlite as sqlite_store

OpenStore = Callable[[], Awaitable[TransactionalStore]]


@dataclass(frozen=True)
class Case:
    """One implementation: its factory, its metadata and what it promises."""

    id: str
    type: str
    factory: Callable[..., Any]
    metadata: dict[str, str] = field(default_factory=dict)
    durability: Durability = "full"
    persistent: bool = False  # keeps its data across close and a new instance


CASES = [
    Case("memory", "state.in-memory", memory_store.create),
    Case(
        "sqlite-full", "state.sqlite", sqlite_store.create,
        {"connectionString": "state.db"}, "full", persistent=True,
    ),
    Case(
        "sqlite-normal", "state.sqlite", sqlite_store.create,
        {"connectionString": "file:state.db?_txlock=immediate"}, "normal", persistent=True,
    ),
    Case("sqlite-memory", "state.sqlite", sqlite_store.create, {"connectionString": ":memory:"}),
]
