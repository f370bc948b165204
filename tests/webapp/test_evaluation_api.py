"""/api/models/{id}/evaluate and /evaluations: a bad launch gets a clear 4xx and queues nothing; a real evaluation
job (an untrained vla_tiny in the real sim, run by a worker in this process) records success per task and colour
with Wilson intervals, shows with the model, and two models evaluated alike compare on the same seeds."""

from __future__ import annotations

import pytest
from helpers import TINY_POLICY_KWARGS
from job_runner import run_queued_jobs

from backend.services.audit import AuditQuery
from vla_core.metrics import difference_interval, wilson_interval

# The sim arm's state and action (6 joints + gripper), one camera at 32 px: the cheapest model the sim can drive.
SIM_TINY = {**TINY_POLICY_KWARGS, "state_dim": 7, "action_dim": 7}
FAST = {"episodes": 2, "colours": ["red", "green"], "max_steps": 5}


@pytest.fixture
def register(app, tmp_path):
    from vla_core.policies import make_policy

    def register(name: str, seed: int = 0, **overrides):
        import torch

        torch.manual_seed(seed)
        folder = tmp_path / f"{name}-{seed}"
        make_policy("vla_tiny", **{**SIM_TINY, **overrides}).save_pretrained(folder)
        return app.state.models.register(folder, name=name, created_by="trainer")

    return register


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"tasks": ["juggle"]}, "juggle"),
        ({"colours": ["purple"]}, "purple"),
        ({"seed_bases": {"red": -1}}, "red"),
        ({"episodes": 0}, None),
        ({"episodes": 1001}, None),
        ({"max_steps": 0}, None),
        ({"tasks": []}, None),
    ],
)
def test_bad_launches_are_refused_and_queue_nothing(client, app, register, body, message) -> None:
    model = register("pick")
    before = app.state.jobs.count()
    r = client.post(f"/api/models/{model.id}/evaluate", json=body)
    assert r.status_code == 422, r.text
    if message:
        assert message in r.json()["detail"]
    assert app.state.jobs.count() == before


def test_models_the_sim_cannot_drive_or_whose_files_changed_are_refused(client, app, register) -> None:
    before = app.state.jobs.count()
    assert client.post("/api/models/999/evaluate", json={}).status_code == 404
    two_joints = register("toy", state_dim=2, action_dim=2)
    r = client.post(f"/api/models/{two_joints.id}/evaluate", json={})
    assert r.status_code == 422 and "the sim arm has 7" in r.json()["detail"], r.text
    overhead = register("overhead", cameras=("overhead",))
    r = client.post(f"/api/models/{overhead.id}/evaluate", json={})
    assert r.status_code == 422 and "overhead" in r.json()["detail"], r.text
    damaged = register("pick")
    (damaged.path / "normalization.json").write_text("{}")
    r = client.post(f"/api/models/{damaged.id}/evaluate", json={})
    assert r.status_code == 409 and "normalization.json" in r.json()["detail"], r.text
    assert app.state.jobs.count() == before


def test_an_evaluation_job_records_success_per_group_and_two_models_compare_on_the_same_seeds(client, app, register):
    a, b = register("pick", seed=0), register("pick", seed=1)
    launched = [client.post(f"/api/models/{m.id}/evaluate", json=FAST) for m in (a, b)]
    assert [r.status_code for r in launched] == [202, 202], [r.text for r in launched]
    job = launched[0].json()
    assert job["kind"] == "evaluate" and job["created_by"] == "alice"
    assert job["config"]["seeds"] == {"pick/red": [100000, 2], "pick/green": [101000, 2]}  # the test seeds
    assert run_queued_jobs(app) == 2

    done = client.get(f"/api/jobs/{job['id']}").json()
    assert done["status"] == "succeeded", done["error"]
    result = done["result"]
    assert set(result["per_group"]) == {"pick/red", "pick/green"}
    for group in result["per_group"].values():
        assert group["episodes"] == 2 and group["wilson_95"] == list(wilson_interval(group["successes"], 2))
    overall = result["overall"]
    assert overall["episodes"] == 4 and overall["successes"] == sum(
        g["successes"] for g in result["per_group"].values()
    )
    assert (app.state.settings.data_dir / "jobs" / str(job["id"]) / "evaluation.json").is_file()

    listed = client.get(f"/api/models/{a.id}/evaluations").json()["data"]
    assert [e["job_id"] for e in listed] == [job["id"]] and listed[0]["overall"] == overall
    assert client.get(f"/api/models/{b.id}/evaluations").json()["data"][0]["job_id"] == launched[1].json()["id"]
    assert client.get("/api/models/999/evaluations").status_code == 404

    pairs = client.get(f"/api/models/{a.id}/compare/{b.id}").json()["evaluations"]
    assert len(pairs) == 1 and pairs[0]["seeds"] == job["config"]["seeds"]
    oa, ob = pairs[0]["a"]["overall"], pairs[0]["b"]["overall"]
    d, low, high = difference_interval(oa["successes"], 4, ob["successes"], 4)
    assert pairs[0]["difference"] == d and pairs[0]["difference_95"] == [low, high]
    assert pairs[0]["significant"] is (not low <= 0 <= high)

    other_seeds = client.post(f"/api/models/{b.id}/evaluate", json={**FAST, "seed_bases": {"red": 5, "green": 6}})
    assert other_seeds.status_code == 202 and run_queued_jobs(app) == 1
    assert len(client.get(f"/api/models/{a.id}/compare/{b.id}").json()["evaluations"]) == 1  # not on other seeds

    rows, _ = app.state.auth.audit.query(AuditQuery(action="evaluation.launch", limit=10))
    assert sorted(r.object_id for r in rows) == sorted(str(r.json()["id"]) for r in (*launched, other_seeds))


