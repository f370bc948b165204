"""Training jobs: train on an immutable snapshot, from scratch or by fine-tuning a registered model, choose the
checkpoint a user should use (backend.training.train_and_select, the same function as `run.py train`) and register it.

    job = submit_training(queue, snapshots, registry, request, user="alice")  # errors: nothing is queued

The job's folder (``<data dir>/jobs/<id>/``) is the training output folder: checkpoints, ``metrics.jsonl`` (what
GET /api/jobs/{id}/metrics streams to the Train tab's curves) and the selected model at its top level. A job
re-queued after its worker died, or resumed after a cancel, continues from the last checkpoint there (train()
resumes by itself). The result references the registered model: ``{"model_id", "name", "version", "step", "rule"}``.

A job with ``nproc_per_node`` N > 1 runs as N DDP ranks under torchrun on its worker's machine (run_ranks, rank
code in backend.jobs.train_ranks), the worker's thread budget shared between them; cancelling it interrupts the
ranks at the same step, after a checkpoint, so a resumed job continues from there like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.jobs.context import JobContext, JobStopped
from backend.jobs.handlers import register_handler
from backend.jobs.queue import JobInfo, JobQueue
from storage.episode_meta import validate_name

KIND = "train"
MAX_NPROC = 64  # DDP ranks one job may ask its worker for
RANKS_STOP_S = 120  # a stop waits this long for the ranks' checkpoint before killing them

# Presets a user picks from; every option can still be set on top. Budgets are wall-clock minutes of training and
# checkpoint selection together, so the same preset gives a usable model on a slower machine too.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"minutes": 3.0, "select_episodes": 4},
    "standard": {"minutes": 15.0, "select_episodes": 10},
}
# TrainConfig fields a job may set (the rest are the product's defaults or belong to the job: paths, resume, threads).
OPTIONS = (
    "steps", "minutes", "batch_size", "lr", "weight_decay", "warmup_steps", "min_lr_ratio", "grad_clip",
    "val_fraction", "augment", "paraphrase", "only_successful", "seed", "ema_decay", "policy_overrides",
    "checkpoint_every",
)  # fmt: skip


@dataclass(frozen=True)
class TrainingRequest:
    """What the Train tab (or a script) asks for. `snapshot`: its name or id; `base_model`: a registered model id
    to fine-tune (None: from scratch); `model_name`: the registry name of the result (default: the snapshot's
    dataset); `options`: TrainConfig fields (OPTIONS) over the preset; `select`: closed-loop checkpoint selection."""

    snapshot: str | int
    preset: str = "standard"
    base_model: int | None = None
    model_name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    select: bool = True
    select_episodes: int | None = None
    nproc_per_node: int = 1  # > 1: the worker runs the job as that many DDP ranks (torchrun) on its machine
    after: dict[str, Any] | None = None  # what follows the registered model, e.g. {"gate": ...} (services.continual)


def check_preset_and_options(preset: str, options: dict[str, Any]) -> None:
    """ValueError for an unknown preset or TrainConfig option (callers that write something first check early)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown training option(s) {', '.join(unknown)}; options: {', '.join(OPTIONS)}")


def submit_training(queue: JobQueue, snapshots: Any, registry: Any, request: TrainingRequest, *, user: str) -> JobInfo:
    """Check the request against the snapshot and base model, then queue it; nothing is queued on any error.

    Raises NotFoundError (unknown snapshot or model) or ValueError (empty snapshot, unknown preset or option, a bad
    value, a base model whose cameras, state or action size do not match the data)."""
    if not 1 <= int(request.nproc_per_node) <= MAX_NPROC:
        raise ValueError(f"nproc_per_node must be between 1 and {MAX_NPROC}, got {request.nproc_per_node}")
    check_preset_and_options(request.preset, request.options)
    snap = snapshots.get(request.snapshot)
    if snap.num_episodes == 0:
        raise ValueError(f"snapshot {snap.name!r} has no episodes")
    episodes = snapshots.episodes(snap.id)
    base = registry.get(request.base_model) if request.base_model is not None else None
    if base is not None:
        _check_compatible(base.config, episodes[0], base.label)
        if request.options.get("policy_overrides"):
            raise ValueError("policy_overrides apply only to a model trained from scratch, not to a fine-tuned one")
    options = dict(request.options)
    if base is None:  # a model from scratch takes its cameras and sizes from the data unless told otherwise
        first = episodes[0]
        options["policy_overrides"] = {
            "cameras": [c.name for c in first.cameras],
            "state_dim": len(first.state_names),
            "action_dim": len(first.action_names),
            **options.get("policy_overrides", {}),
        }
    name = request.model_name or snap.dataset
    validate_name(name, "model name")
    preset = PRESETS[request.preset]
    config = {
        "snapshot_id": snap.id,
        "snapshot": snap.name,
        "dataset": snap.dataset,
        "preset": request.preset,
        "base_model": base.id if base is not None else None,
        "model_name": name,
        "select": bool(request.select),
        "select_episodes": int(request.select_episodes or preset["select_episodes"]),
        "nproc_per_node": int(request.nproc_per_node),
        "options": {"minutes": preset["minutes"], **options},
    }
    if request.after:
        config["after"] = dict(request.after)
    if "steps" in request.options and "minutes" not in request.options:
        config["options"].pop("minutes")  # a step count replaces the preset's time budget
    # Every value checked now, so a bad one is a clear 4xx and nothing is queued (the folder is not touched here).
    train_config(config, out_dir=Path("not-created"))
    return queue.submit(KIND, config, user)


