"""Fixtures for the inbox tests: a fake clock and an inbox on a real file in ``tmp_path``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.inbox import Inbox, InboxLimits
from edge_runtime.pubsub import Received


class FakeClock:
    """Wall and monotonic seconds that move only with :meth:`advance`; a settable boot id."""

    def __init__(self, wall: float = 1_800_000_000.0, mono: float = 1000.0) -> None:
        self.now_wall = wall
        self.now_mono = mono
        self.boot_id = "boot-1"

    def wall(self) -> float:
        return self.now_wall

    def monotonic(self) -> float:
        return self.now_mono

    def advance(self, seconds: float) -> None:
        self.now_wall += seconds
        self.now_mono += seconds


OpenInbox = Callable[..., Awaitable[Inbox]]


@pytest.fixture
async def open_inbox(tmp_path: Path) -> AsyncIterator[OpenInbox]:
    """``await open_inbox(clock=..., limits=...)``: an open inbox in ``tmp_path``, closed after."""
    opened: list[Inbox] = []

    async def make(**kwargs: Any) -> Inbox:
        kwargs.setdefault("limits", InboxLimits())
        inbox = Inbox(kwargs.pop("data_dir", tmp_path), **kwargs)
        await inbox.open()
        opened.append(inbox)
        return inbox

    yield make
    for inbox in opened:
        await inbox.close()


def received(data: bytes | str = b"{}", topic: str = "t", **metadata: str) -> Received:
    """A message as a component hands it to the inbox."""
    raw = data.encode() if isinstance(data, str) else data
    return Received(topic=topic, data=raw, subscription=topic, metadata=metadata)
