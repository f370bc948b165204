"""Real `run.py worker` processes on a throwaway data dir: a worker SIGKILLed in the middle of a job is noticed by
its stale heartbeat, and a second worker re-queues the job and finishes it from the job's last checkpoint; two
workers started together on six queued jobs run each exactly once, on SQLite and on PostgreSQL.

The job kind is tests/backend/jobs_test_plugin.py's "test.sleep", loaded into the workers with VLA_JOB_PLUGINS.
Deadlines (worker_procs.DEADLINE_S) are safety nets for a hung process, never timing claims."""

from __future__ import annotations

import signal

import jobs_test_plugin
import pytest
from helpers import load_postgres_fixtures, open_store, postgres_available
from worker_procs import DEADLINE_S, runs, start_worker, wait_for, worker_env

from backend.jobs import JobQueue, job_dir
from storage.models import JobStatus

_pg = load_postgres_fixtures("_pg_fixtures")
pg_server, pg_url = _pg.pg_server, _pg.pg_url  # fixtures, found by pytest under these names


# The PostgreSQL run starts a server and repeats the SQLite run: `slow` (make test-all), as well as `postgres`.
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.slow])])
def database_url(request) -> str | None:
    """None: the data dir's SQLite file; else a fresh database on the throwaway PostgreSQL server."""
    if request.param == "sqlite":
        return None
    if not postgres_available():
        pytest.skip("PostgreSQL server binaries or the psycopg driver are not installed")
    return request.getfixturevalue("pg_url")


def test_a_sigkilled_worker_is_noticed_and_its_job_finishes_on_another(tmp_path) -> None:
    """Two workers start together (one start-up's wait, not two); the one that claims the job is SIGKILLed a few
    steps in, and the other re-queues it once its heartbeat is stale and finishes it from its checkpoint."""
    data_dir = tmp_path / "data"
    store = open_store(data_dir, recover=False)
    queue = JobQueue(store.session_factory, data_dir=data_dir)
    job = queue.submit(jobs_test_plugin.KIND, {"steps": 20, "step_s": 0.1}, "alice")
    env = worker_env(data_dir, None, stale_after_s=1.0)
    logs = {name: tmp_path / f"{name}.log" for name in "AB"}
    procs = {name: start_worker(env, name, log=log) for name, log in logs.items()}
    try:
        wait_for(lambda: queue.get(job.id).progress >= 0.2, "a worker to get a few steps in", list(logs.values()))
        victim = queue.get(job.id).worker
        (survivor,) = set(procs) - {victim}
        procs[victim].kill()  # SIGKILL: no clean-up, no hand-back
        procs[victim].wait()
        killed_at = int((job_dir(data_dir, job.id) / "step.txt").read_text())
        orphan = queue.get(job.id)
        assert orphan.status == JobStatus.RUNNING and orphan.worker == victim  # the database does not know yet
        wait_for(lambda: queue.get(job.id).finished, "the other worker to finish the job", list(logs.values()))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.wait(DEADLINE_S)
    assert procs[survivor].returncode == 0, logs[survivor].read_text()
    done = queue.get(job.id)
    assert done.status == JobStatus.SUCCEEDED and done.worker == survivor and done.attempts == 2, done.error
    assert 2 <= killed_at < 20
    assert runs(data_dir, job.id) == [(procs[victim].pid, 0), (procs[survivor].pid, killed_at)]  # resumed
    assert done.result == {"steps": 20, "first_step": killed_at, "pid": procs[survivor].pid}
    log = (job_dir(data_dir, job.id) / "job.log").read_text()
    assert f"started on {victim} (attempt 1)" in log and f"started on {survivor} (attempt 2)" in log
    assert "re-queued jobs" in logs[survivor].read_text()


def test_two_workers_started_together_run_each_job_exactly_once(tmp_path, database_url) -> None:
    data_dir = tmp_path / "data"
    store = open_store(data_dir, database_url, recover=False)
    queue = JobQueue(store.session_factory, data_dir=data_dir)
    jobs = [queue.submit(jobs_test_plugin.KIND, {"steps": 4, "step_s": 0.05}, "bob") for _ in range(6)]
    # A long stale limit: no job may be re-queued here just because a loaded machine delayed a heartbeat.
    env = worker_env(data_dir, database_url, stale_after_s=60)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    workers = [start_worker(env, name, "--once", log=log) for name, log in zip("AB", logs, strict=True)]
    for proc, log in zip(workers, logs, strict=True):
        try:
            assert proc.wait(DEADLINE_S) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    pids = {proc.pid for proc in workers}
    for job in jobs:
        done = queue.get(job.id)
        assert done.status == JobStatus.SUCCEEDED and done.attempts == 1, (done.id, done.status, done.error)
        attempts = runs(data_dir, job.id)
        assert len(attempts) == 1 and attempts[0][0] in pids and attempts[0][1] == 0
        assert done.worker in {"A", "B"} and done.result["pid"] == attempts[0][0]
