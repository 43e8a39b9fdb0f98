"""The pure serial frame decoders, the delimiter escapes, and the serial metadata checks."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_runtime.bindings.serial.framing import (
    Drop,
    FixedDecoder,
    LengthDecoder,
    LineDecoder,
    Output,
    RawDecoder,
    decode_text,
    unescape,
)
from edge_runtime.bindings.serial.metadata import SerialSettings, parse
from edge_runtime.config.manifest import ComponentManifest, Mark
from edge_runtime.config.metadata import MetadataError, ResolvedMetadata, Value

YAML = "components/uart.yaml"


def feed_all(decoder: LineDecoder | LengthDecoder | FixedDecoder | RawDecoder,
             chunks: list[bytes]) -> Output:
    out: Output = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (sorted, deduplicated, clipped)."""
    points = sorted({min(c, len(data)) for c in cuts})
    parts, last = [], 0
    for p in points:
        parts.append(data[last:p])
        last = p
    parts.append(data[last:])
    return parts


class TestLine:
    def test_frames_end_at_the_delimiter_which_is_not_part_of_them(self) -> None:
        d = LineDecoder(b"\r\n", 64)
        assert d.feed(b"t=21.5\r\nh=40\r") == [b"t=21.5"]
        assert d.pending == 5
        assert d.feed(b"\n") == [b"h=40"]  # the delimiter was split across two reads
        assert d.pending == 0

    def test_empty_lines_are_skipped(self) -> None:
        assert LineDecoder(b"\n", 64).feed(b"\n\na\n\n") == [b"a"]

    def test_a_line_at_the_limit_passes_one_over_is_dropped(self) -> None:
        d = LineDecoder(b"\n", 4)
        out = d.feed(b"abcd\nabcde\nok\n")
        assert out[0] == b"abcd"
        assert isinstance(out[1], Drop)
        assert (out[1].reason, out[1].size) == ("oversized", 5)
        assert out[2] == b"ok"

    def test_an_endless_line_is_dropped_once_and_discarded_to_the_next_delimiter(self) -> None:
        d = LineDecoder(b"\r\n", 8)
        out = d.feed(b"x" * 20)
        assert [o.reason for o in out if isinstance(o, Drop)] == ["oversized"]
        assert "discarded up to the next delimiter" in str(out[0])
        assert d.pending == 0  # memory stays bounded while discarding
        assert d.feed(b"y" * 1000 + b"\r") == []
        assert d.feed(b"\nnext\r\n") == [b"next"]  # the delimiter split across reads ends it

    def test_idle_and_reset_drop_an_unfinished_line(self) -> None:
        d = LineDecoder(b"\n", 64)
        d.feed(b"half")
        [drop] = d.idle()
        assert isinstance(drop, Drop)
        assert (drop.reason, drop.size) == ("truncated", 4)
        assert d.idle() == []
        d.feed(b"x" * 100)  # discarding an oversized line: the gap just ends it
        assert d.reset() == []
        assert d.feed(b"fine\n") == [b"fine"]

    def test_an_empty_delimiter_is_refused(self) -> None:
        with pytest.raises(ValueError, match="empty"):
            LineDecoder(b"", 10)

    @given(
        lines=st.lists(st.binary(min_size=1, max_size=30).filter(lambda b: b"\r\n" not in b
                                                                 and not b.endswith(b"\r")),
                       max_size=20),
        cuts=st.lists(st.integers(min_value=0, max_value=800), max_size=10),
    )
    def test_any_split_of_the_stream_gives_the_same_frames(
        self, lines: list[bytes], cuts: list[int]
    ) -> None:
        stream = b"".join(line + b"\r\n" for line in lines)
        out = feed_all(LineDecoder(b"\r\n", 30), split(stream, cuts))
        assert out == lines


