"""Whether files changed: the stamp certificate rotation is detected by.

A stamp is (mtime_ns, size, inode) per file, ``None`` for one that cannot be stat'ed. Writing
a new file and renaming it over the old one (the usual rotation) changes the inode; an edit in
place changes the mtime. Comparing stamps costs one ``stat`` per file and reads nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = ["Stamp", "stamp"]

Stamp = tuple[tuple[int, int, int] | None, ...]


def stamp(paths: Iterable[Path]) -> Stamp:
    """The stamp of ``paths``, in their order."""
    out: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)
