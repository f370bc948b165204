"""/api/training: bad launches get a clear 4xx and queue nothing; a real tiny training job, run by a worker, trains
on the snapshot's frozen annotations, registers its model with lineage (snapshot, job, parent) and is audited."""

from __future__ import annotations

import pytest
from episode_factory import record_episode
from helpers import TINY_POLICY_KWARGS, save_tiny_policy
from job_runner import run_queued_jobs

from backend.services.audit import AuditQuery

# The smallest policy the trainer builds from scratch (cameras and sizes come from the snapshot).
TINY = {k: v for k, v in TINY_POLICY_KWARGS.items() if k not in ("cameras", "state_dim", "action_dim")}


@pytest.fixture
def snapshot(client, store) -> dict:
    for _ in range(3):
        record_episode(store, n=12, dataset="alpha")
    r = client.post("/api/snapshots", json={"name": "alpha-v1", "dataset": "alpha"})
    assert r.status_code == 201, r.text
    return r.json()


def _launch(client, **body):
    return client.post("/api/training/jobs", json={"snapshot": "alpha-v1", **body})


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"snapshot": "nope"}, 404, "nope"),
        ({"base_model": 999}, 404, "999"),
        ({"preset": "huge"}, 422, None),
        ({"options": {"minutes": -1}}, 422, None),
        ({"options": {"steps": 0}}, 422, None),
        ({"options": {"epochs": 3}}, 422, None),
        ({"model_name": "a/b"}, 422, None),
        ({"options": {"lr": 5.0}}, 422, None),
    ],
)
def test_bad_launches_are_refused_and_queue_nothing(client, app, snapshot, body, status, message) -> None:
    before = app.state.jobs.count()
    r = _launch(client, **body)
    assert r.status_code == status, r.text
    if message:
        assert message in r.json()["detail"]
    assert app.state.jobs.count() == before


def test_a_base_model_that_does_not_fit_the_data_is_refused(client, app, snapshot, tmp_path) -> None:
    from vla_core.policies import make_policy

    wrong = tmp_path / "wrong"
    make_policy("vla_tiny", **{**TINY_POLICY_KWARGS, "action_dim": 7}).save_pretrained(wrong)
    unfit = app.state.models.register(wrong, name="unfit", created_by="alice")
    fits = app.state.models.register(save_tiny_policy(tmp_path / "fits"), name="base", created_by="alice")
    before = app.state.jobs.count()
    r = _launch(client, base_model=unfit.id)
    assert r.status_code == 422 and "action_dim 7" in r.json()["detail"], r.text
    r = _launch(client, base_model=fits.id, options={"policy_overrides": {"d_model": 64}})
    assert r.status_code == 422 and "from scratch" in r.json()["detail"], r.text
    assert app.state.jobs.count() == before
    ok = _launch(client, base_model=fits.id, options={"steps": 2})
    assert ok.status_code == 202, ok.text
    assert ok.json()["config"]["base_model"] == fits.id


def test_a_training_job_trains_on_the_snapshot_and_registers_its_model(client, app, snapshot) -> None:
    r = _launch(
        client, preset="quick", model_name="alpha-policy", select=False,
        options={"steps": 20, "batch_size": 4, "policy_overrides": TINY},  # a record every 20 steps
    )  # fmt: skip
    assert r.status_code == 202, r.text
    job = r.json()
    assert (job["kind"], job["status"], job["created_by"]) == ("train", "queued", "alice")
    assert job["config"]["options"]["policy_overrides"]["cameras"] == ["front", "wrist"]  # from the snapshot
    assert "minutes" not in job["config"]["options"]  # a step count replaces the preset's budget
    assert run_queued_jobs(app) == 1
    done = client.get(f"/api/jobs/{job['id']}").json()
    assert done["status"] == "succeeded", done["error"]
    model = client.get(f"/api/models/{done['result']['model_id']}").json()
    assert (model["name"], model["version"], model["job_id"], model["snapshot_id"]) == (
        "alpha-policy", 1, job["id"], snapshot["id"]
    )  # fmt: skip
    metrics = client.get(f"/api/jobs/{job['id']}/metrics").json()
    assert any(m.get("step") == 20 for m in metrics["records"]), metrics  # the curve the Train tab draws
    rows, _ = app.state.auth.audit.query(AuditQuery(action="training.launch", limit=10))
    assert [(e.actor, e.object_id) for e in rows] == [("alice", str(job["id"]))]


def test_presets_are_listed(client) -> None:
    body = client.get("/api/training/presets").json()
    assert set(body["presets"]) == {"quick", "standard"} and "steps" in body["options"]


@pytest.mark.slow  # two torchrun ranks start (torch and transformers imported twice): ~30 s on 2 cores
def test_a_job_asking_for_two_ddp_ranks_trains_under_torchrun_and_registers_one_model(client, app, snapshot) -> None:
    r = _launch(
        client, preset="quick", model_name="alpha-ddp", select=False, nproc_per_node=2,
        options={"steps": 20, "batch_size": 4, "policy_overrides": TINY},
    )  # fmt: skip
    assert r.status_code == 202 and r.json()["config"]["nproc_per_node"] == 2, r.text
    assert run_queued_jobs(app) == 1
    done = client.get(f"/api/jobs/{r.json()['id']}").json()
    folder = app.state.settings.data_dir / "jobs" / str(done["id"])
    assert done["status"] == "succeeded", (done["error"], (folder / "ranks.log").read_text()[-3000:])
    assert done["result"]["step"] == 20 and done["result"]["rule"] == "final"
    assert "starting 2 DDP ranks" in (folder / "job.log").read_text()
    steps = [m["step"] for m in client.get(f"/api/jobs/{done['id']}/metrics").json()["records"] if "loss" in m]
    assert steps == sorted(set(steps)) and steps[-1] == 20  # one writer (rank 0): no step twice
    model = app.state.models.get(done["result"]["model_id"])
    app.state.models.load(model.id)  # the model rank 0 saved loads, its files check out
    assert model.name == "alpha-ddp" and model.job_id == done["id"]


def test_a_bad_rank_count_is_refused(client, app, snapshot) -> None:
    before = app.state.jobs.count()
    for bad in (0, 65):
        assert _launch(client, nproc_per_node=bad).status_code == 422
    assert app.state.jobs.count() == before
