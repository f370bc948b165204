"""Continual learning: the rule (PUT/GET /api/learning-rules/{name}), the trigger after every N corrections, the
evaluations the A/B gate queues, and the gate itself (promote only when the interval says the child is better)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from test_retrain_api import FITS, correction

from backend.jobs.train import queue_gate_evaluations
from backend.services.continual import GATE_ACTOR, LearningRules, decide, on_rollout


@pytest.fixture
def parent(app, store, tmp_path, client):
    from helpers import record_episode

    from vla_core.policies import make_policy

    for i in range(2):
        record_episode(store, 10, dataset="demos", seed=i)
    snapshot = client.post("/api/snapshots", json={"name": "demos-v1", "dataset": "demos"}).json()
    folder = tmp_path / "parent"
    make_policy("vla_tiny", **FITS).save_pretrained(folder)
    return app.state.models.register(folder, name="pick", created_by="trainer", snapshot_id=snapshot["id"])


def test_rules_are_checked_and_read_back(client):
    assert client.get("/api/learning-rules/pick").status_code == 404
    for bad in ({"suite": "nope"}, {"every_n": 0}, {"preset": "forever"}, {"margin": 1.5}, {"mode": "all"}):
        assert client.put("/api/learning-rules/pick", json=bad).status_code == 422, bad
    assert client.get("/api/learning-rules/pick").status_code == 404  # nothing was stored
    rule = client.put("/api/learning-rules/pick", json={"every_n": 2, "suite": "paraphrases", "margin": 0.05}).json()
    assert (rule["enabled"], rule["every_n"], rule["suite"], rule["margin"]) == (True, 2, "paraphrases", 0.05)
    assert client.get("/api/learning-rules/pick").json()["created_by"] == "alice"


def test_every_n_corrections_queue_a_retrain_with_the_gate_after_it(client, app, store, parent):
    client.put("/api/learning-rules/pick", json={"every_n": 2, "suite": "held-out", "margin": 0.05})
    services = dict(curation=app.state.curation, registry=app.state.models, queue=app.state.jobs)

    def rollout(episode_id, interventions=1):
        return {"model_id": parent.id, "interventions": interventions, "episode_id": episode_id}

    assert on_rollout(rollout(None), **services) is None  # nothing saved: no correction
    assert on_rollout(rollout(correction(store, parent.id)), **services) is None
    assert "1/2 new corrections" in client.get("/api/learning-rules/pick").json()["last_event"]
    job = on_rollout(rollout(correction(store, parent.id)), **services)
    assert job is not None and job.kind == "train" and job.config["base_model"] == parent.id
    assert job.config["after"]["gate"] == {"rule": "pick", "parent_id": parent.id, "suite": "held-out", "margin": 0.05}
    rule = client.get("/api/learning-rules/pick").json()
    assert rule["corrections_seen"] == 2 and f"retrain job {job.id} queued" in rule["last_event"]
    assert on_rollout(rollout(correction(store, parent.id)), **services) is None  # the count starts again
    client.put("/api/learning-rules/pick", json={"enabled": False, "every_n": 1})
    assert on_rollout(rollout(correction(store, parent.id)), **services) is None  # switched off


def test_the_gate_evaluates_parent_and_child_on_the_suite(app, tmp_path):
    from helpers import TINY_POLICY_KWARGS

    from vla_core.policies import make_policy

    def register(name, **kw):  # models the sim can drive (the evaluations roll them out there)
        make_policy("vla_tiny", **{**TINY_POLICY_KWARGS, "state_dim": 7, "action_dim": 7}).save_pretrained(
            tmp_path / name)  # fmt: skip
        return app.state.models.register(tmp_path / name, name="pick", created_by="trainer", **kw)

    parent = register("parent")
    child = register("child", parent_id=parent.id)
    gate = {"rule": "pick", "parent_id": parent.id, "child_id": child.id, "suite": "held-out", "margin": 0.0}
    ids = queue_gate_evaluations(app.state.jobs, app.state.models, gate, user="erin")
    jobs = [app.state.jobs.get(i) for i in ids]
    assert [j.config["model_id"] for j in jobs] == [child.id, parent.id]
    assert all(j.config["suite"] == "held-out" and j.config["gate"] == gate for j in jobs)


class FakeRegistry:
    def __init__(self, results):
        self.results, self.promoted, self.notes = results, [], {}

    def evaluations(self, model_id):
        done = self.results.get(model_id, [])
        return [{"suite": "held-out", "overall": {"successes": k, "episodes": n}} for k, n in done]

    def get(self, model_id):
        return SimpleNamespace(label=f"model {model_id}", notes=self.notes.get(model_id))

    def promote(self, model_id, *, actor):
        assert actor == GATE_ACTOR
        self.promoted.append(model_id)

    def set_notes(self, model_id, notes, *, actor):
        self.notes[model_id] = notes


@pytest.mark.parametrize(
    ("child", "parent_", "margin", "promoted"),
    [((52, 60), (30, 60), 0.0, True), ((33, 60), (30, 60), 0.0, False), ((52, 60), (30, 60), 0.3, False)],
)
def test_the_gate_promotes_only_what_the_interval_supports(store, child, parent_, margin, promoted):
    LearningRules(store.session_factory).set("pick", enabled=True, every_n=5, mode="corrected", suite="held-out",
                                             preset="quick", margin=margin, user="erin")  # fmt: skip
    registry = FakeRegistry({2: [child], 1: [parent_]})
    gate = {"rule": "pick", "parent_id": 1, "child_id": 2, "suite": "held-out", "margin": margin}
    out = decide(gate, registry=registry, session_factory=store.session_factory)
    assert out["promoted"] is promoted and registry.promoted == ([2] if promoted else [])
    assert ("promoted" if promoted else "stays a candidate") in registry.notes[2]
    assert out["reason"] == LearningRules(store.session_factory).get("pick").last_event
    assert decide(gate, registry=FakeRegistry({2: [child]}), session_factory=store.session_factory) is None  # waits


def test_a_correction_is_logged_at_once_and_its_rule_checked_beside_the_request(client, app, parent, monkeypatch):
    """The rollout row is in SQL when the sink returns; the rule (which may build a snapshot) runs on the rules
    runner's thread, not on the thread of the request or save that ended the take."""
    import threading

    import webapp.app as webapp_app

    checked_on = []
    note_thread = lambda record, **_: checked_on.append(threading.current_thread().name)  # noqa: E731
    monkeypatch.setattr(webapp_app, "on_rollout", note_thread)
    record = {"kind": "live", "model_id": parent.id, "task": "pick", "steps": 3, "interventions": 1,
              "auto_success": False}  # fmt: skip
    app.state.log_rollout(record)
    app.state.log_rollout({**record, "interventions": 0})  # no correction: no rule to check
    assert client.get("/api/rollouts", params={"model_id": parent.id}).json()["count"] == 2
    app.state.rules_runner.submit(lambda: None).result(timeout=60)  # the runner is ordered: the check ran
    assert len(checked_on) == 1 and checked_on[0].startswith("continual-learning")
