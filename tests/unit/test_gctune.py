"""The garbage collector's settings for a long-running sidecar (``support/gctune``): the young
generation's threshold raised at start, start-up's objects frozen once the sidecar serves and
not before, nothing when it never gets to serve."""

from __future__ import annotations

import asyncio

import pytest

from edge_runtime import cli
from edge_runtime.support import gctune
from tests.support.fresh import run_python


class FakeRuntime:
    """What ``cli._serve`` uses of a runtime: ``ready`` and ``run``."""

    def __init__(self, serves: bool) -> None:
        self.ready = asyncio.Event()
        self.serves = serves

    async def run(self) -> int:
        if not self.serves:
            return 3  # a start error: never ready
        self.ready.set()
        await asyncio.sleep(0.1)
        return 0


@pytest.fixture
def settles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(cli, "SETTLE_AFTER_S", 0.01)
    monkeypatch.setattr(gctune, "settle", lambda: calls.append(1))
    return calls


async def test_the_collector_settles_once_the_sidecar_serves(settles: list[int]) -> None:
    assert await cli._serve(FakeRuntime(serves=True)) == 0  # type: ignore[arg-type]
    assert settles == [1]


async def test_a_sidecar_that_never_serves_does_not_settle(settles: list[int]) -> None:
    assert await cli._serve(FakeRuntime(serves=False)) == 3  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    assert settles == []


TUNED = """
import gc
from edge_runtime.support import gctune
middle, old = gc.get_threshold()[1:]
gctune.tune()
assert gc.get_threshold() == (gctune.YOUNG_THRESHOLD, middle, old), gc.get_threshold()
class Cycle:
    pass
a = Cycle(); a.me = a
assert gc.get_freeze_count() == 0
gctune.settle()
assert gc.get_freeze_count() > 1000, gc.get_freeze_count()
print("ok")
"""


def test_tune_raises_the_young_threshold_and_settle_freezes() -> None:
    assert run_python(TUNED).strip() == "ok"
