"""Attacks through the operator's own browser: a foreign page's WebSocket, DNS rebinding (a foreign Host), a
cross-site form post, and another local web app reading the API through CORS (webapp/security.py)."""

from __future__ import annotations

import json

import pytest
from auth_client import sign_in
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect
from ws_client import next_frame, next_text

from backend.settings import Settings
from run import _exposed_warning, _is_loopback
from webapp import create_app
from webapp.security import trusted_hosts
from webapp.ws import POLICY_VIOLATION

HELLO = json.dumps({"type": "hello", "control": True})


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "http://testserver:9999", "https://testserver", "http://localhost"]
)
def test_a_foreign_origin_websocket_is_closed_before_any_frame_or_lease(client, robot, origin) -> None:
    with pytest.raises(WebSocketDisconnect) as closed:
        with client.websocket_connect("/ws/teleop", headers={"origin": origin}) as ws:
            ws.send_text(HELLO)  # never reached: the handshake itself is refused
            next_frame(ws)
    assert closed.value.code == POLICY_VIOLATION
    assert robot.status()["controller"] is None


@pytest.mark.parametrize("headers", [{"origin": "http://testserver"}, {}], ids=["own origin", "no origin"])
def test_the_dashboard_and_non_browser_clients_may_connect(client, headers) -> None:
    with client.websocket_connect("/ws/teleop", headers=headers) as ws:
        ws.send_text(HELLO)
        assert next_text(ws, "lease")["granted"] is True
        assert next_frame(ws)["tick"] >= 0


def test_a_foreign_host_header_gets_400(client) -> None:
    assert client.get("/api/robot/status", headers={"host": "rebound.evil.example"}).status_code == 400
    assert client.get("/api/robot/status", headers={"host": "testserver:7860"}).status_code == 200
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect("/ws/teleop", headers={"host": "rebound.evil.example"}):
            pass
    assert denied.value.status_code == 400


def test_trusted_hosts_are_loopback_the_bound_address_and_the_configured_names(tmp_path) -> None:
    assert trusted_hosts(Settings(data_dir=tmp_path)) == ["localhost", "127.0.0.1", "[::1]"]
    assert trusted_hosts(Settings(data_dir=tmp_path, host="0.0.0.0")) == ["localhost", "127.0.0.1", "[::1]"]
    lan = Settings(data_dir=tmp_path, host="192.168.1.5", allowed_hosts="Dash.Lab.Example, fe80::1")
    assert trusted_hosts(lan)[3:] == ["192.168.1.5", "dash.lab.example", "[fe80::1]"]


@pytest.mark.parametrize(
    "body",
    [{"data": {"confirm": "1"}}, {"content": "{}", "headers": {"content-type": "text/plain"}}, {}],
    ids=["form", "text/plain", "no body"],
)
def test_a_state_change_without_a_json_body_gets_415_and_changes_nothing(client, lease, body) -> None:
    client.post("/api/robot/recording/start", json={})
    r = client.post("/api/robot/recording/discard", **body)
    assert r.status_code == 415 and "application/json" in r.json()["detail"]
    assert client.get("/api/robot/status").json()["recording"]["active"] is True
    assert client.post("/api/robot/recording/discard", json={}).json()["recording"]["active"] is False


def test_another_local_origin_gets_no_credentialed_cors_from_the_api_or_gradio(settings, robot, store) -> None:
    foreign = {"origin": "http://localhost:9999"}
    preflight = {**foreign, "access-control-request-method": "POST", "access-control-request-headers": "content-type"}
    # A loopback Host: Gradio's own CORS layer echoes any loopback origin (with credentials) only then.
    app = create_app(settings, session=robot, store=store, ui=True)
    with TestClient(app, base_url="http://127.0.0.1:7860") as client:
        sign_in(client)
        for path in ("/", "/config", "/api/robot/status", "/gradio_api/info"):
            answers = [client.get(path, headers=foreign), client.options(path, headers=preflight)]
            assert answers[0].status_code == 200, path
            for r in answers:
                assert "access-control-allow-origin" not in r.headers, (path, r.request.method)
                assert "access-control-allow-credentials" not in r.headers, (path, r.request.method)
        r = client.options("/api/robot/recording/discard", headers=preflight)
        assert r.status_code == 400  # the browser never sends the POST itself


def test_serve_warns_when_bound_beyond_loopback(tmp_path) -> None:
    assert all(map(_is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "localhost"]))
    assert not any(map(_is_loopback, ["0.0.0.0", "::", "192.168.1.5", "dash.lab.example"]))
    warning = _exposed_warning(Settings(data_dir=tmp_path, host="0.0.0.0", port=8000))
    assert "every network interface (0.0.0.0:8000)" in warning and "without TLS" in warning and "README" in warning
