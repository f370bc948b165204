"""DDP: a real 2-process gloo run of `run.py train --nproc-per-node 2` (torchrun under it) on test_train's tiny
recorded dataset, and the helpers of vla_core.distributed that decide what each rank does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import TINY_OVERRIDES, config, tiny  # noqa: F401  (tiny: test_train's recorded-dataset fixture)

from storage.features import OBS_STATE, image_key
from vla_core import distributed as vdist

REPO_ROOT = Path(__file__).resolve().parents[2]


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VLA_DATA_DIR": str(data_dir), "MUJOCO_GL": "egl"}
    for name in ("VLA_DATABASE_URL", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "run.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def _train_two_ranks(data_dir: Path, out: Path) -> subprocess.CompletedProcess:
    overrides = [f"--set={k}={json.dumps(v)}" for k, v in TINY_OVERRIDES.items()]
    result = _cli(
        data_dir, "train", "--dataset", "tiny", "--out", str(out), "--steps", "30", "--batch-size", "16",
        "--lr", "1e-2", "--threads", "1", "--log-every", "3", "--checkpoint-every", "15", "--device", "cpu",
        "--nproc-per-node", "2", "--no-select", *overrides,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _raw_weights(checkpoint: Path) -> dict:
    return torch.load(checkpoint / "training_state.pt", weights_only=False)["model"]


@pytest.mark.slow
def test_two_gloo_ranks_train_one_model_that_loads_and_resume_exactly(tiny, tmp_path):  # noqa: F811
    _, _, data_dir = tiny
    out = tmp_path / "ddp"
    result = _train_two_ranks(data_dir, out)
    assert result.stdout.count("trained 30 steps") == 1  # rank 0 reports; rank 1 says nothing

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, *range(3, 31, 3)]  # one writer: no step twice
    first, last = rows[0]["loss"], sum(r["loss"] for r in rows[-3:]) / 3  # both ranks' batches, averaged
    assert last < 0.8 * first, (first, last)

    # Exactly one final model, with the run's shape recorded, and checkpoints renamed into place whole.
    models = [p for p in out.rglob("model.safetensors") if "checkpoints" not in p.relative_to(out).parts]
    assert models == [out / "model.safetensors"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_000015", "step_000030"]
    meta = json.loads((out / "training_metadata.json").read_text())
    assert meta["world_size"] == 2 and meta["steps"] == 30 and meta["device"] == "cpu"

    # Each rank drew from its own stream, and the checkpoint keeps both for an exact resume.
    state = torch.load(out / "checkpoints" / "step_000030" / "training_state.pt", weights_only=False)
    ranks = state["rng"]["ranks"]
    assert len(ranks) == 2 and ranks[0]["data"] != ranks[1]["data"] and ranks[0]["data"] == state["rng"]["data"]

    # The frame cache under the data dir: every (episode, camera) decoded once, by one rank or the other.
    from vla_core.policies import load_policy

    policy = load_policy(out)
    cams = policy.config.cameras
    assert len(list((data_dir / "cache" / "frames").glob("*_32px_*.npy"))) == 3 * len(cams)
    obs = {image_key(c): torch.zeros(1, 3, 32, 32, dtype=torch.uint8) for c in cams}
    obs[OBS_STATE] = torch.zeros(1, policy.config.state_dim)
    chunk = policy.predict_chunk(obs, ["pick up the red cube"])
    assert torch.isfinite(torch.as_tensor(chunk.actions)).all()

    # Killed after step 15: both ranks resume their own streams from it and end with the same weights.
    part = tmp_path / "part"
    shutil.copytree(out / "checkpoints" / "step_000015", part / "checkpoints" / "step_000015")
    _train_two_ranks(data_dir, part)
    a, b = _raw_weights(out / "checkpoints" / "step_000030"), _raw_weights(part / "checkpoints" / "step_000030")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # ~15 s with its fixture
def test_a_bad_dataset_fails_once_before_any_rank_starts(tiny, tmp_path):  # noqa: F811
    _, _, data_dir = tiny
    result = _cli(data_dir, "train", "--dataset", "nope", "--out", str(tmp_path / "o"), "--nproc-per-node", "2")
    assert result.returncode == 2 and "unknown dataset 'nope'" in result.stderr
    assert "torch.distributed" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_shards_are_disjoint_cover_everything_and_seeds_differ_by_rank():
    parts = [vdist.shard(10, r, 3) for r in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(10))
    assert all(set(a).isdisjoint(b) for i, a in enumerate(parts) for b in parts[i + 1 :])
    assert vdist.shard(7, 0, 1).tolist() == list(range(7))  # one process: every window, as before DDP
    assert vdist.rank_seed(5, 0) == 5  # rank 0 keeps the run's seed
    assert len({vdist.rank_seed(5, r) for r in range(4)}) == 4 and vdist.rank_seed(5, 1) == vdist.rank_seed(5, 1)


def test_device_choice_and_the_single_process_context(tmp_path, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    ctx = vdist.setup("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    module = torch.nn.Linear(2, 2)
    assert ctx.wrap(module) is module and ctx.mean(3.0) == 3.0 and ctx.from_main([1.5, 2.0]) == [1.5, 2.0]
    assert ctx.gather({"a": 1}) == [{"a": 1}]
    assert vdist.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be one of auto, cpu, cuda"):
        vdist.resolve_device("tpu")
    with pytest.raises(ValueError, match="device must be one of"):
        config(tmp_path, device="gpu")
    if not torch.cuda.is_available():
        assert vdist.resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="sees no CUDA device"):
            vdist.resolve_device("cuda")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "3")
    assert vdist.env_rank() == (3, 4, 0, 2)
    assert vdist.default_threads(2) == max(1, (os.cpu_count() or 1) // 2)
    cmd = vdist.torchrun_command(2, ["run.py", "train"])
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"] and "--nproc-per-node=2" in cmd
    assert cmd[-2:] == ["run.py", "train"]
