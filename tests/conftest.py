"""Shared test set-up: headless MuJoCo before anything imports it; no hub access; a throwaway store and a fake
clock for any test that asks (tests/helpers.py has the helpers behind them)."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
from helpers import FakeClock, open_store  # noqa: E402  (tests/ is on sys.path: this conftest has no package)


@pytest.fixture
def store(tmp_path):
    """An empty episode store in tmp_path/data on its own SQLite file (folders may override it)."""
    return open_store(tmp_path / "data")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