def train_config(config: dict[str, Any], *, out_dir: Path, threads: int | None = None):
    """The TrainConfig a job config stands for (ValueError for a bad value)."""
    from vla_core.train import TrainConfig

    options = dict(config["options"])
    return TrainConfig(
        dataset=config["dataset"],
        snapshot=config["snapshot_id"],
        out_dir=out_dir,
        num_threads=threads,
        progress=False,
        resume=True,
        **options,
    )


def _check_compatible(model_config: dict[str, Any], episode: Any, label: str) -> None:
    """The base model must see the data's cameras and act in the data's state and action spaces."""
    cameras = {c.name for c in episode.cameras}
    wanted = set(model_config.get("cameras") or ())
    if not wanted <= cameras:
        missing = ", ".join(sorted(wanted - cameras))
        raise ValueError(f"{label} needs camera(s) {missing}, which the snapshot's episodes do not have")
    for key, names in (("action_dim", episode.action_names), ("state_dim", episode.state_names)):
        if key in model_config and int(model_config[key]) != len(names):
            raise ValueError(f"{label} has {key} {model_config[key]}, the snapshot's episodes have {len(names)}")


def select_model(config: dict[str, Any], *, job_dir: Path, store: Any, settings: Any, threads: int | None,
                 on_log=None, should_stop=None):  # fmt: skip
    """Train the job's model into `job_dir` and choose the checkpoint to hand over (backend.training). The same
    call in the worker (one process) and in every rank of a DDP job (backend.jobs.train_ranks)."""
    from backend.services.models import ModelRegistry
    from backend.sim.paraphrases import paraphrase_table
    from backend.training import SelectionConfig, train_and_select

    cfg = train_config(config, out_dir=job_dir, threads=threads)
    factory = None
    if config.get("base_model") is not None:
        registry, base_id = ModelRegistry(store.session_factory, settings.models_dir), int(config["base_model"])

        def factory(_cfg):  # fine-tuning starts from the registered weights (verified before they load)
            return registry.load(base_id)

    selection = SelectionConfig(enabled=bool(config.get("select", True)), episodes=int(config["select_episodes"]))
    return train_and_select(
        cfg, store=store, selection=selection, paraphrases=paraphrase_table(), policy_factory=factory,
        on_log=on_log, should_stop=should_stop,
    )  # fmt: skip


@register_handler(KIND)
def run_training(ctx: JobContext) -> dict[str, Any]:
    from backend.services.models import ModelRegistry
    from vla_core.train import list_checkpoints

    config = ctx.config
    total = config["options"].get("steps")
    minutes = config["options"].get("minutes") or 1.0

    def on_log(record: dict) -> None:
        if "step" in record and record.get("loss") is not None:
            done = record["step"] / total if total else record.get("elapsed_s", 0.0) / (60.0 * minutes)
            ctx.report(min(0.99, done), f"step {record['step']}, loss {record['loss']:.4f}")
        elif "checkpoint" in record:
            ctx.report(ctx.progress()[0], f"checkpoint at step {record.get('step')}: {record.get('success')}")

    ctx.log.info("training %s on snapshot %s (%s)", config["model_name"], config["snapshot"], config["preset"])
    done_before = list_checkpoints(ctx.job_dir)
    if done_before:  # a re-queued (worker died) or resumed (cancelled) job: train() continues from there
        ctx.log.info("resuming from checkpoint %s", done_before[-1].name)
    nproc = int(config.get("nproc_per_node") or 1)
    if nproc > 1:
        step, rule = run_ranks(ctx, nproc, on_log)
    else:
        selected = select_model(config, job_dir=ctx.job_dir, store=ctx.store, settings=ctx.settings,
                                threads=ctx.threads, on_log=on_log, should_stop=ctx.should_stop)  # fmt: skip
        if selected.training.metrics.get("stopped_by") == "cancelled":
            raise JobStopped()
        step, rule = selected.step, selected.rule
    if ctx.should_stop():
        raise JobStopped()
    registry = ModelRegistry(ctx.store.session_factory, ctx.settings.models_dir)
    model = registry.register(
        ctx.job_dir, name=config["model_name"], created_by=ctx.job.created_by, parent_id=config.get("base_model"),
        snapshot_id=config["snapshot_id"], job_id=ctx.id,
    )  # fmt: skip
    ctx.log.info("registered %s (step %d, chosen by %s)", model.label, step, rule)
    result = {"model_id": model.id, "name": model.name, "version": model.version, "step": step, "rule": rule}
    gate = (config.get("after") or {}).get("gate")
    if gate is not None:  # continual learning: evaluate parent and child on the suite; the A/B gate decides then
        jobs = queue_gate_evaluations(JobQueue(ctx.store.session_factory, data_dir=ctx.settings.data_dir), registry,
                                      {**gate, "child_id": model.id}, user=ctx.job.created_by)  # fmt: skip
        result["gate_evaluations"] = jobs
        ctx.log.info("queued the A/B gate's evaluation job(s) %s on suite %s", jobs, gate["suite"])
    return result


