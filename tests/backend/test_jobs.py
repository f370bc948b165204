"""The job queue and the in-process side of the worker, on a real SQLite file: lifecycle, atomic claims from two
threads, stale heartbeats re-queued on an injected clock, cancel seen by should_stop, resume keeping the job
folder and retry emptying it, unknown kinds refused, failures recorded. Real worker processes (SIGKILL, two
workers) are tests/backend/test_worker_crash.py's."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest
from helpers import FakeClock

from backend.jobs import JobContext, JobQueue, JobStopped, Worker, job_dir, register_handler
from backend.jobs.files import read_log_tail, read_metrics
from backend.jobs.worker import THREAD_VARIABLES
from backend.settings import Settings
from storage.db import make_engine, make_session_factory
from storage.errors import ConflictError, NotFoundError
from storage.models import JobStatus

S = JobStatus
T0 = 1_750_000_000.0
JOIN_S = 30  # a safety net for a hung thread, never a timing claim


@register_handler("test.echo")
def _echo(ctx: JobContext) -> dict:
    ctx.log.info("echoing %s", ctx.config["x"])
    ctx.write_metrics({"step": 1, "loss": 0.5})
    ctx.report(0.5, "half way")
    return {"echo": ctx.config["x"], "threads": os.environ.get("OMP_NUM_THREADS")}


@register_handler("test.fail")
def _fail(ctx: JobContext) -> dict:
    raise RuntimeError("boom in the handler")


@register_handler("test.not-a-dict")
def _not_a_dict(ctx: JobContext) -> list:
    return ["no"]


STARTED = threading.Event()


@register_handler("test.until-stopped")
def _until_stopped(ctx: JobContext) -> dict:
    """Runs until should_stop() says so (cancel, lost, shutdown); a real handler would save a checkpoint there."""
    (ctx.job_dir / "checkpoint.txt").write_text("step 3")
    STARTED.set()
    while not ctx.should_stop():
        ctx.report(0.3, "working")
        threading.Event().wait(0.01)
    raise JobStopped


HELD, RELEASE = threading.Event(), threading.Event()


@register_handler("test.until-released")
def _until_released(ctx: JobContext) -> dict:
    """Works until the test sets RELEASE; a stop (shutdown, cancel) ends it early, which a drain must not do."""
    HELD.set()
    while not RELEASE.wait(0.01):
        if ctx.should_stop():
            raise JobStopped
    return {"released": True}


@register_handler("test.checkpointed")
def _checkpointed(ctx: JobContext) -> dict:
    """Fails once after writing a checkpoint (config fail_first); a second attempt says whether it found one."""
    checkpoint = ctx.job_dir / "checkpoint.txt"
    had = checkpoint.exists()
    checkpoint.write_text("step 5")
    if not had and ctx.config.get("fail_first"):
        raise RuntimeError("crashed after the checkpoint")
    return {"resumed": had}


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=T0)


@pytest.fixture
def queue(store, clock, data_dir) -> JobQueue:
    return JobQueue(store.session_factory, clock=clock, data_dir=data_dir)


@pytest.fixture
def worker(queue, store, data_dir) -> Worker:
    settings = Settings(data_dir=data_dir)
    return Worker(queue, settings, store, "w1", poll_s=0.01, heartbeat_s=0.02, stale_after_s=60, threads=1)


@pytest.fixture
def thread_env(monkeypatch):
    """Worker.run sets the thread variables (and torch's threads) process-wide: put back afterwards."""
    for name in THREAD_VARIABLES:
        monkeypatch.setenv(name, os.environ.get(name, "2"))
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    yield
    if torch is not None:
        torch.set_num_threads(before)


def in_thread(fn, *args) -> threading.Thread:
    thread = threading.Thread(target=fn, args=args, daemon=True)
    thread.start()
    return thread


def test_lifecycle_submit_claim_heartbeat_finish(queue, clock, data_dir) -> None:
    job = queue.submit("test.echo", {"x": 1}, "alice")
    assert (job.status, job.attempts, job.created_by, job.worker) == (S.QUEUED, 0, "alice", None)
    assert job.log_path == f"jobs/{job.id}/job.log" and job.created_at.timestamp() == T0
    clock.advance(5)
    claimed = queue.claim("w1")
    assert claimed.id == job.id and claimed.status == S.RUNNING and claimed.worker == "w1"
    assert claimed.attempts == 1 and claimed.started_at.timestamp() == T0 + 5 == claimed.heartbeat_at.timestamp()
    assert queue.claim("w2") is None  # nothing else queued
    clock.advance(1)
    assert queue.heartbeat(job.id, "w1", 0.4, "step 4/10")
    assert not queue.heartbeat(job.id, "w2", 0.9, "not mine")  # only the claiming worker's beats count
    beat = queue.get(job.id)
    assert (beat.progress, beat.message, beat.heartbeat_at.timestamp()) == (0.4, "step 4/10", T0 + 6)
    assert not queue.fail(job.id, "w2", "not mine")
    assert queue.finish(job.id, "w1", {"out": "exports/x"})
    done = queue.get(job.id)
    assert (done.status, done.result, done.progress, done.finished) == (S.SUCCEEDED, {"out": "exports/x"}, 1.0, True)
    assert not queue.heartbeat(job.id, "w1", 1.0, None)  # finished: no longer running

    second = queue.submit("test.fail", {}, "bob")
    assert [j.id for j in queue.list()] == [second.id, job.id]  # newest first
    assert [j.id for j in queue.list(status=S.SUCCEEDED)] == [job.id]
    assert [j.id for j in queue.list(kind="test.fail", created_by="bob")] == [second.id]
    assert queue.count() == 2 and queue.count(status=S.QUEUED) == 1
    assert [j.id for j in queue.list(limit=1, offset=1)] == [job.id]
    with pytest.raises(NotFoundError):
        queue.get(12345)
    assert queue.claim("w1", kinds=["test.echo"]) is None  # a worker claims only kinds it knows
    assert queue.claim("w1", kinds=["test.fail"]).id == second.id


def test_worker_runs_a_job_with_its_folder_log_and_metrics(queue, worker, data_dir) -> None:
    job = queue.submit("test.echo", {"x": "hello"}, "alice")
    worker.run_job(queue.claim("w1"))
    done = queue.get(job.id)
    assert done.status == S.SUCCEEDED and done.result["echo"] == "hello", done.error
    folder = job_dir(data_dir, job.id)
    assert folder == data_dir / "jobs" / str(job.id)
    log = read_log_tail(folder / "job.log", 50)
    assert "echoing hello" in log and "succeeded" in log
    assert read_metrics(folder / "metrics.jsonl", after=0, limit=10) == ([{"step": 1, "loss": 0.5}], 1)


def test_unknown_kind_and_bad_config_are_refused_and_create_nothing(queue) -> None:
    with pytest.raises(ValueError, match="unknown job kind 'nope'.*test.echo"):
        queue.submit("nope", {}, "alice")
    with pytest.raises(ValueError, match="JSON"):
        queue.submit("test.echo", {"x": object()}, "alice")
    with pytest.raises(ValueError, match="JSON"):
        queue.submit("test.echo", {"x": float("nan")}, "alice")
    assert queue.count() == 0
    with pytest.raises(ValueError):
        register_handler("Bad Kind!")
    with pytest.raises(ValueError, match="already registered"):
        register_handler("test.echo")(lambda ctx: {})


def test_a_failing_handler_records_its_error_and_the_loop_goes_on(queue, worker, data_dir, thread_env) -> None:
    failing = queue.submit("test.fail", {}, "alice")
    odd = queue.submit("test.not-a-dict", {}, "alice")
    fine = queue.submit("test.echo", {"x": 2}, "alice")
    assert worker.run(once=True) == 3
    failed = queue.get(failing.id)
    assert failed.status == S.FAILED and failed.finished_at is not None
    assert "Traceback" in failed.error and "RuntimeError: boom in the handler" in failed.error
    assert "RuntimeError: boom in the handler" in read_log_tail(job_dir(data_dir, failing.id) / "job.log", 100)
    assert queue.get(odd.id).status == S.FAILED and "not a JSON object" in queue.get(odd.id).error
    ok = queue.get(fine.id)
    assert ok.status == S.SUCCEEDED and ok.result["threads"] == "1"  # the job ran under the worker's thread limit


def test_a_job_whose_folder_cannot_be_made_fails_and_the_worker_goes_on(queue, worker, data_dir) -> None:
    job = queue.submit("test.echo", {"x": 1}, None)
    blocker = job_dir(data_dir, job.id)
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the job's folder should be")
    worker.run_job(queue.claim("w1"))
    failed = queue.get(job.id)
    assert failed.status == S.FAILED and "cannot prepare the job folder" in failed.error


def test_claims_are_atomic_across_two_threads_with_their_own_connections(store, data_dir) -> None:
    queue = JobQueue(store.session_factory)
    ids = {queue.submit("test.echo", {"x": i}, None).id for i in range(40)}
    url = f"sqlite:///{data_dir / 'vla.db'}"
    engines = [make_engine(url) for _ in range(2)]
    claimed: dict[str, list[int]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def drain(name: str, engine) -> None:
        own = JobQueue(make_session_factory(engine))
        barrier.wait()
        while (job := own.claim(name)) is not None:
            claimed[name].append(job.id)

    threads = [in_thread(drain, name, engine) for name, engine in zip(claimed, engines, strict=True)]
    for thread in threads:
        thread.join(JOIN_S)
    for engine in engines:
        engine.dispose()
    everything = claimed["a"] + claimed["b"]
    assert sorted(everything) == sorted(ids)  # every job claimed, none twice
    assert all(j.attempts == 1 and j.status == S.RUNNING for j in queue.list(limit=100))
    assert {j.worker for j in queue.list(limit=100) if j.id in claimed["a"]} <= {"a"}


def test_stale_heartbeats_are_requeued_on_the_injected_clock(queue, clock) -> None:
    job = queue.submit("test.echo", {"x": 1}, None)
    queue.claim("dead-worker")
    clock.advance(29)
    assert queue.requeue_stale(30) == []  # 29 s without a heartbeat: still alive
    clock.advance(2)
    assert queue.requeue_stale(30) == [job.id]
    back = queue.get(job.id)
    assert back.status == S.QUEUED and back.worker is None and "heartbeats" in back.message
    assert not queue.heartbeat(job.id, "dead-worker", 0.5, None)  # a worker that comes back has lost it
    assert not queue.finish(job.id, "dead-worker", {"late": True})
    again = queue.claim("w2")
    assert again.attempts == 2 and again.worker == "w2"

    cancelled = queue.submit("test.echo", {"x": 2}, None)
    queue.claim("w3", kinds=["test.echo"])
    queue.request_cancel(cancelled.id)
    clock.advance(31)
    assert cancelled.id not in queue.requeue_stale(30)  # a stale job with a cancel pending ends cancelled
    assert queue.get(cancelled.id).status == S.CANCELLED
    assert queue.get(job.id).status == S.QUEUED  # w2 went silent too


def test_a_job_that_keeps_losing_its_worker_fails_instead_of_looping(store, clock) -> None:
    queue = JobQueue(store.session_factory, clock=clock, max_attempts=2)
    job = queue.submit("test.echo", {"x": 1}, None)
    for expected in ([job.id], []):
        queue.claim("w")
        clock.advance(100)
        assert queue.requeue_stale(30) == expected
    failed = queue.get(job.id)
    assert failed.status == S.FAILED and "after 2 or more claims" in failed.error


def test_cancel_a_queued_job_at_once_and_a_running_one_through_should_stop(queue, worker, data_dir) -> None:
    queued = queue.submit("test.echo", {"x": 1}, None)
    assert queue.request_cancel(queued.id).status == S.CANCELLED
    assert queue.claim("w1", kinds=["test.echo"]) is None  # never runs
    with pytest.raises(ConflictError, match="already cancelled"):
        queue.request_cancel(queued.id)

    STARTED.clear()
    job = queue.submit("test.until-stopped", {}, None)
    thread = in_thread(worker.run_job, queue.claim("w1"))
    assert STARTED.wait(JOIN_S)
    asked = queue.request_cancel(job.id)
    assert asked.status == S.RUNNING and asked.cancel_requested
    thread.join(JOIN_S)
    assert not thread.is_alive()
    done = queue.get(job.id)
    assert done.status == S.CANCELLED and done.finished_at is not None
    assert (job_dir(data_dir, job.id) / "checkpoint.txt").is_file()  # a cancel keeps the checkpoints
    assert "cancel requested" in read_log_tail(job_dir(data_dir, job.id) / "job.log", 20)


def test_resume_keeps_the_job_folder_and_retry_starts_over(queue, worker, data_dir) -> None:
    job = queue.submit("test.checkpointed", {"fail_first": True}, None)
    worker.run_job(queue.claim("w1"))
    assert queue.get(job.id).status == S.FAILED
    with pytest.raises(ConflictError):
        queue.request_cancel(job.id)
    resumed = queue.resume(job.id)
    assert (resumed.status, resumed.error, resumed.progress, resumed.message) == (S.QUEUED, None, 0.0, "resumed")
    with pytest.raises(ConflictError, match="only a failed or cancelled"):
        queue.resume(job.id)  # queued already
    worker.run_job(queue.claim("w1"))
    done = queue.get(job.id)
    assert done.status == S.SUCCEEDED and done.result == {"resumed": True} and done.attempts == 2
    with pytest.raises(ConflictError):
        queue.retry(job.id)  # a succeeded job does not run again

    fresh = queue.submit("test.checkpointed", {"fail_first": True}, None)
    worker.run_job(queue.claim("w1"))
    folder = job_dir(data_dir, fresh.id)
    assert (folder / "checkpoint.txt").is_file()
    assert queue.retry(fresh.id).status == S.QUEUED
    assert not folder.exists()  # retry: from scratch
    worker.run_job(queue.claim("w1"))
    assert queue.get(fresh.id).status == S.FAILED  # failed again, as a first attempt does
    with pytest.raises(NotFoundError):
        queue.resume(999)


def test_shutdown_hands_the_running_job_back_to_the_queue(queue, worker) -> None:
    STARTED.clear()
    job = queue.submit("test.until-stopped", {}, None)
    thread = in_thread(worker.run_job, queue.claim("w1"))
    assert STARTED.wait(JOIN_S)
    worker.shutdown()
    thread.join(JOIN_S)
    back = queue.get(job.id)
    assert back.status == S.QUEUED and back.worker is None and "shut down" in back.message
    assert worker.stopping() and worker.run() == 0  # a stopped worker claims nothing


def test_a_draining_worker_finishes_its_job_then_claims_nothing(queue, worker, thread_env) -> None:
    """What a server restart does to its embedded worker (run.py serve sends SIGUSR1; a dead parent does the same)."""
    HELD.clear()
    RELEASE.clear()
    running = queue.submit("test.until-released", {}, None)
    waiting = queue.submit("test.echo", {"x": 1}, None)
    ran: list[int] = []
    thread = in_thread(lambda: ran.append(worker.run()))
    assert HELD.wait(JOIN_S)
    worker.drain()
    assert worker.stopping() and queue.get(running.id).status == S.RUNNING
    RELEASE.set()  # the job goes on to its end after the drain
    thread.join(JOIN_S)
    assert not thread.is_alive() and ran == [1]
    assert queue.get(running.id).status == S.SUCCEEDED and queue.get(running.id).result == {"released": True}
    assert queue.get(waiting.id).status == S.QUEUED  # left for the next worker


def test_a_worker_whose_job_was_requeued_stops_and_records_nothing(store, queue, worker, clock) -> None:
    """The worker's own queue keeps writing heartbeats at T0 (its clock stands still); another worker, an hour
    later by its clock, finds them stale and re-queues the job: the first learns it lost the job and stops."""
    STARTED.clear()
    job = queue.submit("test.until-stopped", {}, None)
    thread = in_thread(worker.run_job, queue.claim("w1"))
    assert STARTED.wait(JOIN_S)
    later = JobQueue(store.session_factory, clock=FakeClock(start=T0 + 3600))
    assert later.requeue_stale(30) == [job.id]
    thread.join(JOIN_S)
    assert not thread.is_alive()
    after = queue.get(job.id)
    assert after.status == S.QUEUED and after.worker is None  # untouched by the worker that lost it


def test_log_tail_and_metrics_reads_are_bounded_and_skip_partial_lines(tmp_path) -> None:
    log = tmp_path / "job.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    assert read_log_tail(log, 3) == "line 997\nline 998\nline 999\n"
    tail = read_log_tail(log, 1000, max_bytes=100)
    assert tail.startswith("line ") and len(tail) <= 100 and tail.endswith("line 999\n")
    assert read_log_tail(tmp_path / "missing.log", 5) == ""
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1}\nnot json\n{"step": 3}\n[1]\n{"step": 5}\n{"step": 6, "los')
    assert read_metrics(metrics, after=0, limit=100) == ([{"step": 1}, {"step": 3}, {"step": 5}], 5)
    assert read_metrics(metrics, after=2, limit=1) == ([{"step": 3}], 3)
    assert read_metrics(metrics, after=5, limit=10) == ([], 5)  # the half-written line waits for its end
    assert read_metrics(tmp_path / "none.jsonl", after=7, limit=10) == ([], 7)


def test_the_stale_limit_must_leave_room_for_late_heartbeats(queue, store, tmp_path) -> None:
    with pytest.raises(ValueError, match="3 heartbeat intervals"):
        Worker(queue, Settings(data_dir=tmp_path), store, "w", heartbeat_s=2, stale_after_s=5)
    defaults = Worker(queue, Settings(data_dir=tmp_path), store, "w")
    assert (defaults.heartbeat_s, defaults.stale_after_s) == (2.0, 30.0)
    assert defaults.threads == max(1, (os.cpu_count() or 1) - 1)