class TestLength:
    def test_big_endian_two_byte_prefix(self) -> None:
        d = LengthDecoder(2, "big", 100)
        assert d.feed(b"\x00\x03abc\x00") == [b"abc"]
        assert d.pending == 1
        assert d.feed(b"\x02hi\x00\x00") == [b"hi"]  # a zero length is skipped

    def test_little_endian_and_one_and_four_byte_prefixes(self) -> None:
        assert LengthDecoder(2, "little", 300).feed(b"\x02\x01" + b"x" * 258) == [b"x" * 258]
        assert LengthDecoder(1, "big", 10).feed(b"\x01a\x02bc") == [b"a", b"bc"]
        assert LengthDecoder(4, "big", 10).feed(b"\x00\x00\x00\x01z") == [b"z"]

    def test_an_oversized_frame_is_skipped_and_the_stream_stays_in_step(self) -> None:
        d = LengthDecoder(2, "big", 4)
        out = d.feed(b"\x00\x06abc")
        assert [(o.reason, o.size) for o in out if isinstance(o, Drop)] == [("oversized", 6)]
        assert d.feed(b"def\x00\x02ok") == [b"ok"]  # the 6 bytes skipped, across reads

    def test_a_garbage_prefix_skips_until_the_idle_gap(self) -> None:
        d = LengthDecoder(2, "big", 16)
        out = d.feed(b"\xff\xfegarbage")
        assert isinstance(out[0], Drop)
        assert out[0].reason == "oversized"
        assert d.pending > 0
        assert d.idle() == []  # nothing held: the skip just ends
        assert d.feed(b"\x00\x02ok") == [b"ok"]

    def test_an_unfinished_frame_at_the_gap_is_truncated(self) -> None:
        d = LengthDecoder(2, "big", 16)
        d.feed(b"\x00\x05ab")
        [drop] = d.idle()
        assert isinstance(drop, Drop)
        assert (drop.reason, drop.size) == ("truncated", 4)
        assert d.feed(b"\x00\x01x") == [b"x"]
        assert d.reset() == []

    def test_a_bad_width_is_refused(self) -> None:
        with pytest.raises(ValueError, match="1, 2 or 4"):
            LengthDecoder(3, "big", 10)

    @given(
        frames=st.lists(st.binary(min_size=1, max_size=40), max_size=20),
        cuts=st.lists(st.integers(min_value=0, max_value=900), max_size=10),
    )
    def test_any_split_of_the_stream_gives_the_same_frames(
        self, frames: list[bytes], cuts: list[int]
    ) -> None:
        stream = b"".join(len(f).to_bytes(2, "big") + f for f in frames)
        assert feed_all(LengthDecoder(2, "big", 40), split(stream, cuts)) == frames


class TestFixedAndRaw:
    def test_fixed_frames(self) -> None:
        d = FixedDecoder(3)
        assert d.feed(b"abcdefg") == [b"abc", b"def"]
        assert d.pending == 1
        [drop] = d.idle()
        assert isinstance(drop, Drop)
        assert (drop.reason, drop.size) == ("truncated", 1)
        assert d.feed(b"xyz") == [b"xyz"]  # in step again after the gap
        assert d.reset() == []
        with pytest.raises(ValueError, match="at least 1"):
            FixedDecoder(0)

    def test_raw_frames_end_at_the_gap_and_are_cut_at_the_maximum(self) -> None:
        d = RawDecoder(4)
        assert d.feed(b"ab") == []
        assert d.pending == 2
        assert d.feed(b"cdef") == [b"abcd"]
        assert d.idle() == [b"ef"]
        assert d.idle() == []
        d.feed(b"z")
        assert d.reset() == [b"z"]  # raw input has nothing to complete: kept


