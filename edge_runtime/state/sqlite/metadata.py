"""``state.sqlite`` component metadata, with Dapr's names (contract §6.2).

Differences from Dapr, on purpose: ``cleanupInterval`` defaults to 1 hour (Dapr: disabled),
because expired rows filling an SD card is worse than a periodic delete; 0 or a negative value
disables it. ``keyPrefix`` and ``actorStateStore`` are read by the runtime, not here.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote

from edge_runtime.config.metadata import decode, meta, problem
from edge_runtime.registry import ComponentContext

__all__ = ["SqliteMetadata", "SqliteTarget", "parse"]

log = logging.getLogger(__name__)

_IDENTIFIER = re.compile(r"[A-Za-z0-9_]+")
_FORBIDDEN_PRAGMAS = ("busy_timeout", "journal_mode")
_MEMORY = (":memory:", "file::memory:")


@dataclass(frozen=True)
class SqliteMetadata:
    """The decoded ``spec.metadata`` (durations in seconds)."""

    connection_string: str = meta("connectionString", aliases=("url",), required=True)
    timeout: float = meta(
        "timeout", aliases=("timeoutInSeconds",), kind="duration", default=20.0, minimum=1.0,
        help="per-operation timeout",
    )
    busy_timeout: float = meta("busyTimeout", kind="duration", default=2.0, minimum=0.0)
    disable_wal: bool = meta("disableWAL", kind="bool", default=False)
    table_name: str = meta("tableName", default="state")
    metadata_table_name: str = meta("metadataTableName", default="metadata")
    cleanup_interval: float = meta(
        "cleanupInterval", aliases=("cleanupIntervalInSeconds",), kind="duration",
        default=3600.0, help="0 or negative disables the periodic delete of expired rows",
    )


@dataclass(frozen=True, slots=True)
class SqliteTarget:
    """Where the database is: ``path`` ``None`` means in memory."""

    path: Path | None
    read_only: bool = False
    immutable: bool = False

    @property
    def memory(self) -> bool:
        """Whether the database lives in memory only."""
        return self.path is None


def parse(ctx: ComponentContext) -> tuple[SqliteMetadata, SqliteTarget]:
    """Decode and check the metadata; raise ``MetadataError`` naming ``file:line`` and field."""
    md = ctx.metadata
    settings = decode(SqliteMetadata, md, ctx.manifest)
    for name, value in (
        ("tableName", settings.table_name),
        ("metadataTableName", settings.metadata_table_name),
    ):
        if not _IDENTIFIER.fullmatch(value):
            raise problem(
                ctx.manifest, md, name,
                f"expected letters, digits and '_' only (it becomes a table name), got {value!r}",
            )
    field = "connectionString" if "connectionString" in md else "url"
    try:
        target = _target(settings.connection_string.strip(), ctx)
    except ValueError as exc:
        raise problem(ctx.manifest, md, field, str(exc)) from None
    return settings, target


def _target(conn: str, ctx: ComponentContext) -> SqliteTarget:
    """Interpret a connection string: a path, a ``file:`` URI with options, or memory."""
    if not conn:
        raise ValueError("is required: a file path, a file: URI or :memory:")
    if conn.lower() in _MEMORY:
        return SqliteTarget(None)
    if not conn.lower().startswith("file:"):
        return SqliteTarget(ctx.resolve_path(conn))
    raw, _, query = conn[len("file:"):].partition("?")
    options = parse_qsl(query, keep_blank_values=True)
    read_only = immutable = False
    for key, value in options:
        low = key.lower()
        if low == "_pragma":
            pragma = value.split("(", 1)[0].split("=", 1)[0].strip().lower()
            if pragma in _FORBIDDEN_PRAGMAS:
                hint = "busyTimeout" if pragma == "busy_timeout" else "disableWAL"
                raise ValueError(
                    f"must not set the {pragma} pragma in the connection string;"
                    f" use the {hint} metadata field"
                )
            log.warning(
                "%s: connection string option _pragma=%s is ignored (only mode=ro,"
                " immutable=1 and mode=memory are used)", ctx.manifest.describe(), value,
            )
        elif low == "mode":
            if value.lower() == "memory":
                return SqliteTarget(None)
            read_only = value.lower() == "ro"
        elif low == "immutable":
            immutable = value.strip() == "1" or value.strip().lower() == "true"
    path = unquote(raw)
    if path.startswith("//"):  # file://host/path: only the local host is meaningful
        host, _, rest = path[2:].partition("/")
        if host not in ("", "localhost"):
            raise ValueError(f"file URIs naming a host ({host!r}) are not supported")
        path = "/" + rest
    if path in ("", ":memory:"):
        return SqliteTarget(None)
    return SqliteTarget(ctx.resolve_path(path), read_only=read_only or immutable,
                        immutable=immutable)

