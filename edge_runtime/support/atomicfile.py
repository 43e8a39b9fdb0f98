"""Replacing a small file so that a crash or power cut leaves the old content or the new one.

:func:`write_atomic` writes a temporary file in the same folder, fsyncs it, renames it over
the target and fsyncs the folder (so the rename itself is durable).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``, atomically and durably; creates the folder if needed.

    Raises ``OSError`` when it cannot (the old file, if any, is left as it was).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of our own rather than ``tempfile.mkstemp``: that module (with ``random``) is RSS
    # that nothing else in the sidecar needs.
    tmp = str(path.parent / f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = ""
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
