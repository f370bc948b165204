"""Typed dependencies: what a route may ask for, each taken from app.state (built once in create_app).

Use the `...Dep` names in route signatures: `def status(robot: RobotSessionDep) -> dict`. They take the
HTTPConnection, not the Request, so WebSocket routes can use them as well.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException
from fastapi.requests import HTTPConnection
from sqlalchemy.orm import Session

from backend.jobs import JobQueue
from backend.services.audit import Action, AuditService
from backend.services.auth import AuthService, UserInfo
from backend.services.curation import CurationService
from backend.services.models import ModelRegistry
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


def get_jobs(conn: HTTPConnection) -> JobQueue:
    """The job queue (backend.jobs): the web process submits and steers jobs; workers run them."""
    return conn.app.state.jobs


def get_models(conn: HTTPConnection) -> ModelRegistry:
    """The model registry (backend.services.models), on the store's database and Settings.models_dir."""
    return conn.app.state.models


def get_settings(conn: HTTPConnection) -> Settings:
    return conn.app.state.settings


def get_db_session(store: Annotated[EpisodeStore, Depends(get_store)]) -> Iterator[Session]:
    """One SQLAlchemy session per request from the store's factory (storage.db.get_session: rolled back if the route
    raised, closed after the response); commit yourself."""
    yield from get_session(store.session_factory)


SESSION_COOKIE = "vla_session"
CSRF_COOKIE = "vla_csrf"
CSRF_HEADER = "X-CSRF-Token"


def get_auth(conn: HTTPConnection) -> AuthService:
    """Users, sessions, API tokens and the audit log (backend.services.auth.AuthService, built in create_app)."""
    return conn.app.state.auth


@dataclass(frozen=True)
class Caller:
    """Who sent the request and how: `via` "cookie" (a browser: writes need the CSRF header) or "bearer" (an API
    token: no CSRF, a page cannot make the browser send it); `session` is the cookie's value."""

    user: UserInfo | None
    via: Literal["cookie", "bearer"] | None = None
    session: str | None = None


def _bearer(conn: HTTPConnection) -> str | None:
    scheme, _, credential = conn.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        return credential.strip()
    if conn.scope["type"] == "websocket":  # a script's socket may carry it as ?token= (browsers send the cookie)
        return conn.query_params.get("token")
    return None


def get_caller(conn: HTTPConnection) -> Caller:
    """The request's credentials, checked: an API token (Authorization: Bearer) wins over the session cookie; an
    invalid one of either is anonymous (no fallback from a bad token to the cookie)."""
    return identify(conn, get_auth(conn))


def identify(conn: HTTPConnection, auth: AuthService) -> Caller:
    """get_caller with the services given (inside the mounted Gradio app, conn.app is Gradio's, not ours)."""
    token = _bearer(conn)
    if token is not None:
        user = auth.tokens.resolve(token)
        return Caller(user, "bearer") if user is not None else Caller(None)
    session = conn.cookies.get(SESSION_COOKIE)
    user = auth.sessions.resolve(session) if session else None
    return Caller(user, "cookie", session) if user is not None else Caller(None)


def get_current_user(caller: Annotated[Caller, Depends(get_caller)]) -> UserInfo | None:
    """The signed-in user, or None (anonymous)."""
    return caller.user


def require_user(user: Annotated[UserInfo | None, Depends(get_current_user)]) -> UserInfo:
    """The signed-in user; 401 when anonymous (the /api guard in webapp.permissions refuses them first anyway)."""
    if user is None:
        raise HTTPException(401, "sign in first")
    return user


def client_address(conn: HTTPConnection) -> str | None:
    return conn.client.host if conn.client else None


class Auditor:
    """Appends audit rows as the signed-in user, from the request's client address."""

    def __init__(self, service: AuditService, actor: str | None, address: str | None) -> None:
        self.service, self.actor, self.address = service, actor, address

    def __call__(
        self, action: Action | str, object_type: str | None = None, object_id: str | int | None = None, **detail: Any
    ) -> None:
        self.service.record(self.actor, action, object_type, object_id, address=self.address, detail=detail)


def get_auditor(conn: HTTPConnection, user: Annotated[UserInfo | None, Depends(get_current_user)]) -> Auditor:
    return Auditor(get_auth(conn).audit, user.name if user else None, client_address(conn))


RobotSessionDep = Annotated[RobotSession, Depends(get_robot_session)]
StoreDep = Annotated[EpisodeStore, Depends(get_store)]
CurationDep = Annotated[CurationService, Depends(get_curation)]
ModelsDep = Annotated[ModelRegistry, Depends(get_models)]
JobsDep = Annotated[JobQueue, Depends(get_jobs)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
DbSessionDep = Annotated[Session, Depends(get_db_session)]
AuthDep = Annotated[AuthService, Depends(get_auth)]
CallerDep = Annotated[Caller, Depends(get_caller)]
CurrentUserDep = Annotated[UserInfo, Depends(require_user)]  # the signed-in user (anonymous callers get 401)
AuditDep = Annotated[Auditor, Depends(get_auditor)]
AddressDep = Annotated[str | None, Depends(client_address)]
