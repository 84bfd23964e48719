"""Shared fixtures: seeding, thread count, and the real-data location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$MEDPRUNE_DATA`` or ``../shared/data`` beside the checkout."""
    env = os.environ.get("MEDPRUNE_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed_and_threads() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("MEDPRUNE_TEST_THREADS", "2")))


@pytest.fixture
def data_dir() -> Path:
    """The real datasets folder; skips the test with the reason when it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set MEDPRUNE_DATA to the shared data folder)")
    return path
