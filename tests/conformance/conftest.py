"""Fixtures running the state conformance suite over every row of ``cases.CASES``.

Every row gets the same injectable wall clock, so TTL behaviour is tested without sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge_runtime.state import TransactionalStore
from tests.conformance.cases import CASES, Case, OpenStore
from tests.support.state import FakeClock, context


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    return request.param


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def open_store(case: Case, tmp_path: Path, clock: FakeClock) -> AsyncIterator[OpenStore]:
    """Builds and initialises a new instance (same data dir each time); closes them all."""
    opened: list[TransactionalStore] = []

    async def make() -> TransactionalStore:
        ctx = context(case.metadata, tmp_path, type_=case.type, durability=case.durability)
        store: TransactionalStore = case.factory(ctx, clock=clock)
        await store.init()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: OpenStore) -> TransactionalStore:
    return await open_store()
