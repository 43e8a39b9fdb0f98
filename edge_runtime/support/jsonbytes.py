"""JSON and text to UTF-8 bytes when a string may hold a lone surrogate.

``json.loads`` accepts ``"\\ud800"`` (an escaped half of a surrogate pair) and gives a ``str``
that UTF-8 cannot encode, so ``json.dumps(..., ensure_ascii=False).encode()`` of a value an
app sent raises ``UnicodeEncodeError``. :func:`dumps` writes such a value with ASCII escapes
instead (the same JSON value, as it came); :func:`text` replaces a lone surrogate with U+FFFD,
as Go's decoder (and so daprd) does. Both cost nothing extra for ordinary text.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dumps", "text"]


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact JSON of ``value`` in UTF-8."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          sort_keys=sort_keys).encode()
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"), sort_keys=sort_keys).encode()


def text(value: str) -> bytes:
    """``value`` in UTF-8, a lone surrogate replaced by U+FFFD."""
    try:
        return value.encode()
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()
