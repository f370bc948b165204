"""Run the queued jobs of a test app in this process, as a worker would (a test has no worker process running)."""

from __future__ import annotations

from backend.jobs import Worker


def run_queued_jobs(app, name: str = "test-worker") -> int:
    """Claim and run every queued job of `app`'s queue, one after the other; returns how many ran. The thread
    limit is left alone (Worker.run would set it for the whole test process)."""
    state = app.state
    worker = Worker(state.jobs, state.settings, state.store, name, heartbeat_s=0.05, stale_after_s=60)
    ran = 0
    while (job := state.jobs.claim(name)) is not None:
        worker.run_job(job)
        ran += 1
    return ran
