"""The web layer's own contracts: the typed dependencies, responses read from the stored objects, and where each
error becomes an HTTP answer."""

from __future__ import annotations

from auth_client import sign_in
from episode_factory import record_episode
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from storage.models import Episode
from webapp import create_app
from webapp.deps import CurrentUserDep, DbSessionDep


def test_db_session_and_current_user_dependencies(settings, robot, store) -> None:
    record_episode(store)
    app = create_app(settings, session=robot, store=store, ui=False)

    @app.get("/probe")
    def probe(db: DbSessionDep, user: CurrentUserDep) -> dict:
        return {"episodes": db.scalar(select(func.count()).select_from(Episode)), "user": user.name}

    with TestClient(app) as client:
        assert client.get("/probe").status_code == 401  # anonymous
        sign_in(client, "alice", "operator")
        assert client.get("/probe").json() == {"episodes": 1, "user": "alice"}


def test_episode_shows_the_effective_label_and_its_urls(client, store) -> None:
    ep = record_episode(store)  # auto and human success
    body = client.get(f"/api/episodes/{ep}").json()
    assert body["effective_success"] is True and body["duration_s"] == round(12 / 30, 3)
    assert body["thumbnail_url"] == f"/api/episodes/{ep}/thumbnail.jpg"
    assert body["video_urls"] == {c: f"/api/episodes/{ep}/video/{c}.mp4" for c in ("front", "wrist")}
    r = client.patch(f"/api/episodes/{ep}/annotation", json={"version": 1, "human_success": False})
    assert r.json()["effective_success"] is False  # the operator's verdict wins over the automatic check


def test_errors_are_mapped_where_they_mean_http(client, store, lease) -> None:
    ep = record_episode(store)
    missing = client.get(f"/api/episodes/{ep}/video/side.mp4").json()["detail"]
    assert "no camera 'side'" in missing and "front" in missing
    assert "exactly one" in str(client.post("/api/exports", json={}).json()["detail"])
    r = client.patch(f"/api/episodes/{ep}/annotation", json={"notes": "x"}, headers={"If-Match": "soon"})
    assert r.status_code == 422 and "whole number" in r.json()["detail"]
    assert client.post("/api/robot/reset", json={"task": "juggle"}).json() == {"detail": "unknown task 'juggle'"}
