"""Sign-in over HTTP: cookies and CSRF, expiry, API tokens, throttling, locking a user out, the lease belonging to
its holder, the one-time link and the sign-in page, and the audit rows every state change leaves."""

from __future__ import annotations

import json

import pytest
from auth_client import PASSWORD, add_user, bearer, sign_in
from episode_factory import record_episode
from fastapi.testclient import TestClient
from ws_client import next_text

from backend.services.audit import AuditQuery


def test_a_cookie_write_without_the_csrf_token_is_refused(client) -> None:
    token = client.headers.pop("X-CSRF-Token")
    r = client.post("/api/robot/estop", json={"engaged": True})
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    wrong = client.post("/api/robot/estop", json={"engaged": True}, headers={"X-CSRF-Token": token[:-2] + "xx"})
    assert wrong.status_code == 403
    assert client.get("/api/robot/status").json()["estop"] is False  # reads need no token; nothing changed
    assert client.post("/api/robot/estop", json={"engaged": True}, headers={"X-CSRF-Token": token}).status_code == 200
    assert client.cookies.get("vla_csrf") == token  # the page's script reads it from here


def test_an_api_token_needs_no_csrf_and_a_revoked_one_stops_working(client, app) -> None:
    created = client.post("/api/auth/tokens", json={"name": "ci"}).json()
    script = TestClient(app, headers={"Authorization": f"Bearer {created['token']}"})
    assert script.get("/api/auth/me").json()["name"] == "alice"
    assert script.post("/api/robot/estop", json={"engaged": True}).status_code == 200  # no CSRF header needed
    assert [t["name"] for t in client.get("/api/auth/tokens").json()] == ["ci"]
    revoked = client.request("DELETE", f"/api/auth/tokens/{created['id']}", json={})  # writes carry JSON
    assert revoked.json()["revoked_at"] is not None
    assert script.get("/api/auth/me").status_code == 401


def test_sessions_expire(client, auth_clock) -> None:
    assert client.get("/api/auth/me").status_code == 200
    auth_clock.advance(3601)  # the tests' session_ttl_s is 3600
    r = client.get("/api/auth/me")
    assert r.status_code == 401 and r.json() == {"detail": "sign in first"}


def test_wrong_passwords_are_throttled_with_retry_after(app) -> None:
    add_user(app, "bob", "operator")
    with TestClient(app) as c:
        for _ in range(5):
            r = c.post("/api/auth/signin", json={"name": "bob", "password": "not his password"})
            assert r.status_code == 401 and r.json() == {"detail": "wrong name or password"}
        r = c.post("/api/auth/signin", json={"name": "bob", "password": PASSWORD})  # right, but locked for now
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert "vla_session" not in c.cookies


def test_a_disabled_user_is_locked_out_on_the_next_request(client, client_as) -> None:
    bob = client_as("bob", "operator")
    assert bob.get("/api/auth/me").status_code == 200
    assert client.post("/api/users/bob/disable", json={}).json()["user"]["active"] is False
    assert bob.get("/api/auth/me").status_code == 401
    assert bob.post("/api/auth/signin", json={"name": "bob", "password": PASSWORD}).status_code == 401


def test_a_password_reset_ends_the_users_sessions(client, client_as) -> None:
    bob = client_as("bob", "operator")
    new = client.post("/api/users/bob/reset-password", json={}).json()["password"]
    assert bob.get("/api/auth/me").status_code == 401
    assert bob.post("/api/auth/signin", json={"name": "bob", "password": new}).status_code == 200


def test_a_second_operator_cannot_release_the_estop_reset_or_discard_the_holders_take(client_as, robot) -> None:
    first, second = client_as("olga", "operator"), client_as("oscar", "operator")
    robot.acquire_lease("olga-tab", "olga")
    assert first.post("/api/robot/recording/start", json={}).status_code == 200
    assert second.post("/api/robot/estop", json={"engaged": True}).status_code == 200  # stopping: anyone
    for path, body in [
        ("/api/robot/estop", {"engaged": False}),
        ("/api/robot/reset", {}),
        ("/api/robot/recording/discard", {}),
        ("/api/robot/recording/save", {"success": True}),
        ("/api/robot/source", {"name": "expert"}),
    ]:
        r = second.post(path, json=body)
        assert r.status_code == 403 and "'olga' holds it" in r.json()["detail"], (path, r.text)
    status = first.get("/api/robot/status").json()
    assert status["recording"]["active"] and status["estop"] is True and status["controller"] == "olga"
    assert first.post("/api/robot/estop", json={"engaged": False}).status_code == 200
    assert first.post("/api/robot/recording/save", json={"success": True}).json() == {"episode_id": 1}
    assert robot.saved[0]["operator"] == "olga"