class TestTextAndEscapes:
    def test_decode_text(self) -> None:
        assert decode_text("é".encode("latin-1"), "latin-1") == "é".encode()
        drop = decode_text(b"\xff\xfe", "utf-8")
        assert isinstance(drop, Drop)
        assert drop.reason == "garbled"
        assert "not utf-8" in drop.detail

    @pytest.mark.parametrize(("text", "expected"), [
        ("\\n", b"\n"), ("\\r\\n", b"\r\n"), ("\n", b"\n"), ("\\x03", b"\x03"),
        ("\\xff", b"\xff"), ("\\t|\\0", b"\t|\0"), ("\\\\", b"\\"), (";", b";"),
        ("é", "é".encode()),
    ])
    def test_unescape(self, text: str, expected: bytes) -> None:
        assert unescape(text) == expected

    @pytest.mark.parametrize(("text", "message"), [
        ("", "empty"), ("\\q", "unknown escape \\\\q"), ("a\\", "lone backslash"),
        ("\\x4", "unknown escape"), ("\\xZZ", "unknown escape"),
    ])
    def test_bad_escapes(self, text: str, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            unescape(text)


def settings(**values: str) -> SerialSettings:
    manifest = ComponentManifest("uart", "bindings.serial", "v1", Mark(YAML, 1))
    md = ResolvedMetadata([Value(k, v, Mark(YAML, 10 + i))
                           for i, (k, v) in enumerate(values.items())])
    return parse(manifest, md)


class TestMetadata:
    def test_defaults(self) -> None:
        s = settings(port="/dev/ttyUSB0")
        assert s == parse(
            ComponentManifest("uart", "bindings.serial", "v1", Mark(YAML, 1)),
            ResolvedMetadata([Value("PORT", "/dev/ttyUSB0", Mark(YAML, 9))]),
        )
        assert (s.baud_rate, s.parity, s.framing, s.delimiter, s.max_frame_bytes,
                s.idle_timeout, s.text) == (9600, "none", "line", b"\n", 4096, 0.0, None)

    def test_everything_given(self) -> None:
        s = settings(port="/dev/serial/by-id/usb-FTDI-if00-port0", baudRate="115200",
                     parity="Even", dataBits="7", stopBits="2", framing="length",
                     lengthBytes="4", byteOrder="little", maxFrameBytes="256",
                     idleTimeout="200ms", encoding="UTF8")
        assert (s.baud_rate, s.parity, s.data_bits, s.stop_bits, s.length_bytes,
                s.byte_order, s.idle_timeout, s.text) == (
            115200, "even", 7, 2.0, 4, "little", 0.2, "utf-8")
        assert isinstance(s.decoder(), LengthDecoder)

    def test_idle_defaults_by_framing(self) -> None:
        assert settings(port="/dev/x", framing="raw").idle_timeout == 0.05
        fixed = settings(port="/dev/x", framing="fixed", frameSize="8")
        assert (fixed.idle_timeout, fixed.frame_size) == (1.0, 8)
        assert isinstance(fixed.decoder(), FixedDecoder)
        assert isinstance(settings(port="/dev/x", framing="raw").decoder(), RawDecoder)

    @pytest.mark.parametrize(("values", "where", "message"), [
        ({}, "uart.yaml:1", "spec.metadata.port"),
        ({"port": "ttyUSB0"}, "uart.yaml:10", "absolute device path"),
        ({"port": "/dev/x", "framing": "fixed"}, "uart.yaml:11", "needs frameSize"),
        ({"port": "/dev/x", "framing": "fixed", "frameSize": "9", "maxFrameBytes": "8"},
         "uart.yaml:12", "over maxFrameBytes"),
        ({"port": "/dev/x", "framing": "raw", "idleTimeout": "0"}, "uart.yaml:12",
         "needs an idleTimeout above 0"),
        ({"port": "/dev/x", "delimiter": "\\q"}, "uart.yaml:11", "unknown escape"),
        ({"port": "/dev/x", "encoding": "klingon"}, "uart.yaml:11", "text codec"),
        ({"port": "/dev/x", "parity": "maybe"}, "uart.yaml:11", "none, even, odd"),
        ({"port": "/dev/x", "framing": "slip"}, "uart.yaml:11", "line, length, fixed, raw"),
    ])
    def test_problems_name_file_line_and_entry(
        self, values: dict[str, str], where: str, message: str
    ) -> None:
        with pytest.raises(MetadataError) as info:
            settings(**values)
        text = str(info.value)
        assert where in text
        assert message in text


def test_drops_inside_the_last_interval_are_logged_at_flush(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from edge_runtime.bindings.serial.report import DropReporter

    now = [0.0]
    reporter = DropReporter("port", interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="edge_runtime.bindings.serial"):
        for _ in range(3):
            reporter.report("garbled", 4, "a frame")
        assert len(caplog.records) == 1  # the first at once, the next two held back
        reporter.flush()
    assert reporter.counts == {"garbled": 3}
    assert "2 more garbled drop(s)" in caplog.records[-1].getMessage()
