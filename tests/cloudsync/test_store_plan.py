"""``plan``: the exactly-once rule both cloud stores apply a batch by (the conformance suite,
tests/conformance/test_cloudstore.py, runs the stores themselves)."""

from __future__ import annotations

from edge_runtime.cloudsync.server.store import (
    KIND_DELETE,
    KIND_EVENT,
    KIND_UPSERT,
    ApplyResult,
    RecordIn,
    plan,
)


def test_records_at_or_below_the_cursor_are_replays() -> None:
    records = [RecordIn(KIND_UPSERT, "s", "a", seq, 10 + seq, b"v") for seq in (3, 4, 5, 6)]
    batch = plan(records, 4)
    assert batch.result() == ApplyResult(6, 2, 2)
    assert [hlc for _, _, _, hlc, _ in batch.states] == [15, 16]


def test_a_record_repeated_within_the_batch_is_a_replay() -> None:
    up = RecordIn(KIND_UPSERT, "s", "k", 2, 20, b"x")
    batch = plan([RecordIn(KIND_EVENT, "t", "e", 1, 10, b"e"), up, up], 0)
    assert batch.result() == ApplyResult(2, 2, 1)
    assert len(batch.states) == 1


def test_each_kind_goes_where_it_belongs_in_order() -> None:
    records = [
        RecordIn(KIND_UPSERT, "s", "b", 1, 11, b"1"),
        RecordIn(KIND_EVENT, "ps/t", "e1", 2, 12, b"ev"),
        RecordIn(KIND_DELETE, "s", "b", 3, 13, b"ignored"),
        RecordIn(KIND_UPSERT, "r", "a", 4, 14, b"4"),
        RecordIn(99, "x", "y", 5, 15, b""),  # an unknown kind: only the cursor moves
        RecordIn(KIND_UPSERT, "s", "b", 6, 16, b"6"),
    ]
    batch = plan(records, 0)
    assert batch.result() == ApplyResult(6, 6, 0)
    assert batch.events == [records[1]]
    assert batch.states == [("s", "b", b"1", 11, False), ("s", "b", b"", 13, True),
                            ("r", "a", b"4", 14, False), ("s", "b", b"6", 16, False)]
    assert batch.history == [("s", "b", 11, b"1"), ("r", "a", 14, b"4"), ("s", "b", 16, b"6")]
    assert batch.touched == [("r", "a"), ("s", "b")]


def test_an_empty_or_all_replayed_batch_keeps_the_cursor() -> None:
    assert plan([], 7).result() == ApplyResult(7, 0, 0)
    old = plan([RecordIn(KIND_EVENT, "t", "e", 7, 1, b"")], 7)
    assert old.result() == ApplyResult(7, 0, 1)
    assert old.events == []
