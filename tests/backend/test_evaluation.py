"""Closed-loop evaluation: cube projection, grounding hits, rollouts with a scripted 'policy', the eval CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from backend.services.evaluation import EvalConfig, attention_peak_hit, evaluate_policy
from backend.sim import SimConfig, SimRobot, make_expert, make_task
from backend.sim.projection import cube_bbox
from storage.video import read_video

REPO_ROOT = Path(__file__).resolve().parents[2]


def colour_mask(img: np.ndarray, channel: int) -> np.ndarray:
    x = img.astype(int)
    others = [c for c in range(3) if c != channel]
    return (x[..., channel] > 1.6 * x[..., others[0]] + 20) & (x[..., channel] > 1.6 * x[..., others[1]] + 20)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cube_bbox_encloses_the_rendered_cube(camera_robot, seed):
    obs = camera_robot.reset(seed, make_task("pick", "green"))
    for colour, channel in (("green", 1), ("blue", 2)):
        ys, xs = np.nonzero(colour_mask(obs.images["front"], channel))
        x0, y0, x1, y1 = cube_bbox(camera_robot, colour, "front")
        assert len(xs) > 5
        # The projected box of the 8 corners contains every pixel of the cube, and is not much larger.
        assert x0 - 1 <= xs.min() and xs.max() + 1 <= x1 + 1 and y0 - 1 <= ys.min() and ys.max() + 1 <= y1 + 1
        assert (x1 - x0) <= (xs.max() - xs.min() + 1) + 3 and (y1 - y0) <= (ys.max() - ys.min() + 1) + 3


def test_attention_peak_hit_uses_the_peak_cell():
    heat = np.zeros((4, 4))
    heat[1, 2] = 1.0  # cell x in [32, 48), y in [16, 32) of a 64 px image
    assert attention_peak_hit(heat, (40, 20, 44, 24), (64, 64))
    assert attention_peak_hit(heat, (46, 30, 52, 36), (64, 64))  # overlaps a corner of the cell
    assert not attention_peak_hit(heat, (0, 0, 10, 10), (64, 64))


class ExpertPolicy:
    """A 'policy' that replays the scripted expert on the robot and attends exactly to the instructed cube:
    the evaluation loop must then report every episode a success and every grounding frame a hit."""

    def __init__(self, robot: SimRobot, colour: str):
        self.robot = robot
        self.expert = make_expert(make_task("pick", colour))
        self.colour = colour
        self.config = SimpleNamespace(cameras=("front", "wrist"), image_size=48, uncertainty_threshold=0.5)
        self.last_output = None

    def reset(self) -> None:
        self.expert.reset(self.robot)

    def select_action(self, obs, instruction):
        assert obs["observation.images.front"].shape == (48, 48, 3) and obs["observation.state"].shape == (7,)
        assert instruction == f"pick up the {self.colour} cube"
        heat = np.zeros((6, 6), np.float32)
        bbox = cube_bbox(self.robot, self.colour)
        if bbox is not None:
            cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
            heat[int(cy // 8), int(cx // 8)] = 1.0
        # Keypoint maps that always point at the far corner: graded by the same test, so 0 hits.
        corner = np.zeros((12, 12), np.float32)
        corner[0, 0] = 1.0 if bbox is None or bbox[0] > 4 or bbox[1] > 4 else 0.0
        self.last_output = SimpleNamespace(
            uncertainty=np.array([0.1]), attention={"front": heat[None]}, keypoint_attention={"front": corner[None]}
        )
        return self.expert.act(self.robot)


def test_rollouts_with_the_expert_succeed_and_ground(tmp_path):
    robot = SimRobot(SimConfig(image_size=48))
    try:
        policy = ExpertPolicy(robot, "blue")
        cfg = EvalConfig(task="pick", colour="blue", episodes=2, seed_base=100_000, video_dir=tmp_path / "videos")
        report = evaluate_policy(policy, cfg, robot=robot)
    finally:
        robot.close()
    assert report["successes"] == 2 and report["success_rate"] == 1.0
    low, high = report["wilson_95"]
    assert 0.3 < low < 1.0 and high == 1.0
    assert report["grounding_rate"] == 1.0 and report["grounding_frames"] > 50
    assert report["grounding_rate_keypoint_attention"] == 0.0  # graded on its own map, not the headline one
    assert "grounding_rate_attention_rollout" not in report  # a map the policy does not give is not reported
    assert report["share_predictions_above_threshold"] == 0.0
    assert report["wrong_object_rate"] == 0.0 and report["per_episode"][0]["touched"] == ["blue"]
    mass = report["attention_mass"]  # one cell holding the cube's centre: part of it is the cube, none the others
    assert set(mass) == {"instructed", "other_cubes", "gripper", "bowl", "outside"}
    assert 0.05 < mass["instructed"] <= 1.0 and mass["other_cubes"] < mass["instructed"]
    assert sum(v for k, v in mass.items() if k not in ("gripper", "bowl")) <= 1.0 + 1e-9
    ep = report["per_episode"][0]
    assert ep["seed"] == 100_000 and ep["colour"] == "blue" and ep["success"] and 20 < ep["steps"] < 300
    assert ep["mean_uncertainty"] == pytest.approx(0.1) and ep["max_uncertainty"] == pytest.approx(0.1)
    json.dumps(report, allow_nan=False)  # strict JSON
    frames = read_video(Path(ep["video"]))
    assert frames.shape[0] >= ep["steps"] and frames.shape[2] == 2 * 48 * 2  # front | wrist, upscaled x2


class WrongCubeExpert(ExpertPolicy):
    """Told one colour, picks another (records how much of each cube it saw, to check the masking)."""

    def __init__(self, robot: SimRobot, colour: str, picks: str):
        super().__init__(robot, colour)
        self.expert = make_expert(make_task("pick", picks))
        self.visible: dict[str, list[int]] = {c: [] for c in ("red", "green", "blue")}

    def select_action(self, obs, instruction):
        img = obs["observation.images.front"]
        for channel, c in enumerate(("red", "green", "blue")):
            self.visible[c].append(int(colour_mask(img, channel).sum()))
        return super().select_action(obs, instruction)


def test_wrong_object_and_cube_masking_are_measured():
    """A rollout told "blue" that lifts the red cube is a wrong-object rollout; mask_cube greys out the instructed
    cube (or another one) in every frame the policy sees, and nothing else."""
    robot = SimRobot(SimConfig(image_size=48))
    try:
        reports, seen = {}, {}
        for mask in (None, "instructed", "other"):
            policy = WrongCubeExpert(robot, "blue", picks="red")
            cfg = EvalConfig(task="pick", colour="blue", episodes=1, seed_base=100_000, max_steps=120, mask_cube=mask)
            reports[mask] = evaluate_policy(policy, cfg, robot=robot)
            seen[mask] = {c: int(np.median(v)) for c, v in policy.visible.items()}
    finally:
        robot.close()
    assert reports[None]["wrong_object_rate"] == 1.0 and reports[None]["success_rate"] == 0.0
    assert "red" in reports[None]["per_episode"][0]["touched"]
    assert reports["instructed"]["mask_cube"] == "instructed"
    assert seen[None]["blue"] > 0 and seen["instructed"]["blue"] == 0  # the instructed cube is gone
    # The others are not (the red count includes reddish parts of the scene besides the cube).
    assert seen["instructed"]["red"] == seen[None]["red"] and seen["instructed"]["green"] == seen[None]["green"]
    # "other": the next colour (blue -> red) loses its cube's pixels; blue and green are untouched.
    assert seen["other"]["red"] <= seen[None]["red"] - 5
    assert seen["other"]["blue"] == seen[None]["blue"] and seen["other"]["green"] == seen[None]["green"]
    with pytest.raises(ValueError, match="mask_cube"):
        EvalConfig(mask_cube="all").validate()


class JitteryExpert(ExpertPolicy):
    """The expert taking seeded random fractions (50-90%) of each of its joint steps: a good policy, not a perfect
    one, that stays within the speed limit the expert itself moves close to. Records each state it saw."""

    def reset(self) -> None:
        super().reset()
        self.rng, self.seen = np.random.default_rng(0), []

    def select_action(self, obs, instruction):
        state = np.array(obs["observation.state"], dtype=np.float32)
        self.seen.append(state)
        action = np.array(super().select_action(obs, instruction), dtype=np.float32)
        action[:6] = state[:6] + (action[:6] - state[:6]) * np.float32(self.rng.uniform(0.5, 0.9))
        return action


def plain_loop(policy, robot, *, colour: str, seed: int, max_steps: int) -> tuple[bool, int]:
    """The evaluation loop before evaluation ran on the session (observe, select_action, apply), the reference."""
    task = make_task("pick", colour)
    obs = robot.reset(seed=seed, task=task)
    instruction = task.instruction(None)
    policy.reset()
    for steps in range(1, max_steps + 1):
        batch = {f"observation.images.{c}": obs.images[c] for c in policy.config.cameras}
        action = policy.select_action({**batch, "observation.state": np.asarray(obs.state, np.float32)}, instruction)
        robot.apply(np.asarray(action, dtype=np.float32).reshape(-1))
        if robot.success():
            return True, steps
        obs = robot.observe()
    return False, max_steps


def test_the_session_rollout_replays_the_plain_loop_exactly():
    """Evaluation on the headless RobotSession (the live tick, its safety filter) gives the plain loop's results:
    the same states step by step, successes and lengths, on seeds where the filter passes every action."""
    from backend.services.evaluation import headless_session, run_episode

    robot = SimRobot(SimConfig(image_size=48))
    try:
        session = headless_session(robot)
        policy = JitteryExpert(robot, "green")
        for seed in (100_000, 100_001, 100_002):
            want = plain_loop(policy, robot, colour="green", seed=seed, max_steps=150)
            want_states = np.stack(policy.seen)
            got = run_episode(policy, robot, task_name="pick", colour="green", seed=seed, max_steps=150,
                              session=session)  # fmt: skip
            assert (got.success, got.steps) == want and got.success
            np.testing.assert_array_equal(np.stack(policy.seen), want_states)
        assert session.safety.total == 0  # nothing was clipped, so nothing could differ

        class Lunge(ExpertPolicy):  # a first action 0.5 rad away: the live robot's filter scales it down
            def select_action(self, obs, instruction):
                super().select_action(obs, instruction)
                return np.append(self.robot.home_qpos + 0.5, 0.0).astype(np.float32)

        lunge = run_episode(Lunge(robot, "red"), robot, task_name="pick", colour="red", seed=1, max_steps=3,
                            session=session)  # fmt: skip
        assert lunge.steps == 3 and session.safety.counts["velocity"] >= 1  # evaluated as the robot would move
    finally:
        robot.close()


def test_failures_are_counted_and_bad_requests_rejected():
    class Still(ExpertPolicy):
        def select_action(self, obs, instruction):
            super().select_action(obs, instruction)
            self.last_output.uncertainty = np.array([0.9])
            return np.append(self.robot.home_qpos, 0.0)  # never moves

    robot = SimRobot(SimConfig(image_size=48))
    try:
        report = evaluate_policy(Still(robot, "red"), EvalConfig(colour="red", episodes=1, max_steps=5), robot=robot)
    finally:
        robot.close()
    assert report["successes"] == 0 and report["per_episode"][0]["steps"] == 5
    assert report["wilson_95"][0] == 0.0 and report["share_predictions_above_threshold"] == 1.0
    for bad in (dict(colour="purple"), dict(task="fly"), dict(episodes=0)):
        with pytest.raises(ValueError):
            EvalConfig(**bad).validate()


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VLA_DATA_DIR": str(data_dir), "MUJOCO_GL": "egl", "VLA_IMAGE_SIZE": "64"}
    env.pop("VLA_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "run.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow  # ~12 s of process starts
def test_eval_cli_bad_input(tmp_path):
    missing = _cli(tmp_path / "data", "eval", "--model", str(tmp_path / "nope"), "--episodes", "1")
    assert missing.returncode == 2 and "not a saved model" in missing.stderr
    colour = _cli(tmp_path / "data", "eval", "--model", str(tmp_path), "--colour", "purple")
    assert colour.returncode == 2 and "unknown colour 'purple'" in colour.stderr
    episodes = _cli(tmp_path / "data", "eval", "--model", str(tmp_path), "--episodes", "0")
    assert episodes.returncode == 2 and "--episodes: must be a positive integer" in episodes.stderr


@pytest.mark.slow  # ~27 s: three run.py subprocesses (demos, train, eval)
def test_train_then_eval_cli_end_to_end(tmp_path):
    """demos -> train (a few steps of a tiny vla_tiny) -> eval of 2 short episodes: valid JSON on stdout and file."""
    data = tmp_path / "data"
    demos = _cli(data, "demos", "--task", "pick", "--colour", "green", "--episodes", "2", "--dataset", "d")
    assert demos.returncode == 0, demos.stderr
    tiny = ["--set", "d_model=32", "--set", "n_heads=2", "--set", "n_layers=1", "--set", "chunk_size=4",
            "--set", "vision_channels=[8, 16]", "--set", "uncertainty_samples=4", "--image-size", "32"]  # fmt: skip
    trained = _cli(data, "train", "--dataset", "d", "--out", str(tmp_path / "model"), "--steps", "4", *tiny)
    assert trained.returncode == 0, trained.stderr
    assert "trained 4 steps" in trained.stdout
    out = tmp_path / "report.json"
    result = _cli(
        data, "eval", "--model", str(tmp_path / "model"), "--task", "pick", "--colour", "green",
        "--episodes", "2", "--seed-base", "100000", "--max-steps", "6", "--json-out", str(out),
        "--video-dir", str(tmp_path / "videos"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == json.loads(out.read_text())
    assert report["episodes"] == 2 and len(report["per_episode"]) == 2 and report["image_hw"] == [32, 32]
    assert [e["seed"] for e in report["per_episode"]] == [100_000, 100_001]
    assert all(e["steps"] == 6 and e["success"] is False for e in report["per_episode"])
    assert report["wilson_95"] == [0.0, pytest.approx(0.658, abs=1e-3)]
    assert report["uncertainty_threshold"] is not None
    ep = report["per_episode"][0]
    assert ep["predictions"] == 6 and ep["mean_uncertainty"] >= 0 and ep["grounding_frames"] <= 6
    assert len(list((tmp_path / "videos").glob("*.mp4"))) == 2
