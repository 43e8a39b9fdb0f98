"""Fixtures for the state store unit tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_runtime.registry import ComponentContext
from tests.support.state import FakeClock, MakeContext, context


@pytest.fixture
def make_context(tmp_path: Path) -> MakeContext:
    """``make_context({"connectionString": "x.db"}, durability=...)``; data dir ``tmp_path``."""

    def make(metadata: dict[str, str], **kwargs: Any) -> ComponentContext:
        return context(metadata, kwargs.pop("data_dir", tmp_path), **kwargs)

    return make


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