def test_an_admin_may_break_the_lease(client, client_as, robot) -> None:
    operator = client_as("olga", "operator")
    assert client.post("/api/robot/lease/break", json={}).status_code == 409  # nobody holds it
    robot.acquire_lease("olga-tab", "olga")
    assert operator.post("/api/robot/lease/break", json={}).status_code == 403
    assert client.post("/api/robot/lease/break", json={}).json()["controller"] is None


def test_identity_fields_from_old_clients_are_refused(client, lease, store) -> None:
    ep = record_episode(store)
    r = client.post("/api/robot/recording/start", json={"operator": "mallory"})
    assert r.status_code == 422 and "operator" in json.dumps(r.json())
    r = client.patch(f"/api/episodes/{ep}/annotation", json={"user": "mallory", "version": 1, "notes": "x"})
    assert r.status_code == 422 and "user" in json.dumps(r.json())


def test_the_socket_needs_a_session_and_takes_identity_from_it(client, app) -> None:
    with TestClient(app) as anonymous:
        with pytest.raises(Exception) as closed:
            with anonymous.websocket_connect("/ws/teleop") as ws:
                ws.receive()
        assert getattr(closed.value, "code", None) == 1008
    token = bearer(app, "olga", "operator")["Authorization"].split()[1]
    with client.websocket_connect(f"/ws/teleop?token={token}") as ws:  # scripts may pass the token in the URL
        ws.send_text(json.dumps({"type": "hello", "control": True}))
        assert next_text(ws, "lease")["holder"] == "olga"


def test_sign_out_clears_the_cookies(client) -> None:
    assert client.post("/api/auth/signout", json={}).json() == {}
    assert "vla_session" not in client.cookies
    assert client.get("/api/auth/me").status_code == 401


def test_me_and_changing_ones_own_password(client_as) -> None:
    bob = client_as("bob", "operator")
    me = bob.get("/api/auth/me").json()
    assert me["name"] == "bob" and me["role"] == "operator" and "users.admin" not in me["permissions"]
    r = bob.post("/api/auth/password", json={"current": "wrong one!", "new": "a new long password"})
    assert r.status_code == 403
    r = bob.post("/api/auth/password", json={"current": PASSWORD, "new": "a new long password"})
    assert r.status_code == 200
    bob.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    assert bob.get("/api/auth/me").status_code == 200  # this session was renewed; the others ended


def test_user_administration(client, client_as) -> None:
    r = client.post("/api/users", json={"name": "mia", "role": "manager"})
    assert r.status_code == 201 and len(r.json()["password"]) >= 12
    assert client.patch("/api/users/mia", json={"role": "engineer"}).json()["user"]["role"] == "engineer"
    listed = client.get("/api/users").json()
    assert listed["count"] == 2 and {u["name"] for u in listed["data"]} == {"alice", "mia"}
    assert client.post("/api/users/alice/disable", json={}).status_code == 409  # the last active admin
    assert client_as("olga", "operator").get("/api/users").status_code == 403


