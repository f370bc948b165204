"""POST /api/models/{id}/retrain: the model's training snapshot plus its correction takes (whole, or only the
stretches an operator drove) become a new snapshot, and a fine-tuning job from the model is queued."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import TINY_POLICY_KWARGS, record_episode, synthetic_step

from backend.services.retrain import corrected_stretches
from storage.features import ACTOR, INTERVENTION

# The helpers' synthetic episodes: cameras front + wrist, 4-D state and action.
FITS = {**TINY_POLICY_KWARGS, "state_dim": 4, "action_dim": 4}
ACTORS = ["policy"] * 5 + ["teleop"] * 6 + ["policy"] * 4 + ["teleop"] * 2  # a 6-frame and a 2-frame correction


def test_corrected_stretches_are_runs_of_operator_frames():
    flags = np.array([0, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1], dtype=bool)
    assert corrected_stretches(flags) == [(1, 3), (7, 10)]
    assert corrected_stretches(flags, min_len=4) == [(7, 10)] and corrected_stretches(np.zeros(3, bool)) == []


@pytest.fixture
def parent(app, store, tmp_path, client):
    from vla_core.policies import make_policy

    for i in range(3):
        record_episode(store, 10, dataset="demos", seed=i)
    snapshot = client.post("/api/snapshots", json={"name": "demos-v1", "dataset": "demos"})
    assert snapshot.status_code in (200, 201), snapshot.text
    folder = tmp_path / "parent"
    make_policy("vla_tiny", **FITS).save_pretrained(folder)
    return app.state.models.register(folder, name="pick", created_by="trainer", snapshot_id=snapshot.json()["id"])


def correction(store, model_id, dataset="corrections"):
    def step(i, cameras):
        return {**synthetic_step(i, cameras), "actor": ACTORS[i], "intervention": ACTORS[i] == "teleop" and i > 4}

    return record_episode(store, len(ACTORS), step=step, dataset=dataset, source="intervention", human_success=False,
                          extra={"colour": "red", "model": {"id": model_id, "name": "pick", "version": 1}})  # fmt: skip


def test_retrain_builds_the_snapshot_and_queues_a_fine_tune(client, app, store, parent):
    assert client.post(f"/api/models/{parent.id}/retrain", json={}).status_code == 422  # no corrections yet
    take = correction(store, parent.id)
    correction(store, parent.id + 1000)  # another model's correction: not this model's
    r = client.post(f"/api/models/{parent.id}/retrain", json={"mode": "corrected"})
    assert r.status_code == 202, r.text
    snapshot, job = r.json()["snapshot"], r.json()["job"]
    assert snapshot["num_episodes"] == 3 + 1  # the parent's demos + the one 6-frame stretch (the 2-frame tap is not)
    ids = [e for e, _ in snapshot["episodes"]]
    stretch = store.get_episode(ids[-1])
    assert stretch.length == 6 and stretch.extra["derived_from"]["episode_id"] == take
    assert store.read_table(stretch.id).column(ACTOR).to_pylist() == ["teleop"] * 6
    assert all(store.read_table(stretch.id).column(INTERVENTION).to_pylist())
    assert store.get_episode(take).deleted_at is None  # the whole take is kept
    assert job["kind"] == "train" and job["config"]["base_model"] == parent.id
    assert job["config"]["snapshot_id"] == snapshot["id"] and job["config"]["model_name"] == "pick"

    whole = client.post(f"/api/models/{parent.id}/retrain", json={"mode": "whole"}).json()["snapshot"]
    assert whole["num_episodes"] == 4 and whole["episodes"][-1][0] == take


def test_bad_retrains_are_refused_and_create_nothing(client, app, store, parent, tmp_path):
    from vla_core.policies import make_policy

    correction(store, parent.id)
    snapshots_before, jobs_before = len(app.state.curation.snapshots.list()), len(app.state.jobs.list())
    assert client.post("/api/models/999/retrain", json={}).status_code == 404
    assert client.post(f"/api/models/{parent.id}/retrain", json={"mode": "all"}).status_code == 422
    r = client.post(f"/api/models/{parent.id}/retrain", json={"preset": "forever"})
    assert r.status_code == 422 and "quick" in r.json()["detail"]
    folder = tmp_path / "imported"
    make_policy("vla_tiny", **FITS).save_pretrained(folder)
    orphan = app.state.models.register(folder, name="orphan", created_by="someone")  # no training snapshot
    correction(store, orphan.id)
    r = client.post(f"/api/models/{orphan.id}/retrain", json={})
    assert r.status_code == 404 and "snapshot" in r.json()["detail"]
    assert len(app.state.curation.snapshots.list()) == snapshots_before and len(app.state.jobs.list()) == jobs_before
