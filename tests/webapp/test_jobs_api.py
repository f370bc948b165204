"""/api/jobs over a real SQLite store: list and filters, a job, its log tail and metrics, cancel and retry (resume
or fresh) with their audit rows, who may steer which job, 404/409/422 that change nothing; and export jobs moved
onto the runner (/api/exports answers with the job, a killed attempt's leftovers are cleared)."""

from __future__ import annotations

from pathlib import Path

import pytest
from episode_factory import record_episode
from job_runner import run_queued_jobs

from backend.jobs import JobContext, job_dir, register_handler
from backend.jobs.export import run_export
from backend.services.audit import AuditQuery
from backend.services.roles import may_manage_job
from backend.settings import Settings

KIND = "test.api"


@register_handler(KIND)
def _logs_and_metrics(ctx: JobContext) -> dict:
    for step in range(1, 6):
        ctx.log.info("step %d", step)
        ctx.write_metrics({"step": step, "loss": 1.0 / step})
    return {"steps": 5}


@pytest.fixture
def jobs(app):
    return app.state.jobs


def audit_rows(app, action: str):
    rows, _ = app.state.auth.audit.query(AuditQuery(action=action, limit=100))
    return rows


def test_list_filter_and_read_jobs(client, jobs) -> None:
    first = jobs.submit(KIND, {"n": 1}, "alice")
    second = jobs.submit(KIND, {"n": 2}, "bob")
    page = client.get("/api/jobs").json()
    assert page["count"] == 2 and [j["id"] for j in page["data"]] == [second.id, first.id]
    assert client.get("/api/jobs", params={"created_by": "bob"}).json()["data"][0]["config"] == {"n": 2}
    assert client.get("/api/jobs", params={"status": "succeeded"}).json() == {"data": [], "count": 0}
    one = client.get("/api/jobs", params={"limit": 1, "offset": 1, "kind": KIND}).json()
    assert one["count"] == 2 and [j["id"] for j in one["data"]] == [first.id]
    job = client.get(f"/api/jobs/{first.id}").json()
    assert (job["status"], job["kind"], job["created_by"], job["attempts"], job["progress"]) == (
        "queued", KIND, "alice", 0, 0.0
    )  # fmt: skip
    for params in ({"status": "bogus"}, {"limit": 0}, {"limit": 501}, {"offset": -1}, {"kind": "k" * 33}):
        assert client.get("/api/jobs", params=params).status_code == 422, params
    assert client.get("/api/jobs/999999").status_code == 404
    assert client.get("/api/jobs/0").status_code == 422


def test_log_tail_and_metrics_follow_a_job(client, app, jobs) -> None:
    job = jobs.submit(KIND, {}, "alice")
    before = client.get(f"/api/jobs/{job.id}/log")
    assert before.status_code == 200 and before.text == "" and before.headers["content-type"].startswith("text/plain")
    assert client.get(f"/api/jobs/{job.id}/metrics").json() == {"records": [], "next": 0}
    assert run_queued_jobs(app) == 1
    assert client.get(f"/api/jobs/{job.id}").json()["status"] == "succeeded"
    log = client.get(f"/api/jobs/{job.id}/log").text
    assert "step 1" in log and "step 5" in log
    last = client.get(f"/api/jobs/{job.id}/log", params={"tail_lines": 1}).text
    assert last.count("\n") == 1 and "succeeded" in last
    metrics = client.get(f"/api/jobs/{job.id}/metrics", params={"after": 2, "limit": 2}).json()
    assert metrics == {"records": [{"step": 3, "loss": 1 / 3}, {"step": 4, "loss": 0.25}], "next": 4}
    assert client.get(f"/api/jobs/{job.id}/metrics", params={"after": 5}).json() == {"records": [], "next": 5}
    for path, params in (("log", {"tail_lines": 0}), ("log", {"tail_lines": 10**6}), ("metrics", {"after": -1})):
        assert client.get(f"/api/jobs/{job.id}/{path}", params=params).status_code == 422
    assert client.get("/api/jobs/999999/log").status_code == 404
    assert client.get("/api/jobs/999999/metrics").status_code == 404


def test_cancel_then_resume_or_retry_fresh_with_audit(client, app, jobs, settings) -> None:
    job = jobs.submit(KIND, {}, "alice")
    r = client.post(f"/api/jobs/{job.id}/cancel", json={})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert client.post(f"/api/jobs/{job.id}/cancel", json={}).status_code == 409
    (cancel,) = audit_rows(app, "job.cancel")
    assert (cancel.actor, cancel.object_id, cancel.detail) == (
        "alice",
        str(job.id),
        {"kind": KIND, "status": "cancelled"},
    )

    folder = job_dir(settings.data_dir, job.id)
    folder.mkdir(parents=True)
    (folder / "checkpoint.txt").write_text("step 3")
    for body in ({"fresh": "yes"}, {"fresh": False, "extra": 1}, [1]):
        assert client.post(f"/api/jobs/{job.id}/retry", json=body).status_code == 422, body
    assert client.get(f"/api/jobs/{job.id}").json()["status"] == "cancelled"  # refused bodies changed nothing
    resumed = client.post(f"/api/jobs/{job.id}/retry", json={})
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
    assert (folder / "checkpoint.txt").is_file()  # resume: the folder stays
    assert client.post(f"/api/jobs/{job.id}/retry", json={}).status_code == 409  # queued already

    client.post(f"/api/jobs/{job.id}/cancel", json={})
    fresh = client.post(f"/api/jobs/{job.id}/retry", json={"fresh": True})
    assert fresh.status_code == 200 and fresh.json()["message"] == "retried" and not folder.exists()
    assert [r.detail["fresh"] for r in audit_rows(app, "job.retry")] == [True, False]  # newest first
    assert client.post("/api/jobs/999999/cancel", json={}).status_code == 404
    assert client.post("/api/jobs/999999/retry", json={}).status_code == 404


