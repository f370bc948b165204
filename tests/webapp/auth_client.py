"""Signing a TestClient in (shared by the web app tests): a user made through the app's own AuthService, then the
real POST /api/auth/signin, so every test also goes through the cookies and the CSRF header a browser sends."""

from __future__ import annotations

from fastapi.testclient import TestClient

from storage.errors import ConflictError

PASSWORD = "correct horse battery"


def add_user(app, name: str, role: str, password: str = PASSWORD) -> None:
    """Create the user unless one of that name exists (tests sign the same name in from several clients)."""
    try:
        app.state.auth.users.add(name, role, password, actor=None)
    except ConflictError:
        pass


def sign_in(client: TestClient, name: str = "alice", role: str = "admin") -> TestClient:
    """Sign `client` in as `name` (created with `role` if new): the session cookie in its jar, X-CSRF-Token in its
    headers. Returns the client."""
    add_user(client.app, name, role)
    r = client.post("/api/auth/signin", json={"name": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return client


def token_for(app, name: str, role: str) -> str:
    """An API token (for `Authorization: Bearer`) of `name`, created with `role` if new."""
    add_user(app, name, role)
    secret, _ = app.state.auth.tokens.create(name, "tests", actor=None)
    return secret


def bearer(app, name: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(app, name, role)}"}
