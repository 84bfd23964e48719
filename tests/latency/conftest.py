"""Fixtures of the latency tests."""

from __future__ import annotations

import pytest
from latency_fakes import FakeRuntime


@pytest.fixture
def fake_runtime() -> FakeRuntime:
    return FakeRuntime()
