"""The bytes a ``write`` sends, from its data and request metadata ``encoding`` (pure).

* ``raw`` (the default): the data as given (gRPC's ``InvokeBinding`` passes bytes through;
  the HTTP API passes daprd's JSON re-encoding of ``data``, quotes included);
* ``text``: the data is a JSON string (as the HTTP API sends ``"data": "AT\\r\\n"``); its
  characters are written in the component's text codec, else UTF-8;
* ``base64``: the data is base64 text, or a JSON string holding it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

__all__ = ["write_payload"]


def write_payload(data: bytes, metadata: Mapping[str, str], codec: str | None) -> bytes:
    """The bytes to write; ``ValueError`` says what is wrong with the request."""
    encoding = next((v for k, v in metadata.items() if k.lower() == "encoding"), "raw")
    encoding = encoding.strip().lower()
    if encoding == "raw":
        return bytes(data)
    if encoding not in ("text", "base64"):
        raise ValueError(f"metadata encoding must be raw, text or base64, got {encoding!r}")
    text = _json_string(data)
    if encoding == "text":
        if text is None:
            raise ValueError("with encoding text the data must be a JSON string")
        try:
            return text.encode(codec or "utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"the text cannot be written as {codec}: {exc.reason}") from None
    if text is None:
        text = bytes(data).decode("ascii", errors="replace")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the data is not valid base64") from None


def _json_string(data: bytes) -> str | None:
    """``data`` as a JSON string's text, or ``None`` when it is not one."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, str) else None
