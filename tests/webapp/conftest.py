"""Web app fixtures: a throwaway store, a fake robot session (same API as backend.control.RobotSession) and the
app around them in FastAPI's TestClient (the lifespan starts and stops the session's loop)."""

from __future__ import annotations

import pytest
from fake_session import FakeRobotSession
from fastapi.testclient import TestClient

from backend.settings import Settings
from storage.db import make_engine, make_session_factory, upgrade_database
from storage.episode_store import EpisodeStore
from webapp import create_app


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", image_size=64)


@pytest.fixture
def store(settings):
    settings.data_dir.mkdir(parents=True)
    engine = make_engine(settings.database_url)
    upgrade_database(engine)
    yield EpisodeStore(settings.data_dir, make_session_factory(engine))
    engine.dispose()


@pytest.fixture
def session():
    return FakeRobotSession(control_hz=30)


@pytest.fixture
def client(settings, session, store):
    with TestClient(create_app(settings, session=session, store=store, ui=False)) as c:
        yield c
