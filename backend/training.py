"""Training that hands over the model a user should use: `train_and_select(cfg, store=..., selection=...)`.

`run.py train` and the training job call this one function. It runs `vla_core.train.train` with checkpoints at fixed
shares of the budget (SelectionConfig.fractions: the same points of the LR schedule whether a machine fits 2,000 or
5,000 steps), rolls each of those checkpoints out in the sim on validation seeds (disjoint from the training seeds
and from the test seeds `run.py eval` and the benchmark use, which start at 100000), and makes the best one the
top-level model of the output folder, its uncertainty threshold calibrated on its own weights. Closed-loop success
peaks long before the validation loss stops falling (VLA benchmark: 88% at 6 of 15 minutes, 43% at the end), so
the final weights are not what to hand over.

Time: `cfg.minutes` is the whole wall-clock budget, training AND selection. The training loop gets
`minutes * (1 - reserve_fraction)`; the rollouts run while training is paused (train() takes the time spent in
its on_checkpoint hook off its own clock, so the LR schedule and the checkpoint shares are those of the training
time alone) and, with data loading and calibration, are meant to fit in the reserve. The reserve is sized for the
reference 2-core machine. Where rollouts cost more (a slower machine; a young policy that fails, so every rollout
runs to max_steps), intermediate candidates the reserve cannot fit are skipped (recorded as such) and the final
checkpoint is still rolled out: measured on a half-speed VM, 4 candidates took 584 s against a 180 s reserve.
training_metadata.json records the real split, and `over_budget_s` says by how much a run overran.

Datasets the sim cannot replay (a task or colour it does not know, another arm's joints, other cameras) are
selected by validation loss instead, and the metadata says why.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.rollouts import RolloutScore, SimRolloutScorer, sim_compatibility
from storage.episode_store import EpisodeStore
from vla_core import data as vdata
from vla_core.constants import CHECKPOINTS_DIR, METRICS_FILE
from vla_core.distributed import env_rank
from vla_core.metrics import wilson_interval
from vla_core.policies.base import json_default, load_training_metadata, save_training_metadata
from vla_core.train import ModelRef, TrainConfig, budget_fraction, list_checkpoints, train

__all__ = [
    "DEFAULT_FRACTIONS",
    "VALIDATION_SEEDS",
    "SelectedModel",
    "SelectionConfig",
    "SelectionPlan",
    "plan_selection",
    "train_and_select",
]

# Closed-loop validation seeds per colour: episode i of a colour uses base + i (skipping any seed a training
# episode of the same task and colour was recorded with). Test seeds (run.py eval, bench) start at 100000.
VALIDATION_SEEDS: Mapping[str, int] = {"red": 200_000, "green": 201_000, "blue": 202_000}
# Candidates at these shares of the training budget. Not earlier: at 20% the benchmark's policy was at 20%.
DEFAULT_FRACTIONS = (0.4, 0.6, 0.8, 1.0)

Scorer = Callable[[Path], RolloutScore | None]  # a checkpoint folder -> its rollouts (None: stopped early)


@dataclass(frozen=True)
class SelectionConfig:
    """How the model to hand over is chosen (see the module docstring)."""

    enabled: bool = True  # False: the final weights, no rollouts (run.py train --no-select)
    episodes: int = 10  # validation rollouts per (task, colour) per candidate checkpoint
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS  # candidates at these shares of the training budget
    reserve_fraction: float = 0.2  # of a minutes budget, kept for the rollouts, data loading and calibration
    max_steps: int = 200  # per rollout (the scripted expert needs ~90)
    workers: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))  # rollout processes; 0: in-process
    seed_bases: Mapping[str, int] = field(default_factory=lambda: dict(VALIDATION_SEEDS))

    def __post_init__(self) -> None:
        object.__setattr__(self, "fractions", tuple(sorted(float(f) for f in self.fractions)))
        if self.episodes < 1:
            raise ValueError(f"selection episodes must be at least 1, got {self.episodes}")
        if not self.fractions or not all(0.0 < f <= 1.0 for f in self.fractions) or self.fractions[-1] != 1.0:
            raise ValueError(f"selection fractions must lie in (0, 1] and end with 1.0, got {list(self.fractions)}")
        if not 0.0 <= self.reserve_fraction < 1.0:
            raise ValueError(f"reserve_fraction must be in [0, 1), got {self.reserve_fraction}")
        if self.max_steps < 1 or self.workers < 0:
            raise ValueError("max_steps must be at least 1 and workers must not be negative")


@dataclass(frozen=True)
class SelectionPlan:
    """What the candidates are rolled out on: the validation seeds per "task/colour", or why the sim cannot."""

    seeds: dict[str, list[int]]  # {"pick/red": [200000, ...]}; empty when the sim cannot replay the data
    fallback_reason: str | None = None  # set: selection by validation loss, for this reason

    @property
    def closed_loop(self) -> bool:
        return self.fallback_reason is None


@dataclass(frozen=True)
class SelectedModel:
    """The model handed over (`path`, the output folder's top level) and how it was chosen."""

    path: Path
    step: int  # of the selected checkpoint (the final step when nothing was selected)
    checkpoint: Path | None
    rule: str  # "closed_loop_success", "val_loss", or "final" (selection off, cancelled, or nothing to compare)
    reason: str | None  # why not closed-loop success, when it is not
    scores: tuple[dict, ...]  # every candidate's record, oldest first
    training: ModelRef
    timings: dict[str, float | None]


def plan_selection(
    store: EpisodeStore,
    dataset: str,
    selection: SelectionConfig,
    *,
    only_successful: bool = True,
    snapshot: int | str | None = None,
) -> SelectionPlan:
    """The validation seeds for every (task, colour) of `dataset` (or of its `snapshot`), or the reason the sim
    cannot replay it."""
    infos = vdata.list_dataset_episodes(store, dataset, only_successful=only_successful, snapshot=snapshot)
    reason = sim_compatibility(infos)
    if reason is not None:
        return SelectionPlan(seeds={}, fallback_reason=reason)
    missing = sorted({i.extra["colour"] for i in infos} - set(selection.seed_bases))
    if missing:
        return SelectionPlan(seeds={}, fallback_reason=f"no validation seeds for colour(s) {', '.join(missing)}")
    seeds: dict[str, list[int]] = {}
    for task, colour in sorted({(i.task, i.extra["colour"]) for i in infos}):
        used = {i.seed for i in infos if i.task == task and i.extra["colour"] == colour and i.seed is not None}
        chosen, seed = [], selection.seed_bases[colour]
        while len(chosen) < selection.episodes:
            if seed not in used:  # the same seed, task and colour would replay a training scene
                chosen.append(seed)
            seed += 1
        seeds[f"{task}/{colour}"] = chosen
    return SelectionPlan(seeds=seeds)


def train_and_select(
    cfg: TrainConfig,
    *,
    store: EpisodeStore,
    selection: SelectionConfig | None = None,
    paraphrases: Mapping[str, Sequence[str]] | None = None,
    policy_factory: Callable[[TrainConfig], Any] | None = None,
    on_log: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    scorer: Scorer | None = None,
) -> SelectedModel:
    """Train on `cfg.dataset`, choose among the checkpoints, and hand over the chosen one at `cfg.out_dir`.

    Args:
        cfg: the run; `cfg.minutes` (if set) is the budget of training and selection together.
        store, paraphrases, policy_factory, on_log, should_stop, clock: as for vla_core.train.train (on_log also
            gets each candidate's selection record; should_stop is polled between rollouts too).
        selection: how to choose (default SelectionConfig()).
        scorer: rolls a checkpoint folder out (tests inject one); default: the sim on the plan's validation seeds.
    """
    selection = selection or SelectionConfig()
    t_start = clock()
    if not selection.enabled:
        ref = train(cfg, store=store, paraphrases=paraphrases, policy_factory=policy_factory, on_log=on_log,
                    should_stop=should_stop, clock=clock)  # fmt: skip
        return _finish(cfg, ref, selection, None, [], "final", "selection disabled", t_start, clock)
    if cfg.keep_checkpoints:
        raise ValueError("keep_checkpoints cannot be combined with checkpoint selection (it would delete candidates)")
    plan = plan_selection(store, cfg.dataset, selection, only_successful=cfg.only_successful, snapshot=cfg.snapshot)
    train_cfg = dataclasses.replace(
        cfg,
        minutes=cfg.minutes * (1.0 - selection.reserve_fraction) if cfg.minutes is not None else None,
        checkpoint_fractions=tuple(sorted({*cfg.checkpoint_fractions, *selection.fractions})),
    )
    # Under torchrun rank 0 alone rolls out, selects and writes; train() keeps the other ranks waiting meanwhile.
    is_main = env_rank()[0] == 0
    own_scorer = None
    if scorer is None and plan.closed_loop and is_main:
        scorer = own_scorer = SimRolloutScorer(plan.seeds, workers=selection.workers, max_steps=selection.max_steps,
                                               should_stop=should_stop)  # fmt: skip
    reserve_s = cfg.minutes * 60.0 * selection.reserve_fraction if cfg.minutes is not None else None
    chooser = _Chooser(train_cfg, selection, plan, scorer, reserve_s=reserve_s, clock=clock)
    try:
        ref = train(
            train_cfg, store=store, paraphrases=paraphrases, policy_factory=policy_factory, on_log=on_log,
            should_stop=should_stop, clock=clock, on_checkpoint=chooser.on_checkpoint,
            select_final=chooser.select_final,
        )  # fmt: skip
    finally:
        if own_scorer is not None:
            own_scorer.close()
    if not is_main:
        return SelectedModel(path=cfg.out_dir, step=ref.step, checkpoint=None, rule="final", reason="not rank 0",
                             scores=(), training=ref, timings={})  # fmt: skip
    if ref.metrics["stopped_by"] == "cancelled":  # resuming the run selects once training is done
        rule, reason = "final", "cancelled before the selection (resume to finish it)"
    else:
        rule, reason = chooser.rule, chooser.reason
    return _finish(cfg, ref, selection, plan, chooser.records(), rule, reason, t_start, clock)


class _Chooser:
    """train()'s two callbacks: score each candidate checkpoint when it is written, pick the best at the end.

    The reserve: with a minutes budget, an intermediate candidate is rolled out only if the rollouts so far, this
    candidate's and the final one's (each estimated as the mean cost of the candidates measured so far) fit in
    `reserve_s`; otherwise it is recorded as skipped and not compared. The final checkpoint is always rolled out.
    On the reference machine every candidate fits; on one where rollouts are slow (a half-speed CPU, a policy that
    fails and so runs every rollout to max_steps) the budget holds instead of growing by every candidate's cost."""

    def __init__(self, cfg: TrainConfig, selection: SelectionConfig, plan: SelectionPlan, scorer: Scorer | None,
                 *, reserve_s: float | None = None, clock: Callable[[], float] = time.perf_counter):  # fmt: skip
        self.cfg, self.selection, self.plan, self.scorer = cfg, selection, plan, scorer
        self.reserve_s, self.clock = reserve_s, clock
        self.costs: list[float] = []  # seconds of each candidate's rollouts in this run
        self.scored: dict[str, dict] = {}
        self.rule = "closed_loop_success" if plan.closed_loop and scorer is not None else "val_loss"
        self.reason = None if self.rule == "closed_loop_success" else (plan.fallback_reason or "no scorer")

    def candidates(self, checkpoints: Sequence[Path]) -> list[Path]:
        """For each share f of the budget, the first checkpoint at or past it (the ones written for the shares)."""
        done = [(p, budget_fraction(self.cfg, *_step_and_elapsed(p))) for p in checkpoints]
        picked: list[Path] = []
        for f in self.selection.fractions:
            first = next((p for p, d in done if d >= f - 1e-9), None)
            if first is not None and first not in picked:
                picked.append(first)
        return picked

    def on_checkpoint(self, path: Path, step: int, elapsed_s: float) -> dict | None:
        if path not in self.candidates(list_checkpoints(self.cfg.out_dir)):
            return None  # a resume-safety checkpoint (checkpoint_every), not one of the compared shares
        return self._score(path, step, elapsed_s)

    def select_final(self, checkpoints: list[Path]) -> Path | None:
        candidates = self.candidates(checkpoints)
        self.scored.update(_recorded_scores(self.cfg.out_dir))  # a resumed run's earlier candidates
        for path in candidates:
            if path.name not in self.scored:  # written before a kill that came during its rollouts
                record = self._score(path, *_step_and_elapsed(path))
                if record is None:
                    return None  # stopped: the final weights stay at the top level
                record = {"step": _step_and_elapsed(path)[0], "checkpoint": path.name, **record}
                _append_record(self.cfg.out_dir, record)
                self.scored[path.name] = record
        ranked = [
            self.scored[p.name] for p in candidates if p.name in self.scored and not self.scored[p.name].get("skipped")
        ]
        if not ranked:
            return None
        if self.rule == "closed_loop_success":
            best = max(ranked, key=lambda r: (r["success"], -_loss_or_inf(r["val_loss"]), r["step"]))
        elif any(r["val_loss"] is not None for r in ranked):
            best = max(ranked, key=lambda r: (-_loss_or_inf(r["val_loss"]), r["step"]))
        else:
            self.rule, self.reason = "final", f"{self.reason}; and no validation episodes to compare losses on"
            return None
        return self.cfg.out_dir / CHECKPOINTS_DIR / best["checkpoint"]

    def records(self) -> list[dict]:
        merged = {**_recorded_scores(self.cfg.out_dir), **self.scored}
        return sorted(merged.values(), key=lambda r: r["step"])

    def _score(self, path: Path, step: int, elapsed_s: float) -> dict | None:
        meta = load_training_metadata(path)  # val_loss: of the checkpoint's model (the EMA); _raw: its raw weights'
        record: dict[str, Any] = {"elapsed_s": elapsed_s, "val_loss": meta.get("val_loss"),
                                  "val_loss_raw": meta.get("val_loss_raw"), "rule": self.rule}  # fmt: skip
        if self.rule != "closed_loop_success":
            self.scored[path.name] = {"step": step, "checkpoint": path.name, "success": None, **record}
            return {"success": None, **record}
        skip = self._over_reserve(step, elapsed_s)
        if skip is not None:
            record.update(success=None, skipped=skip)
            self.scored[path.name] = {"step": step, "checkpoint": path.name, **record}
            return record
        t0 = self.clock()
        score = self.scorer(path)
        self.costs.append(self.clock() - t0)
        if score is None:
            return None
        low, high = wilson_interval(score.successes, score.episodes)
        record.update(success=score.successes / score.episodes, successes=score.successes, episodes=score.episodes,
                      wilson_95=[low, high], per_group=score.per_group, rollout_s=score.wall_s)  # fmt: skip
        self.scored[path.name] = {"step": step, "checkpoint": path.name, **record}
        return record

    def _over_reserve(self, step: int, elapsed_s: float) -> str | None:
        """Why this candidate is not rolled out (the reserve cannot fit it), or None."""
        final = budget_fraction(self.cfg, step, elapsed_s) >= 1.0 - 1e-9
        if final or self.reserve_s is None or not self.costs:
            return None
        estimate = sum(self.costs) / len(self.costs)
        projected = sum(self.costs) + 2 * estimate  # this candidate and the final one still to come
        if projected <= self.reserve_s:
            return None
        return (f"the selection reserve ({self.reserve_s:.0f} s) cannot fit it: {sum(self.costs):.0f} s spent, "
                f"~{estimate:.0f} s per candidate, and the final checkpoint must be rolled out too")  # fmt: skip


def _finish(cfg, ref, selection, plan, records, rule, reason, t_start, clock) -> SelectedModel:
    """Record the choice in the top-level training_metadata.json and build the SelectedModel."""
    meta = load_training_metadata(cfg.out_dir)
    chosen = meta.get("selected_checkpoint")
    checkpoint = cfg.out_dir / CHECKPOINTS_DIR / chosen if chosen else None
    if checkpoint is None and rule != "final":
        rule, reason = "final", reason or "stopped before a checkpoint could be compared"
    step = next((r["step"] for r in records if r["checkpoint"] == chosen), ref.step)
    budget_s = cfg.minutes * 60.0 if cfg.minutes is not None else None
    total_s = clock() - t_start  # this call's: loading, training, rollouts, calibration
    timings = {
        "budget_s": budget_s,
        "training_s": ref.metrics["wall_time_s"],
        "selection_s": meta.get("callback_time_s"),
        "total_s": total_s,
        "over_budget_s": max(0.0, total_s - budget_s) if budget_s is not None else None,
    }
    meta["selected_step"] = step
    meta["selection"] = {
        "rule": rule,
        "reason": reason,
        "selected": {"step": step, "checkpoint": chosen},
        "candidates": records,
        "fractions": list(selection.fractions),
        "episodes_per_group": selection.episodes,
        "max_steps": selection.max_steps,
        "seeds": plan.seeds if plan is not None else {},
        "reserve_fraction": selection.reserve_fraction,
        "timings": timings,
    }
    save_training_metadata(cfg.out_dir, meta)
    return SelectedModel(path=cfg.out_dir, step=step, checkpoint=checkpoint, rule=rule, reason=reason,
                         scores=tuple(records), training=ref, timings=timings)  # fmt: skip


def _step_and_elapsed(checkpoint: Path) -> tuple[int, float]:
    meta = load_training_metadata(checkpoint)
    return int(meta["steps"]), float(meta["wall_time_s"])


def _loss_or_inf(value: float | None) -> float:
    return math.inf if value is None else float(value)


def _recorded_scores(out_dir: Path) -> dict[str, dict]:
    """Selection records already in metrics.jsonl, by checkpoint name (train() keeps those up to its resume step)."""
    path = Path(out_dir) / METRICS_FILE
    if not path.exists():
        return {}
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    root = Path(out_dir) / CHECKPOINTS_DIR
    return {r["checkpoint"]: r for r in rows if "checkpoint" in r and (root / r["checkpoint"]).is_dir()}


def _append_record(out_dir: Path, record: dict) -> None:
    with open(Path(out_dir) / METRICS_FILE, "a") as f:
        f.write(json.dumps(record, default=json_default) + "\n")
