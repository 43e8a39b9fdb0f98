"""The inbox's in-memory set of recent event ids (dedup), compact and exact enough.

Each id is kept as a 12-byte BLAKE2b digest of ``sub_key`` and ``event_id`` in one
``bytearray``: an open-addressing table with linear probing, at most 80 % full, so an id costs
15-60 bytes (the table doubles when it would pass 80 % and halves below 20 %; 100,000 ids take
1.5 MiB, 110,000 take 3 MiB), against ~130 for a Python ``set`` of the id strings. Two
different ids share a digest with probability 2**-96 per pair: with 100,000 ids remembered,
about 1e-24 per arriving event that a new event would be taken for a duplicate, far below any
hardware error rate.

Removal shifts the following entries of its cluster back (no tombstones), so a table that
forgets as many ids as it learns (the dedup window at its bound) never needs rebuilding.
Not thread-safe: the inbox uses it on its event loop only.
"""

from __future__ import annotations

from hashlib import blake2b

__all__ = ["DIGEST_SIZE", "IdSet", "digest"]

DIGEST_SIZE = 12
_EMPTY = bytes(DIGEST_SIZE)
_MIN_SLOTS = 1024
_MAX_LOAD = 0.8
_MIN_LOAD = 0.2


def digest(sub_key: str, event_id: str) -> bytes:
    """The 12-byte key of ``event_id`` in subscription ``sub_key`` (never all zeros)."""
    d = blake2b(f"{sub_key}\x00{event_id}".encode(), digest_size=DIGEST_SIZE).digest()
    return d if d != _EMPTY else b"\x01" + d[1:]


class IdSet:
    """A set of digests (see :func:`digest`)."""

    def __init__(self, slots: int = _MIN_SLOTS) -> None:
        self._slots = _pow2(max(slots, _MIN_SLOTS))
        self._table = bytearray(self._slots * DIGEST_SIZE)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        """Bytes the table takes (what the set costs beyond a fixed ~100 bytes)."""
        return len(self._table)

    def __contains__(self, d: object) -> bool:
        return isinstance(d, bytes) and self._find(d)[1]

    def add(self, d: bytes) -> bool:
        """Add ``d``; ``False`` when it was already there."""
        i, found = self._find(d)
        if found:
            return False
        off = i * DIGEST_SIZE
        self._table[off:off + DIGEST_SIZE] = d
        self._n += 1
        if self._n > self._slots * _MAX_LOAD:
            self._resize(self._slots * 2)
        return True

    def discard(self, d: bytes) -> bool:
        """Remove ``d``; ``False`` when it was not there."""
        i, found = self._find(d)
        if not found:
            return False
        table, mask, size = self._table, self._slots - 1, DIGEST_SIZE
        j = i
        while True:  # shift back the entries of the cluster that may not stay behind a hole
            j = (j + 1) & mask
            off = j * size
            entry = bytes(table[off:off + size])
            if entry == _EMPTY:
                break
            home = self._home(entry)
            # the entry stays if its home lies cyclically in (i, j]
            if (i < j and i < home <= j) or (i > j and (home > i or home <= j)):
                continue
            table[i * size:i * size + size] = entry
            i = j
        table[i * size:i * size + size] = _EMPTY
        self._n -= 1
        if self._slots > _MIN_SLOTS and self._n < self._slots * _MIN_LOAD:
            self._resize(self._slots // 2)
        return True

    def _home(self, d: bytes) -> int:
        return int.from_bytes(d[:8], "little") & (self._slots - 1)

    def _find(self, d: bytes) -> tuple[int, bool]:
        """(slot holding ``d``, True) or (the empty slot where it would go, False)."""
        table, mask, size = self._table, self._slots - 1, DIGEST_SIZE
        i = self._home(d)
        while True:
            off = i * size
            entry = table[off:off + size]
            if entry == d:
                return i, True
            if entry == _EMPTY:
                return i, False
            i = (i + 1) & mask

    def _resize(self, slots: int) -> None:
        old, size = self._table, DIGEST_SIZE
        self._slots = max(_MIN_SLOTS, slots)
        self._table = bytearray(self._slots * size)
        self._n = 0
        for off in range(0, len(old), size):
            entry = bytes(old[off:off + size])
            if entry != _EMPTY:
                i, _ = self._find(entry)
                self._table[i * size:i * size + size] = entry
                self._n += 1


def _pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()
