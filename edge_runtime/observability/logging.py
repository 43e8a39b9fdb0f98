"""Logging for journald and balena: one line per event, plain or JSON (``--log-as-json``).

The JSON shape follows daprd's (``time``, ``level``, ``msg``, ``scope``, ``type``, ``app_id``,
``ver``) so log pipelines written for daprd keep working.
"""

from __future__ import annotations

import json
import logging
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


def setup(level: str = "info", *, as_json: bool = False, app_id: str = "") -> None:
    """Configure the root logger once for the process (stderr, which journald captures)."""
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(_JsonFormatter(app_id))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS.get(level.lower(), logging.INFO))
    # uvicorn's own access log is off; its error logger goes through ours.
    # uvicorn's start/stop lines repeat ours once per listener: keep only its warnings.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
