"""Serial frame decoders: bytes in, frames and counted drops out. Pure: no I/O, no clock.

The binding feeds each chunk it reads to :meth:`Decoder.feed`, calls :meth:`Decoder.idle`
when the line has been quiet for ``idleTimeout``, and :meth:`Decoder.reset` when the port went
away. Each returns, in stream order, the frames completed (``bytes``) and the input dropped
(:class:`Drop`, which the binding counts and logs). Nothing is dropped without a ``Drop``.

Framings (``framing`` metadata):

* ``line``: frames end with ``delimiter`` (not part of the frame). A line longer than
  ``max_frame`` is dropped (``oversized``) and everything up to the next delimiter with it.
  At an idle gap (when ``idleTimeout`` is set) or a reset, an unfinished line is ``truncated``.
* ``length``: each frame is a ``width``-byte unsigned length (``byteorder``), then that many
  bytes. A length over ``max_frame`` is ``oversized``: that many bytes are skipped, so a real
  big frame costs only itself; if the prefix was garbage the skip ends at the next idle gap,
  where the stream is in step again. An unfinished frame at an idle gap is ``truncated``.
* ``fixed``: every frame is ``size`` bytes; an unfinished one at an idle gap is ``truncated``
  (so one lost byte does not shift every later frame).
* ``raw``: a frame is whatever arrived before an idle gap, cut at ``max_frame`` bytes (raw
  input has no boundaries to lose); a reset emits what is held.

Empty frames (two delimiters in a row, a zero length) are not events and are skipped.
Concurrency: a decoder belongs to one reader; not thread-safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "FRAMINGS",
    "Decoder",
    "Drop",
    "FixedDecoder",
    "LengthDecoder",
    "LineDecoder",
    "RawDecoder",
    "decode_text",
    "unescape",
]

FRAMINGS = ("line", "length", "fixed", "raw")

Reason = Literal["oversized", "truncated", "garbled"]


@dataclass(frozen=True, slots=True)
class Drop:
    """Input that did not make a frame: why (the metric label), how many bytes, and a
    sentence for the log."""

    reason: Reason
    size: int
    detail: str


Output = list[bytes | Drop]
"""Frames (``bytes``) and drops, in stream order."""


class Decoder(Protocol):
    """What every framing implements (see the module docs)."""

    @property
    def pending(self) -> int:
        """Bytes held for a frame not complete yet (0 when none)."""
        ...

    def feed(self, data: bytes) -> Output:
        """Take the next chunk read from the port; the frames and drops it completed."""
        ...

    def idle(self) -> Output:
        """The line was quiet for the idle timeout: end or drop what is held."""
        ...

    def reset(self) -> Output:
        """The port went away: what is held will never be completed."""
        ...


class LineDecoder:
    """``line`` framing: frames end with ``delimiter``."""

    def __init__(self, delimiter: bytes, max_frame: int) -> None:
        if not delimiter:
            raise ValueError("the delimiter must not be empty")
        self.delimiter = delimiter
        self.max_frame = max_frame
        self._buf = bytearray()
        self._scan = 0  # where the next delimiter search starts in _buf
        self._discarding = False  # inside a line already dropped as oversized

    @property
    def pending(self) -> int:
        """Bytes held (0 while discarding an oversized line)."""
        return 0 if self._discarding else len(self._buf)

    def feed(self, data: bytes) -> Output:
        """See :class:`Decoder`."""
        out: Output = []
        buf, delim, n = self._buf, self.delimiter, len(self.delimiter)
        buf += data
        start = 0
        while (i := buf.find(delim, max(self._scan, start))) >= 0:
            if self._discarding:
                self._discarding = False  # counted when it crossed the limit
            elif i - start > self.max_frame:
                out.append(self._oversized(i - start, ended=True))
            elif i > start:
                out.append(bytes(buf[start:i]))
            start = i + n
        del buf[:start]
        keep = n - 1  # a delimiter may be split across two reads
        if self._discarding:
            del buf[:max(0, len(buf) - keep)]
        elif len(buf) > self.max_frame + keep:
            out.append(self._oversized(len(buf), ended=False))
            self._discarding = True
            del buf[:max(0, len(buf) - keep)]
        self._scan = max(0, len(buf) - keep)
        return out

    def _oversized(self, size: int, *, ended: bool) -> Drop:
        rest = "" if ended else "; the rest of it is discarded up to the next delimiter"
        return Drop("oversized", size,
                    f"a line of more than {self.max_frame} bytes (maxFrameBytes){rest}")

    def idle(self) -> Output:
        """An unfinished line is dropped (``truncated``); an oversized one ends."""
        return self.reset()

    def reset(self) -> Output:
        """See :class:`Decoder`."""
        held, discarding = len(self._buf), self._discarding
        self._buf.clear()
        self._scan = 0
        self._discarding = False
        if held and not discarding:
            return [Drop("truncated", held,
                         f"an unfinished line of {held} bytes (no delimiter before the gap)")]
        return []


class LengthDecoder:
    """``length`` framing: a ``width``-byte unsigned length, then the frame."""

    def __init__(self, width: int, byteorder: Literal["big", "little"], max_frame: int) -> None:
        if width not in (1, 2, 4):
            raise ValueError(f"the length prefix must be 1, 2 or 4 bytes, got {width}")
        self.width = width
        self.byteorder: Literal["big", "little"] = byteorder
        self.max_frame = max_frame
        self._buf = bytearray()
        self._skip = 0  # bytes of an oversized frame still to discard

    @property
    def pending(self) -> int:
        """Bytes held, or still to skip of an oversized frame."""
        return len(self._buf) + self._skip

    def feed(self, data: bytes) -> Output:
        """See :class:`Decoder`."""
        out: Output = []
        if self._skip:
            cut = min(self._skip, len(data))
            self._skip -= cut
            data = data[cut:]
        buf, w = self._buf, self.width
        buf += data
        pos = 0
        while len(buf) - pos >= w:
            length = int.from_bytes(buf[pos:pos + w], self.byteorder)
            if length > self.max_frame:
                out.append(Drop(
                    "oversized", length,
                    f"a length prefix of {length} bytes, over maxFrameBytes ({self.max_frame});"
                    " skipped (if the prefix was garbage, up to the next idle gap)",
                ))
                have = len(buf) - pos - w
                self._skip = max(0, length - have)
                pos = min(len(buf), pos + w + length)
                continue
            end = pos + w + length
            if end > len(buf):
                break
            if length:
                out.append(bytes(buf[pos + w:end]))
            pos = end
        del buf[:pos]
        return out

    def idle(self) -> Output:
        """A skip ends (the stream is in step again); an unfinished frame is dropped."""
        return self.reset()

    def reset(self) -> Output:
        """See :class:`Decoder`."""
        held = len(self._buf)
        self._buf.clear()
        self._skip = 0
        if held:
            return [Drop("truncated", held, f"an unfinished length-prefixed frame ({held} bytes"
                                            " held) before the gap")]
        return []


def _whole_pieces(buf: bytearray, data: bytes, size: int) -> Output:
    """Append ``data`` to ``buf`` and take every whole ``size``-byte piece off its front."""
    buf += data
    whole = len(buf) - len(buf) % size
    out: Output = [bytes(buf[i:i + size]) for i in range(0, whole, size)]
    del buf[:whole]
    return out


class FixedDecoder:
    """``fixed`` framing: every frame is ``size`` bytes."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"the frame size must be at least 1, got {size}")
        self.size = size
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of the next frame held."""
        return len(self._buf)

    def feed(self, data: bytes) -> Output:
        """See :class:`Decoder`."""
        return _whole_pieces(self._buf, data, self.size)

    def idle(self) -> Output:
        """An unfinished frame is dropped (so the next one starts in step)."""
        return self.reset()

    def reset(self) -> Output:
        """See :class:`Decoder`."""
        held = len(self._buf)
        self._buf.clear()
        if held:
            return [Drop("truncated", held,
                         f"{held} of {self.size} bytes of a fixed-size frame before the gap")]
        return []


class RawDecoder:
    """``raw`` framing: what arrives before an idle gap, at most ``max_frame`` bytes a frame."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held for the current frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> Output:
        """See :class:`Decoder`: full ``max_frame`` pieces come out at once."""
        return _whole_pieces(self._buf, data, self.max_frame)

    def idle(self) -> Output:
        """What is held is a frame."""
        frame = bytes(self._buf)
        self._buf.clear()
        return [frame] if frame else []

    def reset(self) -> Output:
        """What is held is a frame (raw input has nothing to complete)."""
        return self.idle()