def test_the_one_time_link_signs_in_once(app) -> None:
    add_user(app, "alice", "admin")
    link = app.state.auth.users.issue_sign_in_link("alice", actor=None)
    with TestClient(app) as c:
        r = c.get(f"/signin/link?token={link.secret}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        assert c.get("/api/auth/me").json()["name"] == "alice"
    with TestClient(app) as again:
        assert again.get(f"/signin/link?token={link.secret}", follow_redirects=False).status_code == 401


def test_the_first_start_admin_sets_a_password_without_a_current_one(app) -> None:
    """ensure_admin() makes `admin` with no password; after the link they set one, and then it is needed."""
    link = app.state.auth.users.ensure_admin()
    with TestClient(app) as c:
        c.get(f"/signin/link?token={link.secret}", follow_redirects=False)
        assert c.get("/api/auth/me").json()["has_password"] is False
        headers = {"X-CSRF-Token": c.cookies.get("vla_csrf")}
        r = c.post("/api/auth/password", json={"new": "a new admin password"}, headers=headers)
        assert r.status_code == 200 and r.json()["user"]["has_password"] is True
        headers = {"X-CSRF-Token": r.json()["csrf_token"]}
        assert c.post("/api/auth/password", json={"new": "another one"}, headers=headers).status_code == 403
    with TestClient(app) as fresh:
        r = fresh.post("/api/auth/signin", json={"name": "admin", "password": "a new admin password"})
        assert r.status_code == 200


def test_the_dashboard_sends_anonymous_visitors_to_the_sign_in_page(settings, robot, store, auth) -> None:
    from webapp import create_app

    with TestClient(create_app(settings, session=robot, store=store, auth=auth)) as c:
        r = c.get("/", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/signin?next=/"
        page = c.get("/signin").text
        for element in ("vla-signin-name", "vla-signin-password", "vla-signin-submit", "vla-signin-error"):
            assert f'id="{element}"' in page
        assert "/client/signin/main.js" in page and "/client/signin/signin.css" in page
        assert c.get("/config").status_code == 401  # Gradio itself refuses anonymous callers
        sign_in(c)
        assert c.get("/").status_code == 200


def test_state_changes_leave_audit_rows(client, client_as, app, robot, store) -> None:
    ep, other = record_episode(store), record_episode(store)
    client.post("/api/auth/signin", json={"name": "alice", "password": "wrong password"})
    with client.websocket_connect("/ws/teleop") as ws:
        ws.send_text(json.dumps({"type": "hello", "control": True}))
        assert next_text(ws, "lease")["granted"]
        client.post("/api/robot/estop", json={"engaged": True})
        client.post("/api/robot/estop", json={"engaged": False})
        client.post("/api/robot/recording/start", json={})
        client.post("/api/robot/recording/save", json={"success": True})
        client.post("/api/robot/recording/start", json={})
        client.post("/api/robot/recording/discard", json={})
        ws.send_text(json.dumps({"type": "release"}))
        next_text(ws, "lease")
    robot.acquire_lease("olga-tab", "olga")
    client.post("/api/robot/lease/break", json={})
    client.patch(f"/api/episodes/{ep}/annotation", json={"version": 1, "notes": "x"})
    client.post("/api/episodes/bulk", json={"op": "trash", "episode_ids": [other]})
    client.post("/api/episodes/bulk", json={"op": "purge", "episode_ids": [other]})
    client.post("/api/snapshots", json={"name": "s1", "dataset": "teleop"})
    client.post("/api/exports", json={"snapshot": "s1"})
    client.post("/api/users", json={"name": "mia", "role": "manager"})
    rows, _ = app.state.auth.audit.query(AuditQuery(limit=1000))
    actions = {r.action for r in rows}
    for action in (
        "auth.sign_in", "auth.sign_in_failed", "control.take", "control.release", "control.break",
        "estop.engage", "estop.release", "recording.save", "recording.discard", "episode.edit",
        "episode.trash", "episode.purge", "snapshot.create", "export.start", "user.add",
    ):  # fmt: skip
        assert action in actions, action
    engaged = next(r for r in rows if r.action == "estop.engage")
    assert engaged.actor == "alice" and engaged.address == "testclient"
    assert next(r for r in rows if r.action == "control.break").detail == {"holder": "olga"}
    audit_page = client.get("/api/audit", params={"action": "episode.purge"}).json()
    assert audit_page["count"] == 1 and audit_page["data"][0]["detail"]["episode_ids"] == [other]
    csv = client.get("/api/audit.csv", params={"actor": "alice"})
    assert csv.headers["content-type"].startswith("text/csv") and "estop.engage" in csv.text
    assert client_as("olga", "operator").get("/api/audit").status_code == 403


def test_an_open_socket_of_a_disabled_user_is_closed(client, client_as, monkeypatch) -> None:
    """Disabling a user ends their WebSocket too, not only their next REST call (the socket re-checks its session)."""
    import webapp.ws

    monkeypatch.setattr(webapp.ws, "CREDENTIAL_CHECK_S", 0.05)
    bob = client_as("bob", "operator")
    with bob.websocket_connect("/ws/teleop") as ws:
        ws.send_text(json.dumps({"type": "hello", "control": True}))
        assert next_text(ws, "lease")["granted"]
        assert client.post("/api/users/bob/disable", json={}).json()["user"]["active"] is False
        for _ in range(300):  # ~10 s of frames; the check runs every 50 ms (a socket left open fails below)
            message = ws.receive()
            if message["type"] == "websocket.close":
                break
        assert message["type"] == "websocket.close" and message["code"] == 1008
    assert client.get("/api/robot/status").json()["controller"] is None  # the lease went with the socket