def test_an_evaluation_resumed_keeps_the_groups_an_earlier_attempt_finished(client, app, register) -> None:
    import json

    model = register("pick")
    first = client.post(f"/api/models/{model.id}/evaluate", json=FAST).json()
    assert run_queued_jobs(app) == 1
    jobs_dir = app.state.settings.data_dir / "jobs"
    red = json.loads((jobs_dir / str(first["id"]) / "groups" / "pick_red.json").read_text())
    # A second job whose earlier attempt "finished" red with other outcomes than a fresh run would give.
    for episode in red["per_episode"]:
        episode["success"] = not episode["success"]
    red["successes"] = sum(e["success"] for e in red["per_episode"])
    second = client.post(f"/api/models/{model.id}/evaluate", json=FAST).json()
    (jobs_dir / str(second["id"]) / "groups").mkdir(parents=True)
    (jobs_dir / str(second["id"]) / "groups" / "pick_red.json").write_text(json.dumps(red))
    assert run_queued_jobs(app) == 1
    result = client.get(f"/api/jobs/{second['id']}").json()["result"]
    assert result["per_group"]["pick/red"]["successes"] == red["successes"]  # kept, not rolled out again
    fresh = client.get(f"/api/jobs/{first['id']}").json()["result"]
    green, fresh_green = result["per_group"]["pick/green"], fresh["per_group"]["pick/green"]
    assert (green["successes"], green["episodes"]) == (fresh_green["successes"], 2)  # the same seeds, rolled out
    assert result["overall"]["successes"] == red["successes"] + fresh["per_group"]["pick/green"]["successes"]


def test_evaluation_rollouts_land_in_the_rollout_log_once_even_when_resumed(client, app, register) -> None:
    model = register("pick")
    job = client.post(f"/api/models/{model.id}/evaluate", json=FAST).json()
    assert run_queued_jobs(app) == 1
    rows = client.get("/api/rollouts", params={"job_id": job["id"]}).json()
    assert rows["count"] == 4
    assert {(r["colour"], r["seed"]) for r in rows["data"]} == {("red", 100000), ("red", 100001), ("green", 101000),
                                                                 ("green", 101001)}  # fmt: skip
    assert {(r["kind"], r["model_name"], r["operator"], r["steps"] <= 5) for r in rows["data"]} == {
        ("evaluation", "pick", "alice", True)}  # fmt: skip
    result = client.get(f"/api/jobs/{job['id']}").json()["result"]
    successes = sum(r["outcome"] == "success" for r in rows["data"])
    assert successes == result["overall"]["successes"]
    # Logged again (a resumed attempt re-running a group) replaces, never duplicates.
    app.state.rollouts.replace_evaluation_group(job["id"], "pick", "red", [])
    assert client.get("/api/rollouts", params={"job_id": job["id"]}).json()["count"] == 2


def test_named_suites_fix_what_is_rolled_out(client, app, register) -> None:
    from backend.services.eval_suites import NEW_PARAPHRASES, SUITES
    from backend.sim import list_tasks, make_task

    suites = {s["name"]: s for s in client.get("/api/evaluation-suites").json()}
    assert set(suites) == set(SUITES) >= {"held-out", "paraphrases"}
    training = {t for name in list_tasks() for t in make_task(name).instruction_templates}
    assert not set(NEW_PARAPHRASES) & training  # held-out wording really is new
    model = register("pick")
    job = client.post(f"/api/models/{model.id}/evaluate", json={"suite": "paraphrases"}).json()
    assert job["config"]["suite"] == "paraphrases" and job["config"]["instructions"] == list(NEW_PARAPHRASES)
    assert job["config"]["seeds"] == {"pick/red": [100000, 20], "pick/green": [101000, 20], "pick/blue": [102000, 20]}
    r = client.post(f"/api/models/{model.id}/evaluate", json={"suite": "nope"})
    assert r.status_code == 422 and "held-out" in r.json()["detail"]


