"""train(cfg): the loss drops, checkpoints resume exactly, a seed reproduces a run, bad input fails clearly."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import FakeClock, open_store

from vla_core.train import TrainConfig, build_paraphrase_table, list_checkpoints, lr_factor, train

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_OVERRIDES = {
    "image_size": 32, "chunk_size": 4, "d_model": 32, "n_heads": 2, "n_layers": 1, "vision_channels": [8, 16],
    "intermediate_size": 64, "head_hidden": 32, "uncertainty_samples": 4, "n_text_layers": 1,
}  # fmt: skip


def tiny_policy_factory():
    """None: train() builds the registered policy from cfg.policy_overrides (TINY_OVERRIDES here)."""
    return None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Three freshly recorded scripted demos at 48 px (2 red, 1 green) in a throwaway store."""
    from backend.services.demos import record_demos
    from backend.sim import SimConfig, make_task

    data_dir = tmp_path_factory.mktemp("data")
    store = open_store(data_dir)
    sim = SimConfig(image_size=48)
    record_demos(store=store, dataset="tiny", task_name="pick", colour="red", episodes=2, seed=0, sim_config=sim)
    record_demos(store=store, dataset="tiny", task_name="pick", colour="green", episodes=1, seed=0, sim_config=sim)
    table = build_paraphrase_table(
        {
            (c, c): [t.format(colour=c) for t in make_task("pick", c).instruction_templates]
            for c in ("red", "green", "blue")
        }
    )
    return store, table, data_dir


def config(out_dir, **kw) -> TrainConfig:
    base = dict(
        dataset="tiny", out_dir=out_dir, policy_overrides=dict(TINY_OVERRIDES), steps=12, batch_size=8, lr=3e-3,
        warmup_steps=2, val_fraction=0.34, val_every=6, val_frames=32, checkpoint_every=6, log_every=2,
        progress=False, num_threads=1, calibration_frames=32, device="cpu",  # exact-equality tests: not on a GPU
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def read_metrics(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def test_tiny_training_loss_drops_and_saves_everything(tiny, tmp_path):
    store, table, _ = tiny
    ref = train(config(tmp_path / "m", steps=80, checkpoint_every=40, val_every=40), store=store,
                paraphrases=table, policy_factory=tiny_policy_factory())  # fmt: skip
    rows = read_metrics(ref.path)
    assert [r["step"] for r in rows][:4] == [1, 2, 4, 6] and rows[-1]["step"] == 80  # step 1: the first point
    first, last = rows[0]["loss"], sum(r["loss"] for r in rows[-3:]) / 3
    assert last < 0.8 * first, (first, last)
    for key in ("step", "loss", "val_loss", "lr", "samples_per_s"):
        assert key in rows[0]
    assert any(r["val_loss"] is not None for r in rows)
    assert all(math.isfinite(r["lr"]) and r["lr"] > 0 for r in rows)
    assert [p.name for p in list_checkpoints(ref.path)] == ["step_000040", "step_000080"]
    assert (ref.path / "config.json").is_file()
    meta = json.loads((ref.path / "training_metadata.json").read_text())
    assert meta["dataset"] == "tiny" and meta["steps"] == 80 and meta["stopped_by"] == "steps"
    assert len(meta["episodes"]["train"]) == 2 and len(meta["episodes"]["val"]) == 1
    assert meta["wall_time_s"] > 0 and math.isfinite(meta["final_loss"]) and math.isfinite(meta["final_val_loss"])
    unc = meta["uncertainty"]
    assert unc["split"] == "val" and unc["threshold"] >= 0 and 0 <= unc["share_above"] <= 0.2
    assert ref.metrics["uncertainty_threshold"] == unc["threshold"]
    assert json.loads((ref.path / "config.json").read_text())["uncertainty_threshold"] == pytest.approx(
        unc["threshold"]
    )


def _weights(out_dir: Path) -> dict:
    state = torch.load(list_checkpoints(out_dir)[-1] / "training_state.pt", weights_only=False)
    return state["model"]


def test_resume_continues_from_a_checkpoint_exactly(tiny, tmp_path):
    store, table, _ = tiny
    factory = tiny_policy_factory()
    full = train(config(tmp_path / "full"), store=store, paraphrases=table, policy_factory=factory)
    # A run "killed" after step 6: only its first checkpoint and the metrics up to then exist.
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    shutil.copytree(full.path / "checkpoints" / "step_000006", part / "checkpoints" / "step_000006")
    (part / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in read_metrics(full.path) if r["step"] <= 6)
        + json.dumps({"step": 8, "loss": 123.0})
        + "\n"  # logged after the checkpoint, before the kill
    )
    resumed = train(config(part), store=store, paraphrases=table, policy_factory=factory)
    assert resumed.step == 12
    a, b = _weights(full.path), _weights(part)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in read_metrics(part)] == [r["loss"] for r in read_metrics(full.path)]
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train(config(part, resume=False), store=store, paraphrases=table, policy_factory=factory)


