"""A real training job in real `run.py worker` processes: the worker running it is SIGKILLed between checkpoints,
the next worker re-queues the job once its heartbeat is stale and resumes it from its last complete checkpoint, and
the model it registers has exactly the weights of the same job run from start to end without a kill.

Both runs happen in worker processes with one thread each (VLA_WORKER_THREADS=1): the weights of a CPU run depend
on the thread count, so the reference must not run in this test process. Deadlines are safety nets for a hung
process, never timing claims."""

from __future__ import annotations

import signal

import torch
from helpers import TINY_POLICY_KWARGS, open_store, record_episode
from safetensors.torch import load_file
from worker_procs import DEADLINE_S, start_worker, wait_for, worker_env

from backend.jobs import JobQueue, job_dir
from backend.jobs.train import TrainingRequest, submit_training
from backend.services.models import ModelRegistry
from storage.models import JobStatus
from storage.snapshots import SnapshotService
from vla_core.train import list_checkpoints

STEPS, CHECKPOINT_EVERY = 60, 10
# The smallest policy the trainer builds from scratch (cameras and sizes come from the snapshot).
TINY = {k: v for k, v in TINY_POLICY_KWARGS.items() if k not in ("cameras", "state_dim", "action_dim")}


def test_a_training_job_killed_mid_run_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path) -> None:
    data_dir = tmp_path / "data"
    store = open_store(data_dir, recover=False)
    for _ in range(3):
        record_episode(store, 12, dataset="alpha")  # helpers.synthetic_step: gradients and noisy state/action
    snapshots = SnapshotService(store.session_factory, store)
    snap = snapshots.create("alpha-v1", "alpha", user="alice")
    queue = JobQueue(store.session_factory, data_dir=data_dir)
    registry = ModelRegistry(store.session_factory, data_dir / "models")
    options = {"steps": STEPS, "batch_size": 4, "checkpoint_every": CHECKPOINT_EVERY, "policy_overrides": TINY}

    def submit(name: str):
        request = TrainingRequest(snapshot=snap.id, preset="quick", model_name=name, select=False, options=options)
        return submit_training(queue, snapshots, registry, request, user="alice")

    env = worker_env(data_dir, stale_after_s=1.0)
    logs = [tmp_path / "victim.log", tmp_path / "survivor.log"]
    interrupted = submit("interrupted")
    victim = start_worker(env, "victim", log=logs[0])
    try:
        # Killed as soon as a checkpoint is complete: the run has 50 steps (seconds) to go, far more than one poll.
        wait_for(lambda: bool(list_checkpoints(job_dir(data_dir, interrupted.id))), "a first checkpoint", logs,
                 poll_s=0.01)  # fmt: skip
        victim.send_signal(signal.SIGKILL)  # no clean-up, no hand-back, no last checkpoint
        victim.wait(DEADLINE_S)
    finally:
        if victim.poll() is None:
            victim.kill()
    killed_at = int(list_checkpoints(job_dir(data_dir, interrupted.id))[-1].name[5:])
    assert CHECKPOINT_EVERY <= killed_at < STEPS
    assert queue.get(interrupted.id).status == JobStatus.RUNNING  # the database does not know yet

    uninterrupted = submit("uninterrupted")
    survivor = start_worker(env, "survivor", "--once", log=logs[1])  # re-queues the orphan, then runs both
    try:
        assert survivor.wait(DEADLINE_S) == 0, logs[1].read_text()
    finally:
        if survivor.poll() is None:
            survivor.kill()

    resumed, reference = queue.get(interrupted.id), queue.get(uninterrupted.id)
    assert resumed.status == JobStatus.SUCCEEDED and resumed.attempts == 2, resumed.error
    assert resumed.worker == "survivor" and reference.status == JobStatus.SUCCEEDED, reference.error
    log = (job_dir(data_dir, interrupted.id) / "job.log").read_text()
    assert f"resuming from checkpoint step_{killed_at:06d}" in log
    assert "resuming from" not in (job_dir(data_dir, uninterrupted.id) / "job.log").read_text()

    a, b = (registry.get(job.result["model_id"]) for job in (resumed, reference))
    assert a.name == "interrupted" and b.name == "uninterrupted"
    wa, wb = load_file(str(a.path / "model.safetensors")), load_file(str(b.path / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # Not a vacuous equality: training moved the weights away from the ones the first checkpoint holds.
    first = load_file(
        str(job_dir(data_dir, uninterrupted.id) / f"checkpoints/step_{CHECKPOINT_EVERY:06d}/model.safetensors")
    )
    assert any(not torch.equal(first[k], wb[k]) for k in wb)