def test_who_may_cancel_and_retry_which_job(client_as, jobs) -> None:
    export_config = {"target": "dataset", "name": "d", "out": "exports/d"}
    olgas_export = jobs.submit("export", export_config, "olga")
    alices_export = jobs.submit("export", export_config, "alice")
    training = jobs.submit(KIND, {}, "olga")  # stands for a training job: not an export
    olga, mia, eve = client_as("olga", "operator"), client_as("mia", "manager"), client_as("eve", "engineer")

    assert mia.get("/api/jobs").json()["count"] == 3  # managers read everything
    assert mia.get(f"/api/jobs/{training.id}/log").status_code == 200
    assert olga.get("/api/jobs").status_code == 200
    assert mia.post(f"/api/jobs/{olgas_export.id}/cancel", json={}).status_code == 403
    for other in (alices_export, training):
        r = olga.post(f"/api/jobs/{other.id}/cancel", json={})
        assert r.status_code == 403 and "only the export jobs they started" in r.json()["detail"]
        assert jobs.get(other.id).status == "queued"  # refused: nothing changed
    assert olga.post(f"/api/jobs/{olgas_export.id}/cancel", json={}).status_code == 200
    assert olga.post(f"/api/jobs/{olgas_export.id}/retry", json={}).status_code == 200
    assert eve.post(f"/api/jobs/{training.id}/cancel", json={}).status_code == 200  # engineers steer any job
    assert eve.post(f"/api/jobs/{alices_export.id}/cancel", json={}).status_code == 200


def test_may_manage_job_rule() -> None:
    assert may_manage_job("engineer", "eve", kind="train", created_by="someone")
    assert may_manage_job("admin", "root", kind="train", created_by=None)
    assert may_manage_job("operator", "olga", kind="export", created_by="olga")
    assert not may_manage_job("operator", "olga", kind="train", created_by="olga")
    assert not may_manage_job("operator", "olga", kind="export", created_by="alice")
    assert not may_manage_job("manager", "mia", kind="export", created_by="mia")
    assert not may_manage_job(None, "x", kind="export", created_by="x")


def test_exports_are_jobs(client, app, store, settings) -> None:
    record_episode(store, n=6, dataset="alpha")
    r = client.post("/api/exports", json={"dataset": "alpha"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert (job["kind"], job["status"], job["state"], job["target"], job["name"], job["user"]) == (
        "export", "queued", "queued", "dataset", "alpha", "alice"
    )  # fmt: skip
    out = Path(job["out_dir"])
    assert out.parent == (settings.data_dir / "exports").resolve() and job["config"]["out"] == f"exports/{out.name}"
    assert client.get(f"/api/jobs/{job['id']}").json()["config"] == job["config"]  # the same job under /api/jobs
    leftover = out.parent / f".{out.name}.export-dead1234"  # what a killed attempt leaves behind
    leftover.mkdir(parents=True)
    assert run_queued_jobs(app) == 1
    done = client.get(f"/api/exports/{job['id']}").json()
    assert done["state"] == "done" and done["done"] == done["total"] == 3 and not leftover.exists()  # 1 + 2 cameras
    assert (out / "meta" / "info.json").is_file()
    assert done["result"] == {"out": job["config"]["out"], "steps": 3}
    # Killed after the rename but before the result was recorded: a re-run only reports the finished folder.
    again = run_export(JobContext(app.state.jobs.get(job["id"]), settings=settings, store=store, threads=1))
    assert again == done["result"]
    assert [e["id"] for e in client.get("/api/exports").json()] == [job["id"]]

    other = app.state.jobs.submit(KIND, {}, "alice")
    assert client.get(f"/api/exports/{other.id}").status_code == 404  # not an export
    before = app.state.jobs.count()
    assert client.post("/api/exports", json={"snapshot": "nope"}).status_code == 404
    assert client.post("/api/exports", json={"dataset": "alpha", "snapshot": "s"}).status_code == 422
    assert app.state.jobs.count() == before  # refused exports queue nothing


def test_an_export_config_cannot_point_outside_the_exports_folder(app, store, settings: Settings) -> None:
    bad = app.state.jobs.submit("export", {"target": "dataset", "name": "d", "out": "../outside"}, "alice")
    with pytest.raises(ValueError, match="directly in exports/"):
        run_export(JobContext(bad, settings=settings, store=store, threads=1))
