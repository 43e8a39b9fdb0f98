"""Placeholders for ``IN (?, ?, ...)`` lists in a few shapes only.

sqlite3 keeps up to 128 prepared statements per connection, keyed by their SQL text, and a
statement with an ``IN`` list of n placeholders is a program of ~n steps: every list length a
connection meets is another cached statement, ~10 KiB at a few hundred keys. A relay that
acknowledges batches of 1 to 500 rows filled its writer connection's cache with lengths it had
not met yet for hundreds of thousands of messages: ~5 MiB more RSS, bounded but slow to
reach (issue 8, docs/performance/footprint.md). Padding the list to the next power of two
with repeats of its last value (``x IN (a, b, b, b)`` is ``x IN (a, b)``) leaves 10 shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def in_list(values: Sequence[T]) -> tuple[str, list[T]]:
    """(``"?,?,..."``, the values padded to that many) for ``... IN ({marks})``; ``values``
    must not be empty."""
    if not values:
        raise ValueError("an IN list needs a value")
    n = 1 << (len(values) - 1).bit_length()
    padded = list(values)
    padded.extend(padded[-1:] * (n - len(padded)))
    return ",".join("?" * n), padded
