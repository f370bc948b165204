"""Typed dependencies: what a route may ask for, each taken from app.state (built once in create_app).

Use the `...Dep` names in route signatures: `def status(robot: RobotSessionDep) -> dict`. They take the
HTTPConnection, not the Request, so WebSocket routes can use them as well.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from fastapi.requests import HTTPConnection
from sqlalchemy.orm import Session

from backend.services.curation import CurationService
from backend.settings import Settings
from storage.db import get_session
from storage.episode_store import EpisodeStore
from webapp.control import RobotSession


def get_robot_session(conn: HTTPConnection) -> RobotSession:
    """The live robot session (tests pass tests/webapp/fake_session.FakeRobotSession, which has the same API)."""
    return conn.app.state.session


def get_store(conn: HTTPConnection) -> EpisodeStore:
    return conn.app.state.store


def get_curation(conn: HTTPConnection) -> CurationService:
    return conn.app.state.curation


def get_settings(conn: HTTPConnection) -> Settings:
    return conn.app.state.settings


def get_db_session(store: Annotated[EpisodeStore, Depends(get_store)]) -> Iterator[Session]:
    """One SQLAlchemy session per request from the store's factory (storage.db.get_session: rolled back if the route
    raised, closed after the response); commit yourself."""
    yield from get_session(store.session_factory)


def get_current_user() -> str | None:
    """The signed-in user's name; None (anonymous) until sign-in exists. Sign-in replaces this one function (it
    will read the request's session cookie or token), so routes that take CurrentUserDep need no change."""
    return None


RobotSessionDep = Annotated[RobotSession, Depends(get_robot_session)]
StoreDep = Annotated[EpisodeStore, Depends(get_store)]
CurationDep = Annotated[CurationService, Depends(get_curation)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
DbSessionDep = Annotated[Session, Depends(get_db_session)]
CurrentUserDep = Annotated[str | None, Depends(get_current_user)]
