"""Cloud sync's CBOR codec (``encode_value``/``decode_payload``) on cbor2's pure-Python build,
the one 32-bit ARM runs (no armv7l wheel with the C extension; README, "armv7").

The bytes are pinned by vectors (ints across the 32- and 64-bit limits, floats, text,
maps past 23 entries, long byte strings), so the device's encoder and the cloud's decoder agree
whatever implementation each runs. The same vectors then go through a subprocess where a
``sys.meta_path`` hook refuses cbor2's C extension (``_cbor2``): the pure-Python encoder must
write the very same bytes and decode them to the same values.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.cloudsync.sources import decode_payload, encode_value

ROOT = Path(__file__).resolve().parents[2]

# (the value as the state store holds it, is it binary, the CBOR bytes in hex)
VECTORS: list[tuple[bytes, bool, str]] = [
    (b'{"n": 1}', False, "a1616e01"),
    (b"null", False, "f6"),
    (b"true", False, "f5"),
    (b"-1", False, "20"),
    (b"23", False, "17"),
    (b"24", False, "1818"),
    (b"255", False, "18ff"),
    (b"65536", False, "1a00010000"),
    (b"4294967296", False, "1b0000000100000000"),  # 2**32: past a 32-bit C long
    (b"-4294967297", False, "3b0000000100000000"),
    (b"18446744073709551615", False, "1bffffffffffffffff"),  # 2**64 - 1
    (b"18446744073709551616", False, "c249010000000000000000"),  # bignum tag 2
    (b"-18446744073709551617", False, "c349010000000000000000"),  # bignum tag 3
    (b"1.5", False, "fb3ff8000000000000"),
    (b"0.1", False, "fb3fb999999999999a"),
    (b"-0.0", False, "fb8000000000000000"),
    (b"1e300", False, "fb7e37e43c8800759c"),
    (b'"h\\u00e9llo \\u2603 \\ud83d\\ude00"', False, "6f68c3a96c6c6f20e2988320f09f9880"),
    (b"\x00\xff", True, "4200ff"),
    (b"not json {", False, "4a6e6f74206a736f6e207b"),  # not JSON: a byte string
    (b"\xff\xfe", False, "42fffe"),
    (b"", True, "40"),
]
# Longer ones, pinned by length and SHA-256.
LONG: list[tuple[bytes, bool, int, str]] = [
    (json.dumps({str(i): i for i in range(30)}).encode(), False, 118,
     "3402e90bcdc4356082dc58daef323d5d9a0bc9df0cd74775c9f57b99ab3c5692"),
    (json.dumps({"a": [1, [2, {"b": None}]], "long": "x" * 300, "list": list(range(25))}).encode(),
     False, 352, "80d789704cad7ec479551545fa6e6f2ad0abea52d9c233ae949885956a627d00"),
    (b"x" * 70000, True, 70005,
     "19cda691c012df54eefd001d48ae92b9a6de119e52185456b70711b3de867a0b"),
]

# Run in a subprocess: refuse the C extension, then encode and decode every vector with the
# codec and print the results as JSON (hex of the bytes; decoded values as JSON-able).
PURE = r"""
import importlib.abc, json, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in ("_cbor2", "cbor2._cbor2"):
            raise ImportError(f"{name} refused: testing the pure-Python build")
        return None

sys.meta_path.insert(0, Refuse())
try:
    import cbor2
except ImportError as exc:
    print(json.dumps({"no_pure": str(exc)}))
    sys.exit(0)
from edge_runtime.cloudsync.sources import decode_payload, encode_value

assert "_cbor2" not in sys.modules and "cbor2._cbor2" not in sys.modules
cases = json.loads(sys.stdin.read())
out = []
for raw_hex, binary, want_hex in cases:
    enc = encode_value(bytes.fromhex(raw_hex), binary)
    dec = decode_payload(bytes.fromhex(want_hex))
    out.append([enc.hex(), dec.hex() if isinstance(dec, bytes) else dec])
print(json.dumps({"dumps": cbor2.dumps.__module__, "results": out}))
"""


def expected_value(raw: bytes, binary: bool) -> Any:
    """What decoding the CBOR of a stored value gives back."""
    if binary:
        return raw
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return raw


def all_cases() -> list[tuple[bytes, bool, bytes]]:
    cases = [(raw, binary, bytes.fromhex(want)) for raw, binary, want in VECTORS]
    cases += [(raw, binary, encode_value(raw, binary)) for raw, binary, _, _ in LONG]
    return cases


@pytest.mark.parametrize(("raw", "binary", "want"), VECTORS)
def test_the_codec_writes_the_pinned_bytes(raw: bytes, binary: bool, want: str) -> None:
    payload = encode_value(raw, binary)
    assert payload.hex() == want
    assert decode_payload(payload) == expected_value(raw, binary)


@pytest.mark.parametrize(("raw", "binary", "size", "digest"), LONG)
def test_long_values_write_the_pinned_bytes(raw: bytes, binary: bool, size: int,
                                            digest: str) -> None:
    payload = encode_value(raw, binary)
    assert (len(payload), hashlib.sha256(payload).hexdigest()) == (size, digest)
    assert decode_payload(payload) == expected_value(raw, binary)


def test_pure_python_cbor2_writes_and_reads_the_same_bytes() -> None:
    cases = all_cases()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    stdin = json.dumps([[raw.hex(), binary, want.hex()] for raw, binary, want in cases])
    done = subprocess.run(
        [sys.executable, "-c", PURE], input=stdin, capture_output=True, text=True, timeout=120,
        check=True, env=env,
    )
    report = json.loads(done.stdout)
    if "no_pure" in report:
        pytest.skip(f"the installed cbor2 has no pure-Python build ({report['no_pure']}); "
                    "pyproject.toml pins cbor2<6, which has one")
    assert report["dumps"].startswith("cbor2")  # the Python encoder, not the extension's
    for (raw, binary, want), (enc_hex, dec) in zip(cases, report["results"], strict=True):
        assert enc_hex == want.hex(), raw[:40]
        value = expected_value(raw, binary)
        assert dec == (value.hex() if isinstance(value, bytes) else value), raw[:40]
