"""Logging for journald and balena: one line per event, plain or JSON (``--log-as-json``).

The JSON shape follows daprd's (``time``, ``level``, ``msg``, ``scope``, ``type``, ``app_id``,
``ver``) so log pipelines written for daprd keep working; a record emitted while a request or
event with a W3C ``traceparent`` is handled adds ``trace_id`` and ``span_id``
(:mod:`~edge_runtime.observability.tracing`).

Under systemd, when stderr is the journal's stream (``$JOURNAL_STREAM`` names its device and
inode) and journald's socket exists (``/run/systemd/journal/socket``, or
``$EDGE_RUNTIME_JOURNAL_SOCKET``), every record goes to journald over its native protocol, with
structured fields (``PRIORITY``, ``CODE_*``, ``LOGGER``, ``EDGE_APP_ID``, ``TRACE_ID``, ...: see
:mod:`~edge_runtime.observability.journal`); ``MESSAGE`` is the line the other modes write,
without a timestamp (journald stamps entries), a traceback included. A record the socket refuses
is written to stderr as a line starting with its syslog priority (``<3>`` error ... ``<7>``
debug), which journald stores as ``PRIORITY``; that is also the whole behaviour when the journal
stream is there but the socket is not.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

from edge_runtime import __version__
from edge_runtime.observability import journal
from edge_runtime.observability.tracing import TraceFilter

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
}


class _JsonFormatter(logging.Formatter):
    def __init__(self, app_id: str) -> None:
        super().__init__()
        self._app_id = app_id

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower().replace("warning", "warn"),
            "msg": record.getMessage(),
            "scope": record.name,
            "type": "log",
            "app_id": self._app_id,
            "ver": __version__,
        }
        trace_id = getattr(record, "trace_id", "")
        if trace_id:
            entry["trace_id"] = trace_id
            entry["span_id"] = getattr(record, "span_id", "")
        if record.exc_info:
            # Cached where logging.Formatter caches it (the journal's EXCEPTION_TEXT reads it).
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
            entry["error"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class _JournalFormatter(logging.Formatter):
    """Prefixes every line (a traceback's too) with ``<priority>``: journald makes each line
    an entry of its own."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{journal.priority(record.levelno)}>"
        return "\n".join(prefix + line for line in self._inner.format(record).split("\n"))


def journal_stream(fd: int = 2) -> bool:
    """Whether ``fd`` is the journald stream systemd connected (``$JOURNAL_STREAM`` matches)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


def setup(level: str = "info", *, as_json: bool = False, app_id: str = "") -> None:
    """Configure the root logger once for the process: journald's socket under systemd (see
    the module docstring), else stderr (which balena and docker capture)."""
    stream = logging.StreamHandler(sys.stderr)
    try:
        to_journal = journal_stream(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # a replaced stderr (pytest's capture)
        to_journal = False
    formatter: logging.Formatter
    if as_json:
        formatter = _JsonFormatter(app_id)
    elif to_journal:  # journald stamps each entry itself
        formatter = logging.Formatter("%(name)s: %(message)s")
    else:
        formatter = logging.Formatter(
            "%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S"
        )
    stream.setFormatter(_JournalFormatter(formatter) if to_journal else formatter)
    handler: logging.Handler = stream
    path = journal.socket_path()
    if to_journal and journal.usable(path):
        try:
            handler = journal.JournalHandler(path, formatter, fallback=stream, app_id=app_id)
        except OSError:  # no AF_UNIX datagram socket for us: the stream alone, as before
            handler = stream
    handler.addFilter(TraceFilter())
    root = logging.getLogger()
    for old in root.handlers:  # a second setup: the old socket is not needed any more
        if isinstance(old, journal.JournalHandler):
            old.close()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS.get(level.lower(), logging.INFO))
    # uvicorn's own access log is off; its error logger goes through ours.
    # uvicorn's start/stop lines repeat ours once per listener: keep only its warnings.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