def decode_text(frame: bytes, codec: str) -> bytes | Drop:
    """``frame`` decoded with ``codec`` and re-encoded as UTF-8, or a ``garbled`` drop."""
    try:
        return frame.decode(codec).encode("utf-8")
    except UnicodeDecodeError as exc:
        return Drop("garbled", len(frame),
                    f"a frame of {len(frame)} bytes that is not {codec} ({exc.reason} at byte"
                    f" {exc.start})")


_SIMPLE = {"n": b"\n", "r": b"\r", "t": b"\t", "0": b"\0", "\\": b"\\"}
_HEX = frozenset("0123456789abcdefABCDEF")


def unescape(text: str) -> bytes:
    r"""A delimiter as written in YAML (``\n``, ``\r\n``, ``\x03``, ``\t``, ``\0``, ``\\``,
    or literal characters, as UTF-8) as bytes; ``ValueError`` for a bad escape or nothing."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out += ch.encode()
            i += 1
            continue
        esc = text[i + 1:i + 2]
        if esc == "x" and len(text) >= i + 4 and set(text[i + 2:i + 4]) <= _HEX:
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        elif esc in _SIMPLE:
            out += _SIMPLE[esc]
            i += 2
        else:
            what = f"unknown escape \\{esc}" if esc else "a lone backslash at the end"
            raise ValueError(f"{what} (use \\n, \\r, \\t, \\0, \\\\ or \\xHH)")
    if not out:
        raise ValueError("the delimiter must not be empty")
    return bytes(out)
