"""Behavioural cloning: `train(cfg, *, store) -> ModelRef`, the one function the CLI and the job runner call.

    out_dir/
      config.json, model.safetensors, ...   the final policy (save_pretrained), loadable by vla_core.inference
      training_metadata.json                dataset, episodes, steps, wall time, final losses, uncertainty calibration
      metrics.jsonl                         one JSON line per log interval: step, loss, val_loss, lr, samples_per_s
      checkpoints/step_000500/              save_pretrained folder + training_state.pt (optimizer, RNG, step, time)

A run resumes from the newest complete checkpoint in out_dir (`resume=True`); a resumed run reproduces the
uninterrupted one exactly for a step budget (every RNG stream is restored), and a `minutes` budget counts the
training time before the interruption too.

Under torchrun every rank calls train(cfg) (vla_core.distributed): DDP, a data shard and seeds per rank, and rank 0
alone writes the files above. Frames come from the memory-mapped cache of vla_core.frame_cache.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from storage.episode_store import EpisodeStore
from vla_core import data as vdata
from vla_core import distributed as vdist
from vla_core.constants import CHECKPOINTS_DIR, METRICS_FILE, STATE_FILE
from vla_core.ema import WeightEMA
from vla_core.frame_cache import default_cache_dir
from vla_core.metrics import calibrate_threshold, share_above
from vla_core.policies.base import json_default, load_training_metadata, save_training_metadata

DEFAULT_STEPS = 2000


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved with every checkpoint and the final model)."""

    dataset: str
    out_dir: Path
    snapshot: int | str | None = None  # train on this snapshot (of `dataset`) and its frozen annotations instead
    policy: str = "vla_tiny"  # registered policy name
    policy_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {"image_size": 64, "d_model": 64}
    steps: int | None = None  # optimizer steps; with neither steps nor minutes: DEFAULT_STEPS
    minutes: float | None = None  # wall-clock budget of the training loop; stops cleanly and saves
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05  # the cosine ends at lr * min_lr_ratio
    grad_clip: float = 1.0
    val_fraction: float = 0.1  # of episodes, per (task, colour)
    val_every: int = 200  # steps; also at the end
    val_frames: int = 512  # validation loss on a fixed subset of held-out frames
    augment: bool = True
    max_shift: int = 6  # px
    brightness: float = 0.15
    contrast: float = 0.15
    paraphrase: bool = True  # sample instruction paraphrases (needs the caller's paraphrase table)
    only_successful: bool = True
    seed: int = 0
    checkpoint_every: int = 500  # steps (0: only at the end)
    checkpoint_every_minutes: float | None = None  # also checkpoint on a wall-clock period (training curves)
    # Also checkpoint once each share of the budget (steps or minutes, see budget_fraction) is done: the same points
    # of the schedule on a fast and a slow machine (what checkpoint selection compares).
    checkpoint_fractions: tuple[float, ...] = ()
    keep_checkpoints: int | None = None  # None keeps all
    # EMA of the weights (vla_core.ema): checkpoints and the final model hold the average, training_state.pt the raw
    # weights and the EMA state too. None trains and saves the raw weights.
    ema_decay: float | None = 0.999
    resume: bool = True
    num_threads: int | None = None  # torch intra-op threads; None = every core
    log_every: int = 20
    progress: bool = True  # tqdm bar
    calibrate: bool = True
    calibration_quantile: float = 0.95
    calibration_frames: int = 1024
    cache_dir: Path | None = None  # memory-mapped frame cache; None: <data_dir>/cache/frames (vla_core.frame_cache)
    device: str = "auto"  # "auto" (this rank's GPU when CUDA is present), "cpu" or "cuda"
    amp: bool = True  # bf16 autocast of the forward pass on CUDA (ignored on the CPU)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir)
        self.checkpoint_fractions = tuple(sorted(self.checkpoint_fractions))  # a JSON job config gives a list
        self.validate()

    def validate(self) -> None:
        """Raise ValueError with a readable message for any nonsensical value."""
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError("dataset must be a non-empty name")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        if self.minutes is not None:
            m = self.minutes
            if isinstance(m, bool) or not isinstance(m, int | float) or not math.isfinite(m) or m <= 0:
                raise ValueError(f"minutes must be a positive number, got {m!r}")
        for name in ("batch_size", "log_every", "val_every", "val_frames", "calibration_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive, got {self.grad_clip}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.checkpoint_every < 0 or self.warmup_steps < 0:
            raise ValueError("checkpoint_every and warmup_steps must not be negative")
        if self.device not in vdist.DEVICES:
            raise ValueError(f"device must be one of {', '.join(vdist.DEVICES)}, got {self.device!r}")
        if not all(isinstance(f, int | float) and 0.0 < f <= 1.0 for f in self.checkpoint_fractions):
            raise ValueError(f"checkpoint_fractions must lie in (0, 1], got {list(self.checkpoint_fractions)}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {self.ema_decay}")

    @property
    def max_steps(self) -> int | None:
        if self.steps is None and self.minutes is None:
            return DEFAULT_STEPS
        return self.steps

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


@dataclass(frozen=True)
class ModelRef:
    """Where the trained policy is and how training went."""

    path: Path
    step: int
    metrics: dict
    checkpoints: tuple[Path, ...] = ()


# ----------------------------------------------------------------------------------------------- helpers
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_factor(step: int, progress: float, warmup_steps: int, min_ratio: float) -> float:
    """Linear warmup over `warmup_steps`, then a cosine from 1 to `min_ratio` over `progress` in [0, 1]."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    p = min(max(progress, 0.0), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p))


def budget_fraction(cfg: TrainConfig, step: int, elapsed_s: float) -> float:
    """The share of the run's budget done after `step` steps and `elapsed_s` training seconds: steps / max_steps or
    elapsed / minutes, whichever is further (what `checkpoint_fractions` count in)."""
    done = [0.0]
    if cfg.max_steps is not None:
        done.append(step / cfg.max_steps)
    if cfg.minutes is not None:
        done.append(elapsed_s / (cfg.minutes * 60.0))
    return max(done)


def list_checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoints (they hold training_state.pt, written last), oldest first."""
    root = Path(out_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step_*") if p.is_dir() and (p / STATE_FILE).is_file() and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def make_default_policy(cfg: TrainConfig):
    """A fresh policy of the registered type `cfg.policy` with `cfg.policy_overrides` applied to its config."""
    from vla_core.policies import get_config_class, make_policy

    try:
        config_class = get_config_class(cfg.policy)
    except KeyError as error:
        raise ValueError(error.args[0]) from None
    # PretrainedConfig keeps unknown keys silently: a typo would train the default size without a word.
    unknown = sorted(k for k in cfg.policy_overrides if not hasattr(config_class(), k))
    if unknown:
        raise ValueError(f"unknown {cfg.policy} config field(s): {', '.join(unknown)}")
    return make_policy(config_class(**cfg.policy_overrides))


def _param_groups(policy: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases, norms and embeddings' 1-D parameters (the usual AdamW recipe)."""
    decay, no_decay = [], []
    for _, p in policy.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _policy_dims(policy) -> tuple[tuple[str, ...], int, int]:
    c = policy.config
    return tuple(c.cameras), int(c.image_size), int(c.chunk_size)


def build_paraphrase_table(templates: Mapping[tuple[str, str], Sequence[str]]) -> dict[str, list[str]]:
    """{instruction: [all paraphrases of the same task + colour]} from {(task, colour): [filled-in texts]}."""
    table: dict[str, list[str]] = {}
    for texts in templates.values():
        texts = list(dict.fromkeys(texts))
        for t in texts:
            table[t] = texts
    return table


# ----------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate_loss(policy, dataset: vdata.WindowDataset, indices: np.ndarray, batch_size: int) -> float:
    """Mean loss over `indices` (no augmentation, stored instructions), RNG untouched for the training stream."""
    was_training = policy.training
    policy.eval()
    total, count = 0.0, 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for i in range(0, len(indices), batch_size):
            idx = indices[i : i + batch_size]
            loss, _ = policy.forward(dataset.sample_batch(idx))
            total += float(loss) * len(idx)
            count += len(idx)
    policy.train(was_training)
    return total / max(count, 1)


@torch.no_grad()
def uncertainty_scores(policy, dataset: vdata.WindowDataset, indices: np.ndarray, batch_size: int) -> np.ndarray:
    """(N,) uncertainty of the policy's prediction on each frame (predict_chunk on the stored instruction)."""
    was_training = policy.training
    policy.eval()
    scores = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for i in range(0, len(indices), batch_size):
            batch = dataset.sample_batch(indices[i : i + batch_size])
            obs = {k: v for k, v in batch.items() if k.startswith("observation.")}
            out = policy.predict_chunk(obs, batch["task"])
            scores.append(np.asarray(torch.as_tensor(out.uncertainty).float().cpu()).reshape(-1))
    policy.train(was_training)
    return np.concatenate(scores) if scores else np.zeros(0)


def _subset(n: int, k: int, seed: int) -> np.ndarray:
    """A fixed, sorted subset of k of n frame indices (all of them when k >= n)."""
    if k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


# ----------------------------------------------------------------------------------------------- train
def train(
    cfg: TrainConfig,
    *,
    store: EpisodeStore,
    paraphrases: Mapping[str, Sequence[str]] | None = None,
    policy_factory: Callable[[TrainConfig], Any] | None = None,
    on_log: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    on_checkpoint: Callable[[Path, int, float], dict | None] | None = None,
    select_final: Callable[[list[Path]], Path | None] | None = None,
) -> ModelRef:
    """Train a policy on `cfg.dataset` by behavioural cloning and save it to `cfg.out_dir`.

    Args:
        cfg: the run (see TrainConfig).
        store: the episode store to read from.
        paraphrases: {stored instruction: [paraphrases]} to sample instructions from (vla_core cannot import the
            sim's task templates; the caller builds this, e.g. with build_paraphrase_table).
        policy_factory: builds the untrained policy from cfg (default: the registered `cfg.policy`).
        on_log: called with every metrics record (the job runner streams them).
        should_stop: polled every step; True stops cleanly with a checkpoint (a cancelled job).
        clock: seconds, for the `minutes` budget, time-based checkpoints and the reported timings (tests pass a
            fake one so a budget stops after a known number of steps).
        on_checkpoint: called with (folder, step, training seconds) after each checkpoint is written (not after a
            cancel or Ctrl-C); a returned dict (e.g. closed-loop success) is appended to metrics.jsonl as
            {"step", "checkpoint", **dict} and passed to on_log. The time spent in it does not count as training:
            the `minutes` budget, the schedule and `elapsed_s` cover the training loop only (see backend/training.py).
        select_final: given the complete checkpoints once training ends (not after a cancel), returns the one whose
            weights become the top-level model, calibrated there (None: the final weights).
    """
    cfg.validate()
    t_start = clock()
    out_dir = cfg.out_dir
    checkpoints = list_checkpoints(out_dir)
    if checkpoints and not cfg.resume:
        raise ValueError(f"{out_dir} already holds checkpoints; resume from them or choose a new output folder")
    # Fails early with a clear message for an unknown or empty dataset, before anything is built or written.
    infos = vdata.list_dataset_episodes(
        store, cfg.dataset, only_successful=cfg.only_successful, snapshot=cfg.snapshot
    )

    ctx = vdist.setup(cfg.device)  # joins torchrun's process group when there is one (see vla_core.distributed)
    torch.set_num_threads(cfg.num_threads or vdist.default_threads(ctx.local_world_size))
    seed_everything(cfg.seed)  # the same initial weights on every rank
    policy = (policy_factory or make_default_policy)(cfg)
    cameras, image_size, chunk_size = _policy_dims(policy)
    if ctx.rank:
        seed_everything(vdist.rank_seed(cfg.seed, ctx.rank))  # dropout and sampling noise of its own per rank

    t_load = clock()
    load = dict(cameras=cameras, image_size=image_size, cache_dir=cfg.cache_dir or default_cache_dir(store.data_dir))
    if ctx.distributed:  # each rank decodes its share into the cache, then every rank maps all of it
        vdata.load_episodes(store, infos[ctx.rank :: ctx.world_size], **load)
        ctx.barrier()
    episodes = vdata.load_episodes(store, infos, **load)
    load_s = clock() - t_load
    table = paraphrases if cfg.paraphrase else None
    train_ds, val_ds = vdata.build_datasets(
        episodes, chunk_size=chunk_size, cameras=cameras, val_fraction=cfg.val_fraction, seed=cfg.seed,
        paraphrases=table,
    )  # fmt: skip
    # The stats of what the policy predicts: relative joint targets when the policy says so (see its config).
    relative_dims = int(getattr(policy.config, "n_relative_action_dims", 0))
    stats = vdata.normalization_stats(train_ds.episodes, chunk_size=chunk_size, relative_dims=relative_dims)
    policy.set_normalization(stats)
    policy.to(ctx.device)
    val_idx = _subset(len(val_ds), cfg.val_frames, cfg.seed) if val_ds is not None else None

    optimizer = torch.optim.AdamW(_param_groups(policy, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))
    # This rank's windows (all of them in a single process) and its own streams over them.
    train_shard = vdist.shard(len(train_ds), ctx.rank, ctx.world_size)
    data_rng = np.random.default_rng(vdist.rank_seed(cfg.seed + 1, ctx.rank))  # batch indices + paraphrases
    aug_gen = torch.Generator().manual_seed(vdist.rank_seed(cfg.seed + 2, ctx.rank))  # augmentation
    augmentation = vdata.Augmentation(cfg.max_shift, cfg.brightness, cfg.contrast, enabled=cfg.augment)

    step, elapsed_before = 0, 0.0
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / METRICS_FILE
    last_val: float | None = None
    if checkpoints:
        state = torch.load(checkpoints[-1] / STATE_FILE, map_location="cpu", weights_only=False)
        if state["config"]["dataset"] != cfg.dataset:
            raise ValueError(
                f"{out_dir} holds a run on dataset {state['config']['dataset']!r}, not {cfg.dataset!r}; "
                "choose a new output folder"
            )
        policy.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed_before, last_val = state["step"], state["elapsed_s"], state.get("val_loss")
        _restore_rng(state["rng"], ctx, data_rng, aug_gen, seed=cfg.seed + step)
        if ctx.is_main:
            _truncate_metrics(metrics_path, step)
    elif ctx.is_main and metrics_path.exists():
        metrics_path.unlink()
    # The model that is validated, checkpointed and handed over: the weights' EMA, or the raw weights without one.
    ema = WeightEMA(policy, cfg.ema_decay) if cfg.ema_decay else None
    if ema is not None and checkpoints and "ema" in state:
        ema.load_state_dict(state["ema"])  # (a run that had no EMA before starts its average here)
    eval_model = ema.module if ema is not None else policy

    max_steps = cfg.max_steps
    budget_s = cfg.minutes * 60.0 if cfg.minutes is not None else None
    warmup = cfg.warmup_steps if max_steps is None else min(cfg.warmup_steps, max(max_steps // 10, 0))

    def progress_fraction(step_now: int, elapsed: float) -> float:
        fractions = []
        if max_steps is not None:
            fractions.append((step_now - warmup) / max(max_steps - warmup, 1))
        if budget_s is not None:
            fractions.append(elapsed / budget_s)
        return max(fractions)

    def stop_reason(step_now: int, elapsed: float) -> str | None:
        if max_steps is not None and step_now >= max_steps:
            return "steps"
        if budget_s is not None and elapsed >= budget_s:
            return "minutes"
        if should_stop is not None and should_stop():
            return "cancelled"
        return None

    model = ctx.wrap(policy)  # what the training step calls: DDP averages the gradients across ranks
    from tqdm import tqdm

    bar = tqdm(
        total=max_steps, initial=step, desc=f"train {cfg.dataset}", unit="step",
        disable=not (cfg.progress and ctx.is_main),
        dynamic_ncols=True,
    )  # fmt: skip
    policy.train()
    t0 = clock()  # elapsed = elapsed_before + (now - t0)
    window_loss, window_n, window_t0, window_samples = 0.0, 0, clock(), 0
    last_loss = float("nan")
    next_time_ckpt = _next_period(elapsed_before, cfg.checkpoint_every_minutes)
    stopped_by = "steps"
    saved_at = step if checkpoints else -1  # the checkpoint resumed from is neither written nor reported again
    val_at = step if checkpoints else -1  # the step last_val was measured at
    # The raw weights' val loss beside the EMA's at each checkpoint (how much the EMA helps; not at every val_every:
    # a second pass there would cost ~2.5% of the training time).
    last_val_raw: float | None = None
    pending_fractions = [f for f in cfg.checkpoint_fractions if f > budget_fraction(cfg, step, elapsed_before) + 1e-9]
    callback_s = 0.0

    def validate() -> None:
        nonlocal last_val, val_at
        if not ctx.is_main:  # rank 0 alone measures and records the validation loss
            return
        last_val = evaluate_loss(eval_model, val_ds, val_idx, cfg.batch_size)
        val_at = step

    def save_checkpoint(elapsed: float, *, collective: bool = True) -> Path:
        """Rank 0 writes it; under DDP every rank's RNG streams go in too (a collective, except after Ctrl-C)."""
        nonlocal saved_at, last_val_raw
        if val_ds is not None and val_at != step:
            validate()  # every checkpoint records the val loss of its own weights (selection's tie-break, fallback)
        if val_ds is not None and ema is not None and ctx.is_main:
            last_val_raw = evaluate_loss(policy, val_ds, val_idx, cfg.batch_size)
        rng = _rng_state(data_rng, aug_gen)
        if ctx.distributed and collective:
            rng["ranks"] = ctx.gather(rng)
        saved_at = step
        if not ctx.is_main:
            return out_dir / CHECKPOINTS_DIR / f"step_{step:06d}"
        path = _save_checkpoint(out_dir, step, policy, optimizer, cfg, elapsed, last_val, rng, ema=ema,
                                val_loss_raw=last_val_raw)  # fmt: skip
        if cfg.keep_checkpoints:
            for old in list_checkpoints(out_dir)[: -cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        return path

    def report_checkpoint(path: Path, elapsed: float) -> None:
        """on_checkpoint, with its time taken off the training clock (t0 moves forward by as much)."""
        nonlocal t0, window_t0, callback_s
        if on_checkpoint is None or not ctx.is_main:  # the others wait for rank 0 in the next collective
            return
        started = clock()
        extra = on_checkpoint(path, step, elapsed)
        if extra:
            record = {"step": step, "checkpoint": path.name, **extra}
            _append_metrics(metrics_path, record)
            if on_log is not None:
                on_log(record)
        spent = clock() - started
        t0, window_t0, callback_s = t0 + spent, window_t0 + spent, callback_s + spent

    try:
        while True:
            elapsed = elapsed_before + clock() - t0
            reason = stop_reason(step, elapsed) if ctx.is_main else None
            if ctx.distributed:  # rank 0's clock and verdict for all, so no rank is left waiting in an all-reduce
                code, elapsed = ctx.from_main([_STOP_REASONS.index(reason), elapsed])
                reason = _STOP_REASONS[int(code)]
            if reason is not None:
                stopped_by = reason
                break
            lr = cfg.lr * lr_factor(step, progress_fraction(step, elapsed), warmup, cfg.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            idx = train_shard[data_rng.integers(0, len(train_shard), size=cfg.batch_size)]
            batch = train_ds.sample_batch(idx, rng=data_rng, augmentation=augmentation, generator=aug_gen)
            with vdist.autocast(ctx.device, cfg.amp):
                loss, info = model(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {float(loss)} at step {step}; lower lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip))
            optimizer.step()
            if ema is not None:
                ema.update()
            step += 1
            last_loss = float(loss.detach())
            window_loss += last_loss
            window_n += 1
            window_samples += cfg.batch_size
            bar.update(1)

            elapsed = elapsed_before + clock() - t0
            if ctx.distributed:
                elapsed = ctx.from_main([elapsed])[0]
            do_val = val_ds is not None and (step % cfg.val_every == 0)
            if do_val:
                validate()
            # Step 1 of a fresh run is logged too: the Train tab's curves and the job's progress start at once
            # instead of log_every steps later (not after a resume: its records must match an uninterrupted run's).
            if step % cfg.log_every == 0 or do_val or step == 1:
                now = clock()
                record = {
                    **{k: float(v) for k, v in (info or {}).items() if _is_number(v)},  # the policy's own terms
                    "step": step,
                    "loss": ctx.mean(window_loss / window_n),  # over every rank's batches
                    "val_loss": last_val if do_val else None,  # of the model checkpoints hold (the EMA)
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "samples_per_s": window_samples * ctx.world_size / max(now - window_t0, 1e-9),
                    "elapsed_s": elapsed,
                }
                if ctx.is_main:
                    _append_metrics(metrics_path, record)
                    if on_log is not None:
                        on_log(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.1e}", refresh=False)
                window_loss, window_n, window_t0, window_samples = 0.0, 0, now, 0
            due = bool(cfg.checkpoint_every) and step % cfg.checkpoint_every == 0
            if next_time_ckpt is not None and elapsed >= next_time_ckpt:
                due, next_time_ckpt = True, _next_period(elapsed, cfg.checkpoint_every_minutes)
            done = budget_fraction(cfg, step, elapsed)
            while pending_fractions and done >= pending_fractions[0] - 1e-9:
                pending_fractions.pop(0)
                due = True
            if due:
                report_checkpoint(save_checkpoint(elapsed), elapsed)
    except KeyboardInterrupt:
        bar.close()
        if step > 0 and saved_at != step:
            save_checkpoint(elapsed_before + clock() - t0, collective=False)  # the other ranks may be gone
        raise
    bar.close()
    train_s = elapsed_before + clock() - t0

    # Final validation (unless this step was just validated) and a checkpoint to continue from later.
    if val_ds is not None and (val_at != step or last_val is None):
        validate()
    if saved_at != step and step > 0:
        final_checkpoint = save_checkpoint(train_s)
        if stopped_by != "cancelled":
            report_checkpoint(final_checkpoint, train_s)
    if not ctx.is_main:  # rank 0 alone selects, calibrates and writes the final model; the others wait for it
        ctx.barrier()
        ctx.close()
        return _model_ref(out_dir, load_training_metadata(out_dir))
    chosen = None
    if select_final is not None and stopped_by != "cancelled":
        started = clock()
        chosen = select_final(list_checkpoints(out_dir))
        callback_s += clock() - started
    if chosen is not None:
        eval_model.load_state_dict(_checkpoint_weights(chosen))  # training is over: the averaged copy is free

    calibration = None
    if cfg.calibrate:
        calibration = _calibrate(eval_model, val_ds, train_ds, cfg)
        eval_model.config.uncertainty_threshold = calibration["threshold"]
    policy.eval()
    eval_model.save_pretrained(out_dir)
    metadata = {
        "dataset": cfg.dataset,
        "policy": cfg.policy,
        "episodes": {
            "train": [e.episode_id for e in train_ds.episodes],
            "val": [e.episode_id for e in val_ds.episodes] if val_ds is not None else [],
        },
        "frames": {"train": len(train_ds), "val": len(val_ds) if val_ds is not None else 0},
        "steps": step,
        "stopped_by": stopped_by,
        "wall_time_s": train_s,
        "load_time_s": load_s,
        "total_time_s": clock() - t_start,
        "final_loss": last_loss,
        "final_val_loss": last_val,
        "final_val_loss_raw": last_val_raw,  # of the final checkpoint's raw weights (None without an EMA)
        # The checkpoint whose weights the top level holds (select_final), None for the final weights.
        "selected_checkpoint": chosen.name if chosen is not None else None,
        "callback_time_s": callback_s,  # in on_checkpoint and select_final: not in wall_time_s, in total_time_s
        "samples_per_s": step * cfg.batch_size * ctx.world_size / max(train_s, 1e-9),  # every rank's samples
        "normalization": stats,
        "uncertainty": calibration,
        "config": cfg.to_dict(),
        "paraphrases": bool(table),
        "torch": torch.__version__,
        "num_threads": torch.get_num_threads(),  # per rank
        "world_size": ctx.world_size,  # processes (DDP ranks); batch_size is per rank
        "device": str(ctx.device),
        "amp": cfg.amp and ctx.device.type == "cuda",
    }
    save_training_metadata(out_dir, metadata)
    ctx.barrier()  # the final model exists before any rank returns
    ctx.close()
    return _model_ref(out_dir, metadata)


def _model_ref(out_dir: Path, metadata: dict) -> ModelRef:
    """The ModelRef of a finished run from its training metadata (what every rank returns)."""
    calibration = metadata["uncertainty"]
    return ModelRef(
        path=out_dir,
        step=metadata["steps"],
        metrics={
            "final_loss": metadata["final_loss"],
            "final_val_loss": metadata["final_val_loss"],
            "wall_time_s": metadata["wall_time_s"],
            "samples_per_s": metadata["samples_per_s"],
            "stopped_by": metadata["stopped_by"],
            "uncertainty_threshold": calibration["threshold"] if calibration else None,
            "selected_checkpoint": metadata["selected_checkpoint"],
        },
        checkpoints=tuple(list_checkpoints(out_dir)),
    )


def _calibrate(policy, val_ds, train_ds, cfg: TrainConfig) -> dict:
    """Uncertainty threshold = the `calibration_quantile` of the score on held-out successful frames."""
    ds, split = (val_ds, "val") if val_ds is not None else (train_ds, "train")
    idx = _subset(len(ds), cfg.calibration_frames, cfg.seed + 3)
    scores = uncertainty_scores(policy, ds, idx, cfg.batch_size)
    threshold = calibrate_threshold(scores, cfg.calibration_quantile)
    return {
        "threshold": threshold,
        "quantile": cfg.calibration_quantile,
        "split": split,  # "train" only when no episode could be held out (tiny datasets): optimistic
        "frames": int(len(scores)),
        "share_above": share_above(scores, threshold),
        "score_mean": float(np.mean(scores)),
        "score_p50": float(np.quantile(scores, 0.5)),
    }


_STOP_REASONS = (None, "steps", "minutes", "cancelled")  # a stop reason as a number, to broadcast it


def _rng_state(data_rng: np.random.Generator, aug_gen: torch.Generator) -> dict:
    """Every random stream of this process (the CUDA one too when training there), for an exact resume."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
             "data": data_rng.bit_generator.state, "aug": aug_gen.get_state()}  # fmt: skip
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _restore_rng(rng: dict, ctx: vdist.DistContext, data_rng, aug_gen, *, seed: int) -> None:
    """Restore this rank's streams from a checkpoint's. Rank r > 0 finds its own under "ranks" when the run had
    the same number of ranks; otherwise (a resume on more ranks) it starts fresh streams seeded from (seed, r)."""
    ranks = rng.get("ranks")
    if ctx.rank and not (ranks and len(ranks) == ctx.world_size):
        seed_everything(vdist.rank_seed(seed, ctx.rank))
        data_rng.bit_generator.state = np.random.default_rng(vdist.rank_seed(seed + 1, ctx.rank)).bit_generator.state
        aug_gen.manual_seed(vdist.rank_seed(seed + 2, ctx.rank))
        return
    mine = ranks[ctx.rank] if ctx.rank else rng
    random.setstate(mine["python"])
    np.random.set_state(mine["numpy"])
    torch.set_rng_state(mine["torch"])
    data_rng.bit_generator.state = mine["data"]
    aug_gen.set_state(mine["aug"])
    if "cuda" in mine and torch.cuda.is_available():
        torch.cuda.set_rng_state(mine["cuda"])


def _is_number(v) -> bool:
    if isinstance(v, torch.Tensor):
        return v.numel() == 1
    return isinstance(v, int | float) and not isinstance(v, bool)


def _next_period(elapsed: float, minutes: float | None) -> float | None:
    if not minutes:
        return None
    period = minutes * 60.0
    return (math.floor(elapsed / period + 1e-9) + 1) * period


def _append_metrics(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record, default=json_default) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records logged after the checkpoint a run resumes from (they will be logged again)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept))


def _save_checkpoint(
    out_dir, step, policy, optimizer, cfg, elapsed, val_loss, rng, *, ema=None, val_loss_raw=None
) -> Path:
    """out_dir/checkpoints/step_XXXXXX: a save_pretrained folder (the EMA when there is one) + training_state.pt
    (the raw weights and the EMA state: an exact resume), renamed into place whole."""
    root = Path(out_dir) / CHECKPOINTS_DIR
    final = root / f"step_{step:06d}"
    tmp = root / f".step_{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if ema is not None:
        ema.module.save_pretrained(tmp)
    else:
        was_training = policy.training
        policy.eval()
        policy.save_pretrained(tmp)
        policy.train(was_training)
    state = {
        "step": step,
        "elapsed_s": elapsed,
        "val_loss": val_loss,
        "model": policy.state_dict(),  # exact resume whatever save_pretrained drops (e.g. tied weights)
        "optimizer": optimizer.state_dict(),
        "rng": rng,
        "config": cfg.to_dict(),
        **({"ema": ema.state_dict()} if ema is not None else {}),
    }
    torch.save(state, tmp / STATE_FILE)
    save_training_metadata(tmp, {"dataset": cfg.dataset, "steps": step, "wall_time_s": elapsed, "val_loss": val_loss,
                                 "val_loss_raw": val_loss_raw})  # fmt: skip
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def _checkpoint_weights(checkpoint: Path) -> dict:
    """The state dict of the model a checkpoint folder holds: its EMA when it has one, else the raw weights."""
    state = torch.load(Path(checkpoint) / STATE_FILE, map_location="cpu", weights_only=False)
    return state["ema"]["module"] if "ema" in state else state["model"]


__all__ = [
    "ModelRef",
    "TrainConfig",
    "budget_fraction",
    "build_paraphrase_table",
    "evaluate_loss",
    "list_checkpoints",
    "lr_factor",
    "train",
    "uncertainty_scores",
]
