"""storage.quality: each rule fires on a crafted bad episode and stays quiet on clean and expert-like ones."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from storage.episode_meta import COL_ACTION, COL_FRAME_INDEX, COL_STATE, COL_TIMESTAMP
from storage.models import QualityFlagName
from storage.quality import (
    DEFAULT_THRESHOLDS,
    QualityFlag,
    QualityThresholds,
    compute_quality_flags,
    quality_flags_of_arrays,
)

FPS = 10
N_ARM = 6


def make_table(timestamps: np.ndarray, actions: np.ndarray) -> pa.Table:
    """A per-step table built like EpisodeRecorder._table (state = action, which the rules never read)."""
    t = np.asarray(timestamps, dtype=np.float32)  # (T,)
    a = np.asarray(actions, dtype=np.float32)  # (T, A)
    n, dim = a.shape
    return pa.table(
        {
            COL_TIMESTAMP: pa.array(t),
            COL_FRAME_INDEX: pa.array(np.arange(n, dtype=np.int64)),
            COL_STATE: pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), dim),
            COL_ACTION: pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), dim),
        }
    )


def clock(n: int, fps: int = FPS) -> np.ndarray:
    """(n,) steady timestamps, as the recorder writes them."""
    return (np.arange(n) / fps).astype(np.float32)


def smooth_actions(n: int, fps: int = FPS) -> np.ndarray:
    """(n, 7): slow joint sinusoids (jerk < 1 rad/s^3) plus a gripper that closes halfway through."""
    t = np.arange(n)[:, None] / fps  # (n, 1)
    phase = np.linspace(0.0, np.pi, N_ARM)[None, :]  # (1, 6)
    arm = 0.3 * np.sin(2 * np.pi * 0.2 * t + phase)  # (n, 6)
    gripper = (np.arange(n) >= n // 2).astype(float)[:, None]  # (n, 1)
    return np.concatenate([arm, gripper], axis=1)


def names(flags: list[QualityFlag]) -> list[QualityFlagName]:
    return [f.name for f in flags]


def only(flags: list[QualityFlag], name: QualityFlagName) -> QualityFlag:
    assert names(flags) == [name], flags
    return flags[0]


def test_clean_smooth_episode_has_no_flags():
    n = 5 * FPS
    assert compute_quality_flags(make_table(clock(n), smooth_actions(n)), FPS) == []


def test_dropped_frames():
    n = 5 * FPS
    keep = np.r_[0:20, 24:n]  # frames 20-23 lost: one gap of 5 periods = 0.5 s
    flag = only(compute_quality_flags(make_table(clock(n)[keep], smooth_actions(n)[keep]), FPS), "dropped_frames")
    assert flag.detail == "1 gap longer than 1.5 frame periods (longest 0.50 s)"

    keep = np.r_[0:10, 12:30, 33:n]  # two gaps: 0.3 s and 0.4 s
    flag = only(compute_quality_flags(make_table(clock(n)[keep], smooth_actions(n)[keep]), FPS), "dropped_frames")
    assert flag.detail.startswith("2 gaps") and "longest 0.40 s" in flag.detail


def test_a_gap_just_under_the_limit_is_not_a_dropped_frame():
    t = clock(5 * FPS).astype(np.float64)
    t[25:] += 0.04  # one period of 0.14 s = 1.4 periods
    assert "dropped_frames" not in names(quality_flags_of_arrays(t, smooth_actions(t.size), FPS))


def test_fps_jitter():
    n = 5 * FPS
    periods = np.where(np.arange(n - 1) % 2 == 0, 0.06, 0.14)  # mean 0.1 s, CV 0.4, no gap above 0.15 s
    t = np.concatenate([[0.0], np.cumsum(periods)])
    flag = only(compute_quality_flags(make_table(t, smooth_actions(n)), FPS), "fps_jitter")
    assert "coefficient of variation of 0.40" in flag.detail


def test_a_real_time_clock_with_a_few_ms_of_jitter_is_steady():
    n = 5 * FPS
    periods = np.random.default_rng(0).normal(0.1, 0.005, n - 1)  # CV ~0.05
    t = np.concatenate([[0.0], np.cumsum(periods)])
    assert quality_flags_of_arrays(t, smooth_actions(n), FPS) == []


def test_dropped_frames_alone_are_not_jitter():
    n = 5 * FPS
    keep = np.r_[0:20, 24:n]
    assert names(compute_quality_flags(make_table(clock(n)[keep], smooth_actions(n)[keep]), FPS)) == ["dropped_frames"]


def test_idle():
    n = 6 * FPS
    actions = smooth_actions(n)
    actions[10:41] = actions[10]  # frames 10..40: still for 3 s
    flag = only(compute_quality_flags(make_table(clock(n), actions), FPS), "idle")
    assert flag.detail == "action unchanged for 3.0 s (frames 10-40; limit 2 s)"


def test_short_pauses_and_sub_tolerance_drift_are_handled():
    n = 6 * FPS
    actions = smooth_actions(n)
    actions[10:26] = actions[10]  # 1.5 s still: a pause, not idle
    assert quality_flags_of_arrays(clock(n), actions, FPS) == []
    actions[10:31] = actions[10]  # exactly 2 s (float32 timestamps): not longer than the limit
    assert quality_flags_of_arrays(clock(n), actions, FPS) == []
    actions[10:32] = actions[10]  # 2.1 s
    assert names(quality_flags_of_arrays(clock(n), actions, FPS)) == ["idle"]

    drifting = np.tile(actions[0], (n, 1)) + np.arange(n)[:, None] * 2e-4  # 2e-4 rad per step: below 1e-3
    assert names(quality_flags_of_arrays(clock(n), drifting, FPS)) == ["idle"]


def test_a_moving_gripper_is_not_idle():
    n = 6 * FPS
    actions = np.zeros((n, N_ARM + 1))
    actions[:, -1] = np.linspace(0.0, 1.0, n)  # arm still, gripper closing slowly the whole time
    assert "idle" not in names(quality_flags_of_arrays(clock(n), actions, FPS))


def test_high_jerk_on_per_step_noise():
    n = 5 * FPS
    actions = smooth_actions(n)
    actions[:, :N_ARM] += np.random.default_rng(1).uniform(-0.05, 0.05, (n, N_ARM))  # +-0.05 rad per step
    flag = only(compute_quality_flags(make_table(clock(n), actions), FPS), "high_jerk")
    measured = float(re.search(r"jerk is (\d+) rad/s\^3", flag.detail).group(1))
    assert measured > DEFAULT_THRESHOLDS.max_jerk
    assert flag.detail.startswith("median arm jerk") and "limit 150 in any 1 s" in flag.detail


def test_gripper_steps_are_not_jerk():
    n = 5 * FPS
    actions = smooth_actions(n)
    actions[:, -1] = np.arange(n) % 2  # the gripper toggles every step (the arm is smooth)
    assert "high_jerk" not in names(quality_flags_of_arrays(clock(n), actions, FPS))


@pytest.mark.parametrize("fps", [10, 30])
def test_scripted_expert_like_trajectory_is_not_jerky(fps: int):
    """Joint targets linearly interpolated between 3 waypoints (velocity corners at each) and a gripper step."""
    waypoints = np.array(
        [
            [0.0, 0.2, 1.6, 0.0, 1.3, 0.0],
            [0.4, 0.5, 1.9, 0.1, 0.8, 0.9],
            [-0.2, 0.3, 1.5, 0.0, 1.1, 0.4],
        ]
    )  # (3, 6) rad
    steps = 2 * fps  # 2 s per segment, up to ~0.45 rad/s
    first = np.linspace(waypoints[0], waypoints[1], steps, endpoint=False)  # (steps, 6)
    second = np.linspace(waypoints[1], waypoints[2], steps)  # (steps, 6)
    arm = np.concatenate([first, second])  # (2 * steps, 6)
    gripper = np.r_[np.zeros(steps), np.ones(steps)][:, None]  # closes at the middle waypoint
    actions = np.concatenate([arm, gripper], axis=1)
    flags = compute_quality_flags(make_table(clock(len(actions), fps), actions), fps)
    assert flags == []
    if fps == 30:  # the corner is there: alone far above the limit (its jerk grows as fps^2), yet 2 samples of 117
        corner = np.linalg.norm(np.diff(arm, n=3, axis=0), axis=1).max() * fps**3
        assert corner > 5 * DEFAULT_THRESHOLDS.max_jerk


def test_a_sim_scripted_expert_demo_gets_no_flags():
    """A real scripted-expert rollout at 30 Hz (seed 1 brakes hard at a waypoint: a 99th percentile would flag it)."""
    pytest.importorskip("mujoco")
    from backend.sim import SimConfig, SimRobot, make_expert, make_task

    robot = SimRobot(SimConfig(cameras=()))
    try:
        task = make_task("pick")
        expert = make_expert(task)
        robot.reset_state(seed=1, task=task)
        expert.reset(robot)
        actions = []
        while not expert.done(robot):
            actions.append(expert.act(robot))
            robot.apply(actions[-1])
    finally:
        robot.close()
    actions = np.stack(actions)  # (T, 7)
    assert compute_quality_flags(make_table(clock(len(actions), robot.control_hz), actions), robot.control_hz) == []


def key_presses(holds: list[tuple[float, float]], fps: int = 30) -> np.ndarray:
    """(T, 7) actions of joints driven as keys drive them: each (seconds, joint velocity rad/s) switched on at once."""
    velocity = np.concatenate([np.full(max(1, round(s * fps)), v) for s, v in holds])  # (T,) rad/s
    arm = np.cumsum(velocity)[:, None] / fps * np.linspace(0.5, 1.0, N_ARM)[None, :]  # (T, 6)
    return np.concatenate([arm, np.zeros((len(arm), 1))], axis=1)


def test_key_presses_are_not_jerk_but_key_mashing_is():
    """A velocity step is 2 jerk samples of ~Δv·fps² (a corner): many of them are not a jerky take, reversals are."""
    rng = np.random.default_rng(3)
    holds = []  # 6 moves of 0.3-2 s, each followed by a pause of 0.3-1 s
    for _ in range(6):
        holds += [(float(rng.uniform(0.3, 2.0)), float(rng.choice([1.0, -1.0]))), (float(rng.uniform(0.3, 1.0)), 0.0)]
    short = [(0.3, 1.0), (0.3, 0.0), (0.3, -1.0), (0.3, 0.0)] * 2  # 2.4 s of presses and pauses
    for take in (holds, short):
        actions = key_presses(take)
        assert quality_flags_of_arrays(clock(len(actions), 30), actions, 30) == []
    old_rule = QualityThresholds(jerk_window_s=1e6, jerk_percentile=90)  # the whole take's 90th percentile
    actions = key_presses(short)
    assert names(quality_flags_of_arrays(clock(len(actions), 30), actions, 30, old_rule)) == ["high_jerk"]
    mash = [(float(rng.uniform(0.06, 0.12)), (-1.0) ** i) for i in range(12)]  # A/D alternating for ~1 s
    actions = key_presses(holds[:3] + mash + holds[3:6])
    flag = only(quality_flags_of_arrays(clock(len(actions), 30), actions, 30), "high_jerk")
    start = sum(round(s * 30) for s, _ in holds[:3])  # where the mashing begins
    first, last = map(int, re.search(r"frames (\d+)-(\d+)", flag.detail).groups())
    assert start - 30 <= first and last <= start + 2 * 30


# ---------------------------------------------------------------------------------------------- real console takes
TAKES = Path(__file__).resolve().parents[1] / "data" / "teleop_takes"  # see its README.md


def read_take(path: Path) -> tuple[pa.Table, dict]:
    table = pq.read_table(path)
    return table, json.loads(table.schema.metadata[b"teleop_take"])


TAKE_KINDS = {path.stem: read_take(path)[1]["kind"] for path in sorted(TAKES.glob("*.parquet"))}
GOOD_TAKES = sorted(name for name, kind in TAKE_KINDS.items() if kind in ("keyboard", "gamepad"))
BAD_TAKES = sorted(name for name, kind in TAKE_KINDS.items() if kind.endswith("_bad"))


def test_the_recorded_takes_are_there_and_small():
    kinds = list(TAKE_KINDS.values())
    assert kinds.count("keyboard") >= 4 and kinds.count("gamepad") >= 3 and len(BAD_TAKES) >= 2, TAKE_KINDS
    assert all((TAKES / f"{name}.parquet").stat().st_size < 100_000 for name in TAKE_KINDS)


@pytest.mark.parametrize("name", GOOD_TAKES)
def test_real_keyboard_and_gamepad_takes_are_not_jerky(name: str):
    """Recorded through the console (bench/record_teleop_takes.py); only the take with a 3-s pause is idle."""
    table, meta = read_take(TAKES / f"{name}.parquet")
    flags = compute_quality_flags(table, meta["fps"])
    assert names(flags) == (["idle"] if name == "kb_think_pause" else []), flags


def test_a_three_second_pause_to_think_is_idle():
    table, meta = read_take(TAKES / "kb_think_pause.parquet")
    detail = only(compute_quality_flags(table, meta["fps"]), "idle").detail
    assert 2.0 < float(re.search(r"unchanged for ([\d.]+) s", detail).group(1)) < 4.0, detail


@pytest.mark.parametrize("name", BAD_TAKES)
def test_real_mashing_and_wobbling_takes_are_jerky(name: str):
    table, meta = read_take(TAKES / f"{name}.parquet")
    flag = only(compute_quality_flags(table, meta["fps"]), "high_jerk")
    assert float(re.search(r"jerk is (\d+) rad/s\^3", flag.detail).group(1)) > 3 * DEFAULT_THRESHOLDS.max_jerk


def test_too_short():
    flag = only(compute_quality_flags(make_table(clock(5), smooth_actions(5)), FPS), "too_short")
    assert flag.detail == "0.50 s long (5 frames at 10 fps; minimum 1 s)"
    assert compute_quality_flags(make_table(clock(10), smooth_actions(10)), FPS) == []  # exactly 1 s


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_tiny_tables_only_get_too_short_and_no_warnings(n: int):
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        for actions in (smooth_actions(n), np.zeros((n, N_ARM + 1))):
            flags = compute_quality_flags(make_table(clock(n), actions), FPS)
            assert names(flags) == ["too_short"]
            assert f"{n / FPS:.2f} s long" in flags[0].detail


def test_several_flags_come_sorted_by_name():
    n = 4 * FPS
    keep = np.r_[0:5, 8:n]
    actions = smooth_actions(n)
    actions[:, :N_ARM] += np.random.default_rng(2).uniform(-0.05, 0.05, (n, N_ARM))
    actions[15:] = actions[15]  # still from 1.5 s on: 2.5 s
    flags = compute_quality_flags(make_table(clock(n)[keep], actions[keep]), FPS)
    assert names(flags) == ["dropped_frames", "high_jerk", "idle"]
    assert names(flags) == sorted(names(flags))


def test_custom_thresholds():
    n = 5 * FPS
    actions = smooth_actions(n)
    actions[:, :N_ARM] += np.random.default_rng(1).uniform(-0.05, 0.05, (n, N_ARM))
    assert quality_flags_of_arrays(clock(n), actions, FPS, QualityThresholds(max_jerk=1e6)) == []
    assert names(quality_flags_of_arrays(clock(n), smooth_actions(n), FPS, QualityThresholds(min_seconds=10))) == [
        "too_short"
    ]


@pytest.mark.parametrize(
    "kwargs", [{"gap_periods": 0}, {"jitter_cv": -1}, {"max_jerk": float("nan")}, {"jerk_percentile": 0}]
)
def test_bad_thresholds_are_rejected(kwargs: dict):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        QualityThresholds(**kwargs)


def test_variable_size_list_and_chunked_columns_are_read():
    n = 5 * FPS
    actions = smooth_actions(n).astype(np.float32)
    table = pa.table({COL_TIMESTAMP: clock(n), COL_ACTION: pa.array(list(actions), type=pa.list_(pa.float32()))})
    assert compute_quality_flags(table, FPS) == []
    chunked = pa.concat_tables([make_table(clock(n)[:20], actions[:20]), make_table(clock(n)[20:], actions[20:])])
    assert chunked.column(COL_ACTION).num_chunks == 2
    assert compute_quality_flags(chunked, FPS) == []


@pytest.mark.parametrize("column", [COL_TIMESTAMP, COL_ACTION])
def test_missing_column_is_a_value_error(column: str):
    table = make_table(clock(20), smooth_actions(20)).drop_columns([column])
    with pytest.raises(ValueError, match=re.escape(column)):
        compute_quality_flags(table, FPS)


@pytest.mark.parametrize("fps", [0, -10])
def test_bad_fps_is_a_value_error(fps: int):
    table = make_table(clock(20), smooth_actions(20))
    with pytest.raises(ValueError, match="fps must be a positive number"):
        compute_quality_flags(table, fps)
    with pytest.raises(ValueError, match="fps"):
        quality_flags_of_arrays(clock(20), smooth_actions(20), fps)


def test_malformed_arrays_are_value_errors():
    with pytest.raises(ValueError, match="shape"):
        quality_flags_of_arrays(clock(20), smooth_actions(19), FPS)
    with pytest.raises(ValueError, match="finite"):
        quality_flags_of_arrays(clock(20), np.full((20, 7), np.nan), FPS)
    table = pa.table({COL_TIMESTAMP: clock(2), COL_ACTION: pa.array([[0.0, 1.0], [0.0]])})
    with pytest.raises(ValueError, match="different lengths"):
        compute_quality_flags(table, FPS)