def queue_gate_evaluations(queue: JobQueue, registry: Any, gate: dict[str, Any], *, user: str | None) -> list[int]:
    """The evaluation jobs the A/B gate needs: the child's on the suite, and the parent's unless it has one."""
    from backend.jobs.evaluate import EvaluationRequest, submit_evaluation

    wanted = [gate["child_id"]]
    if not any(e.get("suite") == gate["suite"] for e in registry.evaluations(gate["parent_id"])):
        wanted.append(gate["parent_id"])
    return [submit_evaluation(queue, registry, EvaluationRequest(model_id=m, suite=gate["suite"], gate=gate),
                              user=user or "continual-learning").id for m in wanted]  # fmt: skip


def run_ranks(ctx: JobContext, nproc: int, on_log) -> tuple[int, str]:
    """Run the job as `nproc` torchrun ranks on this machine (the worker's threads shared between them), following
    their metrics.jsonl for progress; a stop (cancel, shutdown) stops them through STOP_FILE, after a checkpoint.
    Returns the (step, rule) of the model rank 0 selected."""
    import json
    import os
    import signal
    import subprocess
    import time

    from backend.jobs.files import read_metrics
    from backend.jobs.train_ranks import RANKS_FILE, STOP_FILE
    from vla_core.distributed import torchrun_command
    from vla_core.policies.base import load_training_metadata

    s = ctx.settings
    spec = {"config": ctx.config, "threads": max(1, ctx.threads // nproc), "data_dir": str(s.data_dir),
            "database_url": s.database_url, "models_dir": str(s.models_dir)}  # fmt: skip
    (ctx.job_dir / RANKS_FILE).write_text(json.dumps(spec))
    stop_file = ctx.job_dir / STOP_FILE
    stop_file.unlink(missing_ok=True)  # left by the attempt a cancel stopped
    command = torchrun_command(nproc, ["-m", "backend.jobs.train_ranks", str(ctx.job_dir)])
    ctx.log.info("starting %d DDP ranks: %s", nproc, " ".join(command))
    repo = str(Path(__file__).resolve().parents[2])  # so `-m backend.jobs.train_ranks` imports from any cwd
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)}
    with open(ctx.job_dir / "ranks.log", "ab") as out:
        # Their own process group: a Ctrl-C meant for the worker reaches them as the stop file (a checkpoint first),
        # and killing the group takes torchrun's ranks with it (killing torchrun alone would orphan them).
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    seen = 0
    try:
        while proc.poll() is None:
            if ctx.should_stop():
                stop_file.touch()  # every rank stops at the same step, after a checkpoint
                try:
                    proc.wait(RANKS_STOP_S)
                except subprocess.TimeoutExpired:
                    ctx.log.warning("the ranks did not stop within %d s: killed", RANKS_STOP_S)
                raise JobStopped()
            records, seen = read_metrics(ctx.metrics_path, after=seen, limit=10_000)
            for record in records:
                on_log(record)
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"the DDP ranks exited with {proc.returncode}; see ranks.log in the job folder")
    meta = load_training_metadata(ctx.job_dir)
    selection = meta.get("selection") or {}
    return int(meta.get("selected_step") or meta.get("steps") or 0), str(selection.get("rule") or "final")


__all__ = ["KIND", "OPTIONS", "PRESETS", "TrainingRequest", "submit_training", "train_config"]
