"""``bindings.serial`` component metadata, decoded and checked (no I/O).

Names: ``port`` (required: the device path; stable ``/dev/serial/by-id/...`` links work, and
are opened again by name after an unplug), ``baudRate`` (9600), ``parity``
(``none``/``even``/``odd``/``mark``/``space``), ``dataBits`` (8), ``stopBits`` (1, 1.5, 2),
``framing`` (``line``/``length``/``fixed``/``raw``, see ``framing.py``), ``delimiter`` (line
framing; default a newline; ``\\n``, ``\\r\\n``, ``\\x03`` escapes), ``frameSize`` (fixed
framing, required there), ``lengthBytes`` (1, 2 or 4) and ``byteOrder`` (``big``/``little``)
for the length prefix, ``maxFrameBytes`` (4096), ``idleTimeout`` (the quiet time that ends a
raw frame, default 50ms, or drops an unfinished one: default 1s for length and fixed framing,
off for lines), ``encoding`` (``raw``: the frame bytes as they are; or a text codec such as
``utf-8``, ``ascii``, ``latin-1``: a frame that does not decode is dropped as garbled, the
rest reach the app as UTF-8), ``reconnectInterval`` (1s: how often a missing port is tried
again) and ``writeTimeout`` (5s), plus the common ``direction`` and ``route``.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Literal

from edge_runtime.bindings.options import CommonMetadata
from edge_runtime.bindings.serial.framing import (
    FRAMINGS,
    Decoder,
    FixedDecoder,
    LengthDecoder,
    LineDecoder,
    RawDecoder,
    unescape,
)
from edge_runtime.config.manifest import ComponentManifest
from edge_runtime.config.metadata import ResolvedMetadata, decode, meta, problem

__all__ = ["SerialMetadata", "SerialSettings", "parse"]

PARITIES = ("none", "even", "odd", "mark", "space")
RAW_ENCODINGS = ("raw", "bytes", "binary")
_IDLE_DEFAULT_S = {"raw": 0.05, "length": 1.0, "fixed": 1.0, "line": 0.0}
_MAX_FRAME = 16 * 1024 * 1024


@dataclass(frozen=True)
class SerialMetadata(CommonMetadata):
    """The decoded ``spec.metadata`` (durations in seconds)."""

    port: str = meta("port", required=True, help="device path, e.g. /dev/serial/by-id/usb-...")
    baud_rate: int = meta("baudRate", kind="int", default=9600, minimum=50, maximum=4_000_000)
    parity: str = meta("parity", kind="choice", choices=PARITIES, default="none")
    data_bits: int = meta("dataBits", kind="int", default=8, minimum=5, maximum=8)
    stop_bits: str = meta("stopBits", kind="choice", choices=("1", "1.5", "2"), default="1")
    framing: str = meta("framing", kind="choice", choices=FRAMINGS, default="line")
    delimiter: str = meta("delimiter", default="\\n", help="line framing: \\n, \\r\\n, \\x03 ...")
    frame_size: int | None = meta("frameSize", kind="int", minimum=1,
                                  help="fixed framing: bytes per frame")
    length_bytes: str = meta("lengthBytes", kind="choice", choices=("1", "2", "4"), default="2")
    byte_order: str = meta("byteOrder", kind="choice", choices=("big", "little"), default="big")
    max_frame_bytes: int = meta("maxFrameBytes", kind="int", default=4096, minimum=1,
                                maximum=_MAX_FRAME)
    idle_timeout: float | None = meta("idleTimeout", kind="duration", minimum=0.0,
                                      help="0 disables; default by framing")
    encoding: str = meta("encoding", default="raw", help="raw, or a text codec: utf-8, ascii")
    reconnect_interval: float = meta("reconnectInterval", kind="duration", default=1.0,
                                     minimum=0.01)
    write_timeout: float = meta("writeTimeout", kind="duration", default=5.0, minimum=0.001)


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """Everything the binding needs, checked. ``text`` is the codec, ``None`` for raw bytes."""

    port: str
    baud_rate: int = 9600
    parity: str = "none"
    data_bits: int = 8
    stop_bits: float = 1.0
    framing: str = "line"
    delimiter: bytes = b"\n"
    frame_size: int = 0
    length_bytes: int = 2
    byte_order: Literal["big", "little"] = "big"
    max_frame_bytes: int = 4096
    idle_timeout: float = 0.0
    text: str | None = None
    reconnect_interval: float = 1.0
    write_timeout: float = 5.0

    def decoder(self) -> Decoder:
        """A fresh decoder for this framing."""
        if self.framing == "line":
            return LineDecoder(self.delimiter, self.max_frame_bytes)
        if self.framing == "length":
            return LengthDecoder(self.length_bytes, self.byte_order, self.max_frame_bytes)
        if self.framing == "fixed":
            return FixedDecoder(self.frame_size)
        return RawDecoder(self.max_frame_bytes)


def parse(manifest: ComponentManifest, md: ResolvedMetadata) -> SerialSettings:
    """Decode and check; raise ``MetadataError`` naming ``file:line`` and the entry."""
    m = decode(SerialMetadata, md, manifest)
    port = m.port.strip()
    if not port.startswith("/"):
        raise problem(manifest, md, "port",
                      f"expected an absolute device path such as /dev/ttyUSB0, got {m.port!r}")
    try:
        delimiter = unescape(m.delimiter)
    except ValueError as exc:
        raise problem(manifest, md, "delimiter", str(exc)) from None
    frame_size = m.frame_size or 0
    if m.framing == "fixed":
        if not frame_size:
            raise problem(manifest, md, "framing", "fixed framing needs frameSize (bytes per"
                          " frame)")
        if frame_size > m.max_frame_bytes:
            raise problem(manifest, md, "frameSize", f"{frame_size} is over maxFrameBytes"
                          f" ({m.max_frame_bytes})")
    idle = _IDLE_DEFAULT_S[m.framing] if m.idle_timeout is None else m.idle_timeout
    if m.framing == "raw" and idle <= 0:
        raise problem(manifest, md, "idleTimeout", "raw framing needs an idleTimeout above 0:"
                      " the quiet time that ends a frame")
    text: str | None = None
    if m.encoding.strip().lower() not in RAW_ENCODINGS:
        try:
            text = codecs.lookup(m.encoding.strip()).name
        except LookupError:
            raise problem(manifest, md, "encoding", f"expected raw or a text codec such as"
                          f" utf-8, ascii or latin-1, got {m.encoding!r}") from None
    return SerialSettings(
        port=port, baud_rate=m.baud_rate, parity=m.parity, data_bits=m.data_bits,
        stop_bits=float(m.stop_bits), framing=m.framing, delimiter=delimiter,
        frame_size=frame_size, length_bytes=int(m.length_bytes),
        byte_order="little" if m.byte_order == "little" else "big",
        max_frame_bytes=m.max_frame_bytes, idle_timeout=idle, text=text,
        reconnect_interval=m.reconnect_interval, write_timeout=m.write_timeout,
    )
