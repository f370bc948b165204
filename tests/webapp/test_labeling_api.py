"""The labeling and curation REST API over a real SQLite store: annotation edits with conflicts, history and
undo, bulk operations, trash and purge, trim/split, merges, snapshots, exports, and the 4xx answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from episode_factory import record_episode
from job_runner import run_queued_jobs

from storage.episode_query import SortKey
from storage.models import QualityFlagName


@pytest.fixture
def ep(store) -> int:
    return record_episode(store, n=12)


def patch(client, episode_id, **body):
    return client.patch(f"/api/episodes/{episode_id}/annotation", json=body)


def test_annotate_returns_the_new_version_and_history_records_who(client, ep) -> None:
    got = client.get(f"/api/episodes/{ep}")
    assert got.headers["etag"] == '"1"' and got.json()["version"] == 1
    r = patch(
        client,
        ep,
        version=1,
        instruction="grab the red cube",
        paraphrases=["pick the red block"],
        segments=[{"start": 0, "end": 5, "text": "reach"}, {"start": 6, "end": 11, "text": "grasp"}],
        human_success=False,
        failure_reason="missed_grasp",
        notes="gripper closed early",
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == 2 and body["instruction"] == "grab the red cube"
    assert body["segments"][1] == {"start": 6, "end": 11, "text": "grasp"} and body["failure_reason"] == "missed_grasp"
    (event,) = client.get(f"/api/episodes/{ep}/history").json()
    assert event["user"] == "alice" and event["version"] == 2
    assert event["changes"]["human_success"] == [True, False]


def test_two_users_editing_the_same_version_the_second_gets_409(client, client_as, ep) -> None:
    bob = client_as("bob", "operator")
    assert patch(client, ep, version=1, instruction="alice's words").status_code == 200
    r = bob.patch(f"/api/episodes/{ep}/annotation", json={"version": 1, "instruction": "bob's words"})
    assert r.status_code == 409
    assert r.json()["current_version"] == 2 and "alice" in r.json()["detail"]
    assert client.get(f"/api/episodes/{ep}").json()["instruction"] == "alice's words"  # nothing lost silently
    # If-Match works as well as the body field; a stale one is refused the same way.
    r = bob.patch(f"/api/episodes/{ep}/annotation", json={"notes": "late"}, headers={"If-Match": '"1"'})
    assert r.status_code == 409
    r = bob.patch(f"/api/episodes/{ep}/annotation", json={"notes": "ok"}, headers={"If-Match": '"2"'})
    assert r.status_code == 200 and r.json()["version"] == 3
    assert patch(client, ep, notes="no version").status_code == 428


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"version": 1, "segments": [{"start": 5, "end": 12, "text": "lift"}]}, 422, "outside the episode"),
        ({"version": 1, "instruction": ""}, 422, "instruction must not be empty"),
        ({"version": 1, "instruction": "   "}, 422, "instruction must not be empty"),
        ({"version": 1, "failure_reason": "bored"}, 422, ""),
        ({"version": 1, "failure_reason": "dropped"}, 422, "only be given for a failed episode"),
        ({"version": 1, "colour": "red"}, 422, ""),
    ],
)
def test_bad_annotations_get_a_clear_4xx(client, ep, body, status, message) -> None:
    r = patch(client, ep, **body)
    assert r.status_code == status and message in json.dumps(r.json())
    assert client.get(f"/api/episodes/{ep}").json()["version"] == 1


def test_unknown_episode_is_404_everywhere(client) -> None:
    assert patch(client, 999, version=1, notes="x").status_code == 404
    assert "no episode with id 999" in patch(client, 999, version=1, notes="x").json()["detail"]
    assert client.get("/api/episodes/999/history").status_code == 404
    assert client.post("/api/episodes/999/undo", json={}).status_code == 404
    assert client.get("/api/episodes/999/signals").status_code == 404
    assert client.post("/api/episodes/999/trim", json={"start": 0, "end": 1}).status_code == 404


def test_undo(client, client_as, ep) -> None:
    bob = client_as("bob", "operator")
    patch(client, ep, version=1, human_success=False, failure_reason="collision")
    r = bob.post(f"/api/episodes/{ep}/undo", json={"version": 2})
    assert r.status_code == 200 and r.json()["human_success"] is True and r.json()["failure_reason"] is None
    assert r.json()["version"] == 3
    assert bob.post(f"/api/episodes/{ep}/undo", json={}).status_code == 409  # nothing left


def test_bulk_operations_trash_restore_and_purge(client, store, ep) -> None:
    other = record_episode(store, n=8)
    r = client.post(
        "/api/episodes/bulk",
        json={"op": "annotate", "episode_ids": [ep, other], "changes": {"instruction": "stack"}},
    )
    assert r.json()["episode_ids"] == [ep, other]
    assert {e["instruction"] for e in client.get("/api/episodes").json()["data"]} == {"stack"}
    r = client.post("/api/episodes/bulk", json={"op": "move", "episode_ids": [other], "dataset": "b"})
    assert r.status_code == 200 and client.get(f"/api/episodes/{other}").json()["dataset"] == "b"
    assert client.post("/api/episodes/bulk", json={"op": "purge", "episode_ids": [ep]}).status_code == 409
    client.post("/api/episodes/bulk", json={"op": "trash", "episode_ids": [ep]})
    assert [e["id"] for e in client.get("/api/episodes").json()["data"]] == [other]
    assert [e["id"] for e in client.get("/api/episodes?trashed=true").json()["data"]] == [ep]
    r = client.post("/api/episodes/bulk", json={"op": "purge", "episode_ids": [ep]})
    assert r.json()["episode_ids"] == [ep] and client.get(f"/api/episodes/{ep}").status_code == 404
    bad = client.post("/api/episodes/bulk", json={"op": "annotate", "episode_ids": [other, 12345]})
    assert bad.status_code == 422 and "needs the changes" in bad.json()["detail"]
    bad = client.post(
        "/api/episodes/bulk",
        json={"op": "annotate", "episode_ids": [other, 12345], "changes": {"notes": "x"}},
    )
    assert bad.status_code == 404 and "12345" in bad.json()["detail"]


def test_trim_split_signals_and_quality(client, ep) -> None:
    sig = client.get(f"/api/episodes/{ep}/signals").json()
    assert len(sig["timestamps"]) == 12 and len(sig["action"][0]) == 2 and sig["action_names"] == ["a", "b"]
    r = client.post(f"/api/episodes/{ep}/trim", json={"version": 1, "start": 2, "end": 9})
    assert r.status_code == 200, r.text
    (new,) = r.json()["episode_ids"]
    assert client.get(f"/api/episodes/{new}").json()["length"] == 8
    assert client.post(f"/api/episodes/{new}/split", json={"at": 9}).status_code == 422
    r = client.post(f"/api/episodes/{new}/split", json={"at": 3})
    assert [client.get(f"/api/episodes/{i}").json()["length"] for i in r.json()["episode_ids"]] == [3, 5]
    flags = client.post(f"/api/episodes/{r.json()['episode_ids'][0]}/quality", json={}).json()["quality_flags"]
    assert "too_short" in flags
    assert client.get("/api/episodes?quality_flag=too_short").json()["count"] == 2
    assert client.get("/api/episodes?quality_flag=nope").status_code == 422


def test_datasets_merge_snapshots_and_export(client, store, tmp_path: Path) -> None:
    a = record_episode(store, n=6, dataset="alpha")
    b = record_episode(store, n=6, dataset="beta")
    assert client.post("/api/datasets/beta/merge", json={"into": "alpha"}).json() == {"moved": 1}
    assert [d["name"] for d in client.get("/api/datasets").json()] == ["alpha"]
    patch(client, a, version=1, segments=[{"start": 0, "end": 2, "text": "reach"}])
    r = client.post("/api/snapshots", json={"name": "alpha-v1", "dataset": "alpha"})
    assert r.status_code == 201 and r.json()["episodes"] == [[a, 2], [b, 2]]  # b's version went up with the merge
    assert client.post("/api/snapshots", json={"name": "alpha-v1", "dataset": "alpha"}).status_code == 409
    assert client.get("/api/snapshots/alpha-v1").json()["num_frames"] == 12
    assert client.get("/api/snapshots/nope").status_code == 404
    for body in ({"dataset": "alpha"}, {"snapshot": "alpha-v1"}):
        job = client.post("/api/exports", json=body)
        assert job.status_code == 202, job.text
        assert run_queued_jobs(client.app) == 1  # what the worker process does beside a real server
        done = client.get(f"/api/exports/{job.json()['id']}").json()
        assert done["state"] == "done", done["error"]
        polled = client.get(f"/api/exports/{done['id']}").json()
        assert polled["done"] == polled["total"] > 0
        assert (Path(polled["out_dir"]) / "meta" / "info.json").is_file()
    assert client.post("/api/exports", json={"dataset": "nope"}).status_code == 404
    assert client.post("/api/exports", json={}).status_code == 422


def test_vocabulary_and_openapi(client) -> None:
    vocab = client.get("/api/labeling/vocabulary").json()
    assert vocab["failure_reasons"] == ["missed_grasp", "dropped", "wrong_object", "collision", "timeout", "other"]
    # Every closed list the Label tab offers comes from here (static/label keeps no copies).
    assert vocab["quality_flags"] == [f.value for f in QualityFlagName]
    assert vocab["sort_keys"] == [k.value for k in SortKey]
    assert set(vocab["success_labels"]) == {"success", "failure", "unlabeled"}
    assert "teleop" in vocab["sources"]
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/episodes/{episode_id}/annotation",
        "/api/episodes/{episode_id}/history",
        "/api/episodes/{episode_id}/undo",
        "/api/episodes/bulk",
        "/api/snapshots",
        "/api/exports/{job_id}",
        "/api/datasets/{name}/merge",
    ):
        assert path in paths


def test_episodes_tab_pages_in_sql_and_leaves_out_the_trash(store) -> None:
    from webapp.ui import _signature, episodes_html

    first, second, third = (record_episode(store, n=4) for _ in range(3))
    from storage.annotations import AnnotationService

    AnnotationService(store.session_factory).trash([third], user="a")
    html = episodes_html(store, limit=1)
    assert f'data-episode-id="{second}"' in html and f'data-episode-id="{first}"' not in html
    assert "2 episodes; the newest 1 are shown" in html
    assert _signature(store) == (2, second)
