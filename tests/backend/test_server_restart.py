"""Restarting the server leaves a running job running: the worker `run.py serve` embeds finishes the job it runs
when the server stops (Ctrl-C) or dies (SIGKILL), then exits, and the job ends once, on its first attempt.

Real processes on a throwaway data dir; the job is jobs_test_plugin's "test.sleep" holding its last step until the
test drops a file into its folder, so it is still running when the server is gone, whatever the machine's speed.
Deadlines are safety nets for a hung process, never timing claims."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import jobs_test_plugin
from helpers import free_port, open_store
from worker_procs import DEADLINE_S, ROOT, runs, start, wait_for, worker_env

from backend.jobs import JobQueue, job_dir
from storage.models import JobStatus

HOLD = "may-finish"


def _exited(pid: int) -> bool:
    """Gone, or a zombie nobody reaped yet (a container's PID 1 may not): either way it runs no more."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def _held_job(tmp_path: Path):
    data_dir = tmp_path / "data"
    store = open_store(data_dir, recover=False)
    queue = JobQueue(store.session_factory, data_dir=data_dir)
    job = queue.submit(jobs_test_plugin.KIND, {"steps": 3, "step_s": 0.01, "hold": HOLD}, "alice")
    return data_dir, queue, job


def _finish_and_check(data_dir: Path, queue: JobQueue, job_id: int, logs: list[Path]) -> None:
    """The job still runs on its first worker; released, it ends there on attempt 1 and the worker exits."""
    (pid, first_step), *others = runs(data_dir, job_id)
    assert not others and first_step == 0
    running = queue.get(job_id)
    assert running.status == JobStatus.RUNNING and not _exited(pid)
    (job_dir(data_dir, job_id) / HOLD).write_text("")
    wait_for(lambda: queue.get(job_id).finished, "the job to finish on its first worker", logs)
    done = queue.get(job_id)
    assert done.status == JobStatus.SUCCEEDED and done.attempts == 1 and done.worker == running.worker, done.error
    assert done.result["pid"] == pid and runs(data_dir, job_id) == [(pid, 0)]
    wait_for(lambda: _exited(pid), "the drained worker to exit", logs)


def test_a_job_keeps_running_when_the_server_that_started_its_worker_stops(tmp_path) -> None:
    data_dir, queue, job = _held_job(tmp_path)
    env = {
        **worker_env(data_dir, stale_after_s=60),
        "VLA_PORT": str(free_port()),
        "VLA_HOST": "127.0.0.1",
        "VLA_IMAGE_SIZE": "64",
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
    }
    log = tmp_path / "server.log"
    server = start(env, "serve", "--log-level", "warning", log=log)
    try:
        wait_for(lambda: queue.get(job.id).progress >= 2 / 3, "the embedded worker to run the job", [log])
        assert f"embedded-{server.pid}" in queue.get(job.id).worker
        server.send_signal(signal.SIGINT)  # Ctrl-C in the terminal of `make run`
        assert server.wait(DEADLINE_S) == 0, log.read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert "finishes its running job" in log.read_text()
    _finish_and_check(data_dir, queue, job.id, [log])


def test_a_job_keeps_running_when_the_process_that_started_its_worker_is_killed(tmp_path) -> None:
    """A server SIGKILLed (or crashed) cannot tell its worker anything: the worker notices its parent is gone."""
    data_dir, queue, job = _held_job(tmp_path)
    log = tmp_path / "parent.log"
    # A stand-in for `run.py serve`: starts the worker as serve does (own session, --parent-pid), then waits.
    parent_code = (
        "import os, subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, 'run.py', 'worker', '--name', 'embedded', '--parent-pid', str(os.getpid())],"
        " start_new_session=True)\n"
        "time.sleep(600)\n"
    )
    env = worker_env(data_dir, stale_after_s=60)
    with open(log, "ab") as out:
        parent = subprocess.Popen(
            [sys.executable, "-c", parent_code], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: queue.get(job.id).progress >= 2 / 3, "the worker to run the job", [log])
    finally:
        parent.kill()
        parent.wait()
    gone = "the process that started this worker is gone"
    wait_for(lambda: gone in log.read_text(), "the worker to notice its parent is gone", [log])
    _finish_and_check(data_dir, queue, job.id, [log])
