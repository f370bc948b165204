"""Web app fixtures: a throwaway store, a fake robot session (same API as backend.control.RobotSession) on a fake
clock, sign-in services on their own fake clock with a cheap password hasher, and the app around them in
FastAPI's TestClient (the lifespan starts and stops the session's loop), signed in as the admin "alice"."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from auth_client import sign_in
from fake_session import FakeRobotSession
from fastapi.testclient import TestClient
from helpers import FakeClock, open_store

from backend.services.auth import AuthService
from backend.settings import Settings
from webapp import create_app

SIGNED_IN = "alice"  # the default client's user (an admin): what the tests see as "who did it"


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
def auth_clock() -> FakeClock:
    """Seconds since the epoch for sessions, tokens and the throttle; moves only when a test says so."""
    return FakeClock(start=1_750_000_000.0)


@pytest.fixture
def auth(store, auth_clock) -> AuthService:
    # The cheapest argon2 parameters: a sign-in per test must not cost ~0.1 s of a 2-core machine.
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    return AuthService(store.session_factory, secret=b"t" * 32, session_ttl_s=3600, clock=auth_clock, hasher=hasher)


@pytest.fixture
def app(settings, robot, store, auth):
    return create_app(settings, session=robot, store=store, ui=False, auth=auth)


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield sign_in(c, SIGNED_IN, "admin")


@pytest.fixture
def client_as(app, client):
    """Another signed-in client of the same (running) app: client_as("bob", "operator")."""
    return lambda name, role: sign_in(TestClient(app), name, role)


@pytest.fixture
def lease(robot) -> None:
    """The default client's user holds the control lease, as if their Teleop tab had taken control (the robot
    commands under /api/robot belong to the lease holder)."""
    robot.acquire_lease("alice-teleop-tab", SIGNED_IN)