def test_same_seed_same_run_other_seed_other_run(tiny, tmp_path):
    store, table, _ = tiny
    factory = tiny_policy_factory()
    runs = [
        train(config(tmp_path / name, steps=6, seed=seed), store=store, paraphrases=table, policy_factory=factory)
        for name, seed in (("a", 3), ("b", 3), ("c", 4))
    ]
    la, lb, lc = ([r["loss"] for r in read_metrics(run.path)] for run in runs)
    assert la == lb and la != lc
    wa, wb = _weights(runs[0].path), _weights(runs[1].path)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_minutes_budget_stops_cleanly_and_saves(tiny, tmp_path):
    store, table, _ = tiny
    clock = FakeClock(start=0.0)

    def each_step_takes_an_eighth_of_a_second() -> bool:  # train() polls should_stop once per step
        clock.advance(0.125)
        return False

    ref = train(config(tmp_path / "t", steps=None, minutes=0.04, checkpoint_every=0), store=store,
                paraphrases=table, policy_factory=tiny_policy_factory(),
                should_stop=each_step_takes_an_eighth_of_a_second, clock=clock)  # fmt: skip
    assert ref.metrics["stopped_by"] == "minutes" and ref.step > 0
    assert 2.3 <= ref.metrics["wall_time_s"] < 10
    assert ref.step == 20 and ref.metrics["wall_time_s"] == 2.5  # 2.4 s: the step that crosses it is the last
    assert list_checkpoints(ref.path)[-1].name == f"step_{ref.step:06d}"
    assert (ref.path / "training_metadata.json").is_file()


def test_schedule_warms_up_then_decays():
    assert lr_factor(0, 0.0, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 0.0, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 0.5, 10, 0.1) == pytest.approx(0.55)
    assert lr_factor(99, 1.0, 10, 0.1) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"minutes": 0}, "minutes must be a positive number"),
        ({"minutes": -2.0}, "minutes must be a positive number"),
        ({"minutes": float("nan")}, "minutes must be a positive number"),
        ({"steps": 0}, "steps must be a positive integer"),
        ({"val_fraction": 1.0}, "val_fraction"),
    ],
)
def test_bad_config_values(tmp_path, kw, message):
    with pytest.raises(ValueError, match=message):
        config(tmp_path, **kw)


def test_unknown_and_empty_datasets(tiny, tmp_path):
    store, _, _ = tiny
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*tiny"):
        train(config(tmp_path / "x", dataset="nope"), store=store, policy_factory=tiny_policy_factory())
    store.ensure_dataset("empty")
    with pytest.raises(ValueError, match="'empty' has no episodes"):
        train(config(tmp_path / "y", dataset="empty"), store=store, policy_factory=tiny_policy_factory())
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()  # nothing written on bad input


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VLA_DATA_DIR": str(data_dir), "MUJOCO_GL": "egl"}
    env.pop("VLA_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "run.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "nope", "--steps", "2"], "unknown dataset 'nope'"),
        pytest.param(["--dataset", "empty", "--steps", "2"], "'empty' has no episodes", marks=pytest.mark.slow),
        (["--dataset", "tiny", "--minutes", "abc"], "--minutes: must be a positive number"),
        (["--dataset", "tiny", "--minutes", "-1"], "--minutes: must be a positive number"),
        (["--dataset", "tiny", "--minutes", "1", "--steps", "3"], "not allowed with argument"),
    ],
)
def test_train_cli_bad_input(tiny, tmp_path, args, message):
    store, _, data_dir = tiny
    store.ensure_dataset("empty")
    result = _cli(data_dir, "train", *args, "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
