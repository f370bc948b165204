"""train_and_select: the scorer's best checkpoint becomes the top-level model, resumes are exact (EMA included),
non-sim data falls back to validation loss, rollout time is not training time, and the metadata records it all."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import FakeClock, open_store, record_episode
from safetensors.torch import load_file

from backend.rollouts import RolloutScore, SimRolloutScorer
from backend.training import SelectionConfig, plan_selection, train_and_select
from vla_core.metrics import wilson_interval
from vla_core.train import TrainConfig, build_paraphrase_table, list_checkpoints

TINY_OVERRIDES = {
    "image_size": 32, "chunk_size": 4, "d_model": 32, "n_heads": 2, "n_layers": 1, "vision_channels": [8, 16],
    "intermediate_size": 64, "head_hidden": 32, "uncertainty_samples": 4, "n_text_layers": 1,
}  # fmt: skip


@pytest.fixture(scope="module")
def sim_data(tmp_path_factory):
    """Three scripted pick demos at 48 px (2 red from seed 0, 1 green from seed 0), as tests/vla_core/test_train.py."""
    from backend.services.demos import record_demos
    from backend.sim import SimConfig, make_task

    store = open_store(tmp_path_factory.mktemp("data"))
    sim = SimConfig(image_size=48)
    record_demos(store=store, dataset="tiny", task_name="pick", colour="red", episodes=2, seed=0, sim_config=sim)
    record_demos(store=store, dataset="tiny", task_name="pick", colour="green", episodes=1, seed=0, sim_config=sim)
    table = build_paraphrase_table(
        {(c, c): [t.format(colour=c) for t in make_task("pick", c).instruction_templates] for c in ("red", "green")}
    )
    return store, table


def config(out_dir: Path, **kw) -> TrainConfig:
    base = dict(
        dataset="tiny", out_dir=out_dir, policy_overrides=dict(TINY_OVERRIDES), steps=20, batch_size=8, lr=3e-3,
        warmup_steps=2, val_fraction=0.34, val_every=5, val_frames=32, checkpoint_every=0, log_every=5,
        progress=False, num_threads=1, calibration_frames=32, ema_decay=0.9,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


class FakeScorer:
    """Scores a checkpoint by its step from a table (successes out of 10), and remembers what it was asked."""

    def __init__(self, by_step: dict[int, int], clock: FakeClock | None = None, seconds: float = 0.0):
        self.by_step, self.clock, self.seconds = by_step, clock, seconds
        self.calls: list[int] = []

    def __call__(self, model_dir: Path) -> RolloutScore:
        step = int(model_dir.name[5:])
        self.calls.append(step)
        if self.clock is not None:
            self.clock.advance(self.seconds)  # rollouts take time; training must not be charged for it
        k = self.by_step.get(step, 0)
        return RolloutScore(successes=k, episodes=10, per_group={"pick/red": [k, 10]}, mean_steps=50.0, wall_s=1.0)


def selection(**kw) -> SelectionConfig:
    return SelectionConfig(**{"episodes": 3, "workers": 0, "max_steps": 3, **kw})


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_the_scorers_best_checkpoint_lands_at_the_top_level(sim_data, tmp_path):
    store, table = sim_data
    scorer = FakeScorer({8: 3, 12: 9, 16: 5, 20: 5})
    # checkpoint_every=5 adds resume-safety checkpoints (5, 10, 15, 20): they are not candidates, nor scored.
    result = train_and_select(config(tmp_path / "m", checkpoint_every=5), store=store, paraphrases=table,
                              selection=selection(), scorer=scorer)  # fmt: skip
    assert scorer.calls == [8, 12, 16, 20]
    assert [p.name[5:] for p in list_checkpoints(result.path)] == ["000005", "000008", "000010", "000012", "000015",
                                                                    "000016", "000020"]  # fmt: skip
    expected = 12
    assert result.rule == "closed_loop_success" and result.reason is None
    assert result.step == expected and result.checkpoint.name == f"step_{expected:06d}"
    top, chosen = weights(result.path), weights(result.checkpoint)
    assert top.keys() == chosen.keys() and all(torch.equal(top[k], chosen[k]) for k in top)
    final = weights(result.path / "checkpoints/step_000020")
    assert any(not torch.equal(top[k], final[k]) for k in top)
    # Calibrated on the selected weights, there: config and metadata agree.
    meta = json.loads((result.path / "training_metadata.json").read_text())
    threshold = json.loads((result.path / "config.json").read_text())["uncertainty_threshold"]
    assert threshold == pytest.approx(meta["uncertainty"]["threshold"]) and threshold > 0
    sel = meta["selection"]
    assert meta["selected_step"] == expected and sel["selected"] == {"step": expected,
                                                                     "checkpoint": f"step_{expected:06d}"}  # fmt: skip
    assert [c["step"] for c in sel["candidates"]] == [8, 12, 16, 20]
    for c in sel["candidates"]:
        k = scorer.by_step[c["step"]]
        assert c["successes"] == k and c["episodes"] == 10 and c["success"] == k / 10
        assert c["wilson_95"] == list(wilson_interval(k, 10))
        assert c["val_loss"] != c["val_loss_raw"]  # the model compared is the EMA, not the raw weights
    assert sel["seeds"] == {"pick/green": [201000, 201001, 201002], "pick/red": [200000, 200001, 200002]}
    rows = [json.loads(line) for line in (result.path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "checkpoint" in r] == [8, 12, 16, 20]


def test_ema_resume_is_exact_and_earlier_scores_are_kept(sim_data, tmp_path):
    store, table = sim_data
    by_step = {8: 2, 12: 7, 16: 7, 20: 6}  # 12 and 16 tie on success: the lower validation loss wins
    full_scorer = FakeScorer(by_step)
    full = train_and_select(config(tmp_path / "full"), store=store, paraphrases=table, selection=selection(),
                            scorer=full_scorer)  # fmt: skip

    polls = iter(range(100))
    part_scorer = FakeScorer(by_step)
    stopped = train_and_select(config(tmp_path / "part"), store=store, paraphrases=table, selection=selection(),
                               scorer=part_scorer, should_stop=lambda: next(polls) >= 10)  # fmt: skip
    assert stopped.training.step == 10 and stopped.rule == "final" and "cancelled" in stopped.reason
    resumed = train_and_select(config(tmp_path / "part"), store=store, paraphrases=table, selection=selection(),
                               scorer=part_scorer)  # fmt: skip
    assert part_scorer.calls == [8, 12, 16, 20]  # step 8 was scored before the stop and not again
    val = {c["step"]: c["val_loss"] for c in full.scores}
    assert val[12] != val[16]
    assert resumed.step == full.step == min((12, 16), key=lambda s: val[s])

    def state(run) -> dict:
        return torch.load(run.path / "checkpoints/step_000020/training_state.pt", weights_only=False)

    a, b = state(full), state(resumed)
    assert a["ema"]["updates"] == b["ema"]["updates"] == 20
    for key in ("model",):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    assert all(torch.equal(a["ema"]["module"][k], b["ema"]["module"][k]) for k in a["ema"]["module"])
    # The EMA is not the raw weights (so the equality above is about the average, too).
    assert any(not torch.equal(a["model"][k], a["ema"]["module"][k]) for k in a["model"])
    wa, wb = weights(full.path), weights(resumed.path)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_without_a_sim_task_selection_falls_back_to_validation_loss(tmp_path):
    store = open_store(tmp_path / "data")
    for i in range(3):  # a real robot's take: a task and joints the sim does not know
        record_episode(store, n=30, dataset="towels", task="fold", instruction="fold the towel", seed=i)

    def no_rollouts(model_dir: Path):
        raise AssertionError("non-sim data must not be rolled out")

    result = train_and_select(
        config(tmp_path / "m", dataset="towels", policy_overrides={**TINY_OVERRIDES, "state_dim": 4, "action_dim": 4,
                                                                    "relative_action_dims": 0}),
        store=store, selection=selection(), scorer=no_rollouts,
    )  # fmt: skip
    assert result.rule == "val_loss" and "'fold' is not a sim task" in result.reason
    meta = json.loads((result.path / "training_metadata.json").read_text())
    cands = meta["selection"]["candidates"]
    assert [c["step"] for c in cands] == [8, 12, 16, 20] and all(c["success"] is None for c in cands)
    best = min(cands, key=lambda c: (c["val_loss"], -c["step"]))
    assert result.step == best["step"] and meta["selection"]["reason"] == result.reason
    assert meta["selection"]["seeds"] == {}


def test_rollout_time_is_not_training_time(sim_data, tmp_path):
    """A minutes budget: the training loop gets (1 - reserve) of it whatever the rollouts cost; they are reported."""
    store, table = sim_data
    steps = []
    for seconds, name in ((0.0, "fast"), (100.0, "slow")):
        clock = FakeClock(start=0.0)

        def each_step_takes_an_eighth_of_a_second(clock=clock) -> bool:
            clock.advance(0.125)
            return False

        result = train_and_select(
            config(tmp_path / name, steps=None, minutes=0.05), store=store, paraphrases=table,
            selection=selection(reserve_fraction=0.2), scorer=FakeScorer({}, clock, seconds), clock=clock,
            should_stop=each_step_takes_an_eighth_of_a_second,
        )  # fmt: skip
        steps.append(result.training.step)
        t = result.timings
        assert t["budget_s"] == pytest.approx(3.0) and 2.4 <= t["training_s"] < 2.6  # 80% of 3 s trains
        # Fast: all four candidates fit the 0.6 s reserve. Slow: the first one overran it, so the two in between
        # are skipped and the final one is still rolled out.
        rolled = 4 if seconds == 0 else 2
        assert t["selection_s"] == pytest.approx(rolled * seconds)
        assert t["total_s"] == pytest.approx(t["training_s"] + rolled * seconds, abs=0.2)
        assert (t["over_budget_s"] > 0) == (seconds > 0)
        skipped = [c["step"] for c in result.scores if c.get("skipped")]
        assert skipped == ([] if seconds == 0 else [12, 16]), result.scores
    assert steps[0] == steps[1] == 20


def test_candidates_the_reserve_cannot_fit_are_skipped_and_never_chosen(sim_data, tmp_path):
    """A 6 s budget (1.2 s reserve), 1/8 s per step, 0.5 s per candidate's rollouts: after the first candidate
    (0.5 s spent), one more plus the final would need 1.5 s, so the two in between are skipped and the final is
    rolled out whatever; the first, better than the final, is chosen."""
    store, table = sim_data
    clock = FakeClock(start=0.0)

    def step_takes_an_eighth_of_a_second() -> bool:
        clock.advance(0.125)
        return False

    class ByCall(FakeScorer):  # the first candidate rolled out succeeds 9/10, the next 2/10
        def __call__(self, model_dir):
            score = super().__call__(model_dir)
            k = [9, 2][len(self.calls) - 1]
            return dataclasses.replace(score, successes=k, per_group={"pick/red": [k, 10]})

    scorer = ByCall({}, clock, seconds=0.5)
    result = train_and_select(
        config(tmp_path / "m", steps=None, minutes=0.1), store=store, paraphrases=table, scorer=scorer,
        selection=selection(reserve_fraction=0.2), clock=clock, should_stop=step_takes_an_eighth_of_a_second,
    )  # fmt: skip
    steps = [c["step"] for c in result.scores]
    assert len(steps) == 4 and scorer.calls == [steps[0], steps[-1]]  # the first and the final candidate
    for skipped in result.scores[1:3]:
        assert skipped["success"] is None and skipped["skipped"].startswith("the selection reserve (1 s) cannot")
    assert result.rule == "closed_loop_success" and result.step == steps[0]  # 9/10 beats the final's 2/10
    assert result.timings["selection_s"] == pytest.approx(1.0)


def test_validation_seeds_skip_the_training_scenes(sim_data):
    store, _ = sim_data
    plan = plan_selection(store, "tiny", SelectionConfig(episodes=3, seed_bases={"red": 0, "green": 0}))
    assert plan.closed_loop
    assert plan.seeds == {"pick/green": [1, 2, 3], "pick/red": [2, 3, 4]}  # demos: red seeds 0, 1; green 0


@pytest.mark.parametrize("workers", [0, pytest.param(1, marks=pytest.mark.slow)])  # 1: a spawned pool, ~10 s
def test_sim_scorer_rolls_a_checkpoint_out(sim_data, tmp_path, workers):
    store, table = sim_data
    ref = train_and_select(config(tmp_path / "m", steps=4), store=store, paraphrases=table,
                           selection=SelectionConfig(enabled=False))  # fmt: skip
    scorer = SimRolloutScorer({"pick/red": [200000, 200001], "pick/green": [201000]}, workers=workers, max_steps=3)
    try:
        score = scorer(ref.path)
    finally:
        scorer.close()
    assert score.episodes == 3 and score.per_group["pick/red"][1] == 2 and score.per_group["pick/green"][1] == 1
    assert score.successes == 0 and score.mean_steps == 3  # 3 steps cannot pick a cube
    assert ref.rule == "final" and ref.reason == "selection disabled"


def test_bad_selection_config():
    with pytest.raises(ValueError, match="end with 1.0"):
        SelectionConfig(fractions=(0.5, 0.8))
    with pytest.raises(ValueError, match="episodes must be at least 1"):
        SelectionConfig(episodes=0)
    with pytest.raises(ValueError, match="ema_decay"):
        config(Path("x"), ema_decay=1.0)


REPO_ROOT = Path(__file__).resolve().parents[2]
CLI_TINY = ["--set", "image_size=32", "--set", "d_model=32", "--set", "n_heads=2", "--set", "n_layers=1",
            "--set", "vision_channels=[8,16]", "--set", "intermediate_size=64", "--set", "head_hidden=32",
            "--set", "n_text_layers=1", "--threads", "1", "--batch-size", "8"]  # fmt: skip


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VLA_DATA_DIR": str(data_dir), "MUJOCO_GL": "egl"}
    env.pop("VLA_DATABASE_URL", None)
    return subprocess.run([sys.executable, "run.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def test_train_cli_rejects_a_bad_selection_size(sim_data, tmp_path):
    store, _ = sim_data
    result = _cli(store.data_dir, "train", "--dataset", "tiny", "--out", str(tmp_path / "m"), "--select-episodes", "0")
    assert result.returncode == 2 and "--select-episodes: must be a positive integer" in result.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_train_cli_selects_on_validation_rollouts(sim_data, tmp_path):
    """run.py train end to end: real sim rollouts in worker processes, the choice printed and recorded."""
    store, _ = sim_data
    out = tmp_path / "m"
    result = _cli(store.data_dir, "train", "--dataset", "tiny", "--out", str(out), "--steps", "12",
                  "--select-episodes", "1", *CLI_TINY)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    meta = json.loads((out / "training_metadata.json").read_text())
    sel = meta["selection"]
    assert sel["rule"] == "closed_loop_success" and [c["step"] for c in sel["candidates"]] == [5, 8, 10, 12]
    assert all(c["episodes"] == 2 for c in sel["candidates"])  # one per colour: pick/red, pick/green
    assert f"model: step {meta['selected_step']} by closed_loop_success" in result.stdout
    assert sel["timings"]["selection_s"] > 0 and sel["timings"]["total_s"] > sel["timings"]["training_s"]