def test_issue15_suites_and_figures(client, app, register) -> None:
    """colour-swap rolls the same scenes out for every colour; jitter and masking reach the job's config; a
    finished job reports grounding, the attention on other cubes, the occlusion ratio and the wrong-object rate
    overall and per group, and the model's evaluations list carries them."""
    model = register("pick")
    swap = client.post(f"/api/models/{model.id}/evaluate", json={"suite": "colour-swap"}).json()
    assert {tuple(v) for v in swap["config"]["seeds"].values()} == {(103000, 20)}
    jitter = client.post(f"/api/models/{model.id}/evaluate", json={"suite": "jitter"}).json()
    assert jitter["config"]["light_jitter"] is True and jitter["config"]["colour_jitter"] is True
    masked = client.post(f"/api/models/{model.id}/evaluate", json={"suite": "mask-instructed"}).json()
    assert masked["config"]["mask_cube"] == "instructed"
    edge = client.post(f"/api/models/{model.id}/evaluate", json={"suite": "edge"}).json()
    assert edge["config"]["layout"] == "edge" and edge["config"]["seeds"]["pick/red"] == [104000, 20]
    for job in (swap, jitter, masked, edge):
        app.state.jobs.request_cancel(job["id"])  # a queued job is cancelled at once: not run below
    job = client.post(f"/api/models/{model.id}/evaluate", json={**FAST, "colours": ["red"], "max_steps": 12}).json()
    assert run_queued_jobs(app) == 1  # the suites' jobs were cancelled while queued
    result = client.get(f"/api/jobs/{job['id']}").json()["result"]
    for summary in (result["overall"], result["per_group"]["pick/red"]):
        assert summary["wrong_object_rate"] == 0.0  # 12 steps of an untrained model touch nothing
        assert set(summary["attention_mass"]) == {"instructed", "other_cubes", "gripper", "bowl", "outside"}
        assert summary["occlusion"]["frames"] >= 2 and "changes_peak" not in summary["occlusion"]
    listed = client.get(f"/api/models/{model.id}/evaluations").json()["data"]
    assert next(e for e in listed if e["job_id"] == job["id"])["overall"]["occlusion"] == result["overall"]["occlusion"]


def test_an_evaluation_told_new_words_uses_them(app, register) -> None:
    from backend.services.evaluation import EvalConfig, evaluate_policy
    from vla_core.policies import load_policy

    model = register("pick")
    told = ("could you lift the {colour} cube", "I need the {colour} cube lifted")
    report = evaluate_policy(load_policy(model.path), EvalConfig(colour="green", episodes=3, max_steps=2,
                                                                  instructions=told))  # fmt: skip
    assert [e["instruction"] for e in report["per_episode"]] == [
        "could you lift the green cube", "I need the green cube lifted", "could you lift the green cube"]


def test_the_failures_videos_are_one_click_away(client, app, register) -> None:
    """An evaluation keeps an MP4 of every failed rollout (an untrained model in 5 steps fails them all), lists
    them with the model's evaluations and serves them; names that are not its videos are 404, and `none` keeps
    none."""
    model = register("pick")
    job = client.post(f"/api/models/{model.id}/evaluate", json={**FAST, "colours": ["red"]}).json()
    quiet = client.post(f"/api/models/{model.id}/evaluate", json={**FAST, "colours": ["red"], "videos": "none"}).json()
    assert client.post(f"/api/models/{model.id}/evaluate", json={"videos": "some"}).status_code == 422
    assert run_queued_jobs(app) == 2
    result = client.get(f"/api/jobs/{job['id']}").json()["result"]
    failures = result["overall"]["episodes"] - result["overall"]["successes"]
    assert failures >= 1  # 5 steps cannot lift a cube
    videos = result["failure_videos"]
    assert len(videos) == failures and {v["group"] for v in videos} == {"pick/red"}
    assert videos[0]["video"] == f"pick_red_{videos[0]['seed']}.mp4"
    listed = client.get(f"/api/models/{model.id}/evaluations").json()["data"]
    assert next(e for e in listed if e["job_id"] == job["id"])["failure_videos"] == videos
    r = client.get(f"/api/jobs/{job['id']}/videos/{videos[0]['video']}")
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4" and r.content[4:8] == b"ftyp"
    rows = client.get("/api/rollouts", params={"job_id": job["id"], "outcome": "failure"}).json()["data"]
    assert {row["extra"]["video"] for row in rows} == {v["video"] for v in videos}
    for bad in ("evaluation.json", "..%2Fevaluation.json", "pick_red_1.mp4", "pick_red_100000.mp4.tmp"):
        assert client.get(f"/api/jobs/{job['id']}/videos/{bad}").status_code == 404, bad
    assert client.get(f"/api/jobs/{quiet['id']}").json()["result"]["failure_videos"] == []
    assert client.get("/api/jobs/999/videos/pick_red_100000.mp4").status_code == 404
