"""Logging for journald and balena: one line per event, plain or JSON (``--log-as-json``).

The JSON shape follows daprd's (``time``, ``level``, ``msg``, ``scope``, ``type``, ``app_id``,
``ver``) so log pipelines written for daprd keep working.

Under systemd, when stderr is the journal's stream (``$JOURNAL_STREAM`` names its device and
inode), every line starts with its syslog priority (``<3>`` error ... ``<7>`` debug), which
journald stores as the entry's ``PRIORITY`` field (``journalctl -p warning`` then works), and
the timestamp is left to journald.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

from edge_runtime import __version__

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
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


# syslog(3) priorities, as sd-daemon(3) prefixes them.
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def _priority(levelno: int) -> int:
    return next((prio for level, prio in _PRIORITIES if levelno >= level), 7)


class _JournalFormatter(logging.Formatter):
    """Prefixes every line (a traceback's too) with ``<priority>``: journald makes each line
    an entry of its own."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_priority(record.levelno)}>"
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
    """Configure the root logger once for the process (stderr, which journald captures)."""
    handler = logging.StreamHandler(sys.stderr)
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
    handler.setFormatter(_JournalFormatter(formatter) if to_journal else formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS.get(level.lower(), logging.INFO))
    # uvicorn's own access log is off; its error logger goes through ours.
    # uvicorn's start/stop lines repeat ours once per listener: keep only its warnings.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
