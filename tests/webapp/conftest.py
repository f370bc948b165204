"""Web app fixtures: a throwaway store, a fake robot session (same API as backend.control.RobotSession) on a fake
clock, and the app around them in FastAPI's TestClient (the lifespan starts and stops the session's loop)."""

from __future__ import annotations

import pytest
from fake_session import FakeRobotSession
from fastapi.testclient import TestClient
from helpers import open_store

from backend.settings import Settings
from webapp import create_app


@pytest.fixture
def settings(tmp_path) -> Settings:
    # "testserver" is the Host that TestClient sends; a real server answers only to loopback and configured names.
    return Settings(data_dir=tmp_path / "data", image_size=64, allowed_hosts=["testserver"])


@pytest.fixture
def store(settings):
    return open_store(settings.data_dir, settings.database_url, recover=False)


@pytest.fixture
def robot(clock):
    """Commands stay fresh until a test moves `clock` past command_timeout_s: a loaded machine cannot age them."""
    return FakeRobotSession(control_hz=30, clock=clock)


@pytest.fixture
def client(settings, robot, store):
    with TestClient(create_app(settings, session=robot, store=store, ui=False)) as c:
        yield c
