"""REST API: robot session routes and episodes (list newest first, paging, thumbnail, video with ranges)."""

from __future__ import annotations

import io

from episode_factory import record_episode
from PIL import Image


def test_status_and_tasks(client):
    status = client.get("/api/robot/status").json()
    assert status["recording"]["active"] is False and status["estop"] is False
    tasks = client.get("/api/robot/tasks").json()
    assert {t["name"] for t in tasks} >= {"pick", "place"}
    assert all(t["templates"] and t["colours"] for t in tasks)


def test_reset_source_estop_and_bad_input(client, robot, lease):
    st = client.post("/api/robot/reset", json={"task": "place", "colour": "blue", "seed": 7}).json()
    assert (st["task"], st["colour"], st["seed"]) == ("place", "blue", 7)
    assert client.post("/api/robot/reset", json={"task": "juggle"}).status_code == 400
    assert client.post("/api/robot/reset", json={"seed": -1}).status_code == 422
    assert client.post("/api/robot/reset", json={"bogus": 1}).status_code == 422  # unknown fields rejected
    assert client.post("/api/robot/source", json={"name": "expert"}).json()["source"] == "expert"
    assert client.post("/api/robot/source", json={"name": "ghost"}).status_code == 422
    assert client.post("/api/robot/estop", json={"engaged": True}).json()["estop"] is True
    assert client.post("/api/robot/estop", json={"engaged": False}).json()["estop"] is False


def test_recording_flow(client, robot, lease):
    assert client.post("/api/robot/recording/save", json={"success": True}).status_code == 409  # not recording
    assert client.post("/api/robot/recording/start", json={"operator": "a/b"}).status_code == 422  # no such field now
    st = client.post("/api/robot/recording/start", json={"dataset": "teleop"}).json()
    assert st["recording"]["active"]
    assert client.post("/api/robot/recording/start", json={}).status_code == 409
    assert client.post("/api/robot/recording/discard", json={}).json()["recording"]["active"] is False
    assert robot.saved == []  # a discarded take leaves nothing
    client.post("/api/robot/recording/start", json={})
    st = client.post("/api/robot/recording/restart", json={}).json()
    assert st["recording"]["active"] and robot.saved == []
    saved = client.post("/api/robot/recording/save", json={"success": False}).json()
    assert saved == {"episode_id": 1} and robot.saved[0]["success"] is False
    assert robot.saved[0]["operator"] == "alice"  # the signed-in user
    st = client.post("/api/robot/recording/auto-stop", json={"enabled": True}).json()
    assert st["recording"]["auto_stop"] is True


def test_episodes_list_newest_first_and_paging(client, store):
    ids = [record_episode(store, operator=f"op{i}") for i in range(3)]
    record_episode(store, dataset="other", source="scripted")
    body = client.get("/api/episodes").json()
    assert body["count"] == 4
    assert [e["id"] for e in body["data"]][1:] == ids[::-1]
    page = client.get("/api/episodes", params={"offset": 1, "limit": 2, "source": "teleop"}).json()
    assert page["count"] == 3 and [e["id"] for e in page["data"]] == ids[::-1][1:3]
    assert client.get("/api/episodes", params={"dataset": "nope"}).json() == {"data": [], "count": 0}
    assert client.get("/api/episodes", params={"limit": 0}).status_code == 422
    one = client.get(f"/api/episodes/{ids[0]}").json()
    assert one["operator"] == "op0" and one["cameras"] == ["front", "wrist"]
    assert one["video_urls"]["wrist"] == f"/api/episodes/{ids[0]}/video/wrist.mp4"
    assert client.get("/api/episodes/9999").status_code == 404


def test_episodes_filters_sort_and_bad_queries(client, store):
    a = record_episode(store, operator="alice")
    b = record_episode(store, operator="bob", dataset="other")
    body = client.get("/api/episodes", params={"operator": "bob", "success": "success"}).json()
    assert body["count"] == 1 and body["data"][0]["id"] == b
    assert client.get("/api/episodes", params={"success": "failure"}).json()["count"] == 0
    assert client.get("/api/episodes", params={"instruction": "RED cube"}).json()["count"] == 2
    asc = client.get("/api/episodes", params={"sort": "id", "order": "asc"}).json()
    assert [e["id"] for e in asc["data"]] == [a, b]
    for bad in ({"sort": "colour"}, {"order": "up"}, {"success": "maybe"}, {"source": "robot"},
                {"created_from": "yesterday"}, {"created_from": "2026-02-01", "created_to": "2026-01-01"}):  # fmt: skip
        r = client.get("/api/episodes", params=bad)
        assert r.status_code == 422, bad
        assert r.json()["detail"], bad  # says what is wrong


def test_thumbnail_and_video_ranges(client, store):
    ep = record_episode(store)
    r = client.get(f"/api/episodes/{ep}/thumbnail.jpg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size[0] > 0
    assert client.get(f"/api/episodes/{ep}/thumbnail.jpg", params={"camera": "nope"}).status_code == 404
    full = client.get(f"/api/episodes/{ep}/video/front.mp4")
    assert full.status_code == 200 and full.headers["content-type"] == "video/mp4"
    assert full.headers.get("accept-ranges") == "bytes"
    part = client.get(f"/api/episodes/{ep}/video/front.mp4", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == full.content[:100]
    assert client.get(f"/api/episodes/{ep}/video/side.mp4").status_code == 404


def test_openapi_lists_the_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/robot/status", "/api/robot/recording/save", "/api/episodes", "/api/episodes/{episode_id}"} <= set(
        paths
    )
    assert client.get("/docs").status_code == 200
    module = client.get("/client/teleop/main.js")  # the browser code, clear of Gradio's /static and /assets
    assert module.status_code == 200 and module.headers["cache-control"] == "no-cache"
    assert "javascript" in module.headers["content-type"]  # browsers refuse an ES module served as anything else
