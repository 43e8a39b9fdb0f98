"""One bindings conformance suite, run over every implementation in ``binding_cases``.

The contract: ``edge_runtime/bindings/contract.py``. Output checks run for rows that claim
operations, input checks for rows that can emit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.bindings import (
    BindingError,
    InputBinding,
    OutputBinding,
    UnsupportedOperationError,
)
from edge_runtime.bindings.storing import STORE_ATTEMPTS
from edge_runtime.config.manifest import ComponentManifest, Mark
from edge_runtime.config.metadata import ResolvedMetadata, Value
from edge_runtime.registry import ComponentContext
from tests.conformance.binding_cases import BINDING_CASES, BindingCase


@pytest.fixture(params=BINDING_CASES, ids=[c.id for c in BINDING_CASES])
def bcase(request: pytest.FixtureRequest) -> BindingCase:
    return request.param


@pytest.fixture
async def binding(bcase: BindingCase, tmp_path: Path) -> AsyncIterator[Any]:
    async with contextlib.AsyncExitStack() as stack:
        metadata = dict(bcase.metadata)
        if bcase.environment is not None:
            metadata.update(await stack.enter_async_context(bcase.environment(tmp_path)))
        manifest = ComponentManifest("b", bcase.type, "v1", Mark("components/b.yaml", 1))
        values = [Value(k, v, Mark("components/b.yaml", 8 + i))
                  for i, (k, v) in enumerate(metadata.items())]
        ctx = ComponentContext(manifest, ResolvedMetadata(values), "app", tmp_path)
        instance = bcase.factory(ctx)
        await instance.init()
        yield instance
        await instance.close()


class Recorder:
    """An input handler that records events; it can be made to fail or to block."""

    def __init__(self) -> None:
        self.events: list[tuple[bytes, Mapping[str, str]]] = []
        self.fail = 0  # fail this many calls
        self.gate: asyncio.Event | None = None  # when set, calls wait for it
        self.entered = asyncio.Event()

    async def __call__(self, data: bytes, metadata: Mapping[str, str]) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise OSError("the inbox could not commit it")
        self.events.append((data, metadata))

    async def wait(self, n: int, within: float = 5.0) -> None:
        for _ in range(int(within / 0.01)):
            if len(self.events) >= n:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{len(self.events)} of {n} events arrived")


def needs_input(case: BindingCase) -> None:
    if case.emit is None:
        pytest.skip("no input side")


def needs_output(case: BindingCase) -> None:
    if not case.operations:
        pytest.skip("no output side")


class TestSides:
    def test_protocols_match_the_claims(self, binding: Any, bcase: BindingCase) -> None:
        assert isinstance(binding, OutputBinding) == bool(bcase.operations)
        assert isinstance(binding, InputBinding) == (bcase.emit is not None)

    async def test_close_is_idempotent(self, binding: Any) -> None:
        await binding.close()
        await binding.close()


class TestOutput:
    def test_operations_are_the_claimed_ones(self, binding: Any, bcase: BindingCase) -> None:
        needs_output(bcase)
        ops = list(binding.operations())
        assert all(isinstance(o, str) and o for o in ops)
        assert set(ops) == set(bcase.operations)

    async def test_unknown_operation_is_refused(self, binding: Any, bcase: BindingCase) -> None:
        needs_output(bcase)
        with pytest.raises(UnsupportedOperationError) as info:
            await binding.invoke("no-such-operation", b"", {})
        assert isinstance(info.value, BindingError)

    async def test_closed_binding_raises_binding_errors(
        self, binding: Any, bcase: BindingCase
    ) -> None:
        needs_output(bcase)
        await binding.close()
        with pytest.raises(BindingError):
            await binding.invoke(bcase.operations[0], b"{}", {})


class TestInput:
    async def test_events_reach_the_handler(self, binding: Any, bcase: BindingCase) -> None:
        needs_input(bcase)
        assert bcase.emit is not None
        rec = Recorder()
        await binding.start(rec)
        await bcase.emit(binding, b'{"n": 1}')
        await rec.wait(1)
        data, metadata = rec.events[0]
        assert bcase.payload(binding, data) == b'{"n": 1}'
        assert isinstance(data, bytes)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())

    async def test_concurrent_events_all_arrive(self, binding: Any, bcase: BindingCase) -> None:
        needs_input(bcase)
        assert bcase.emit is not None
        emit = bcase.emit
        rec = Recorder()
        await binding.start(rec)
        await asyncio.gather(*(emit(binding, str(i).encode()) for i in range(20)))
        await rec.wait(20)
        assert sorted(int(bcase.payload(binding, d)) for d, _ in rec.events) == list(range(20))

    async def test_start_twice_is_refused(self, binding: Any, bcase: BindingCase) -> None:
        needs_input(bcase)
        await binding.start(Recorder())
        with pytest.raises(BindingError):
            await binding.start(Recorder())

    async def test_no_events_after_stop_and_restart_works(
        self, binding: Any, bcase: BindingCase
    ) -> None:
        needs_input(bcase)
        assert bcase.emit is not None
        first, second = Recorder(), Recorder()
        await binding.start(first)
        await binding.stop()
        await binding.stop()  # idempotent
        await bcase.emit(binding, b"while stopped")
        await asyncio.sleep(0.05)
        assert first.events == []
        await binding.start(second)
        await bcase.emit(binding, b"again")
        await second.wait(1)
        assert first.events == []

    async def test_stop_waits_for_a_handler_call_in_progress(
        self, binding: Any, bcase: BindingCase
    ) -> None:
        needs_input(bcase)
        assert bcase.emit is not None
        rec = Recorder()
        rec.gate = asyncio.Event()
        await binding.start(rec)
        emitting = asyncio.create_task(bcase.emit(binding, b"slow"))
        await asyncio.wait_for(rec.entered.wait(), 5)
        stopping = asyncio.create_task(binding.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done()  # the handler is still committing the event
        rec.gate.set()
        await asyncio.wait_for(stopping, 5)
        await emitting
        assert [bcase.payload(binding, d) for d, _ in rec.events] == [b"slow"]

    async def test_a_failed_handler_does_not_lose_the_event_silently(
        self, binding: Any, bcase: BindingCase
    ) -> None:
        """Raising means "not stored": the source redelivers, or whoever caused the event
        is told (it is never reported as done)."""
        needs_input(bcase)
        assert bcase.emit is not None
        rec = Recorder()
        rec.fail = 1
        await binding.start(rec)
        if bcase.redelivers:
            await bcase.emit(binding, b"x")
            await rec.wait(1, within=15)  # a broker resends on the next connection
        elif bcase.dropped is not None:
            rec.fail = STORE_ATTEMPTS  # a binding that reads a device offers it that often
            await bcase.emit(binding, b"lost")
            for _ in range(1000):
                if bcase.dropped(binding):
                    break
                await asyncio.sleep(0.01)
            assert bcase.dropped(binding) == 1  # counted (and logged), never silent
            assert rec.events == []
            await bcase.emit(binding, b"x")
            await rec.wait(1)
        else:
            with pytest.raises(BindingError):
                await bcase.emit(binding, b"x")
            assert rec.events == []
            await bcase.emit(binding, b"x")
            await rec.wait(1)
