"""Automatic data-quality flags of an episode, computed from its per-step table (timestamps + commanded actions).

Each rule measures one number and compares it with a field of `QualityThresholds`; a flag's `detail` says what was
measured so a reviewer can judge it without opening the episode. The rules, and why their defaults:

- dropped_frames: a gap between consecutive timestamps longer than `gap_periods` (1.5) frame periods. A steady
  recorder's gaps are one period; half a period of slack absorbs scheduling noise, while a single lost frame already
  makes a gap of two periods.
- fps_jitter: the coefficient of variation (std / mean) of the frame periods, gaps already counted as dropped frames
  left out, above `jitter_cv` (0.25). A sim clock gives ~0 and a real-time loop a few percent; a quarter of a period
  means the step timing (and so the action rate a policy learns) is unreliable. It needs at least
  `MIN_JITTER_PERIODS` periods: the spread of two or three numbers says nothing.
- idle: a stretch longer than `idle_seconds` (2 s) in which no action dimension changes by more than
  `idle_tolerance` (1e-3, radians for the sim arm's joints) per step. The scripted expert never holds still that long
  (its longest pause, the grasp, is under 1 s, and even then the gripper moves); a long still stretch is an operator
  who paused or a take that ran on after the task was done, and it teaches a policy to stall. On the recorded
  console takes the pauses between moves last 0.3-1.4 s and none is flagged (the longest still stretch, 1.97 s,
  is a gamepad take pushing the tool against the table); a 3-s stop to think mid-take is flagged (3.6 s with the
  pauses around it), on purpose: those frames show a policy standing still, and the flag names them to trim.
- high_jerk: jerk = the third finite difference of the action divided by dt^3 (dt = 1 / fps), over the arm
  dimensions (all but the last, the gripper command, whose steps are deliberate), as a Euclidean norm per step; the
  rule slides a window of `jerk_window_s` (1 s) over the take and fires when, in some window, the
  `jerk_percentile` (50th: the median) of that norm is above `max_jerk` (150 rad/s^3 for joint targets in radians).
  In words: the arm is jerky for at least half of some second. Why a sliding median and not, as before, the 90th
  percentile of the whole take: real console takes (tests/data/teleop_takes, recorded through the browser by
  bench/record_teleop_takes.py) are made of velocity steps. A key press or release, and a stick snapping back,
  switches the commanded end-effector velocity on or off within one tick, and the action (measured joints + the IK
  step toward the target) steps its joint velocity by ~1.2 rad/s: exactly 2 jerk samples of ~1,100 rad/s^3 at
  30 fps (a velocity corner's jerk grows as fps^2 and says nothing about the motion). A whole-take 90th percentile
  therefore measures how often the operator touched a key: 96-163 rad/s^3 on 8-s keyboard picks, 687 on a 3.7-s
  take of three nudges, 726-871 on keyboard picks recorded while the machine was loaded (the loop at 50-75 % of
  real time, so each hold spans fewer frames and corners are a larger share); gamepad picks 57-83. Isolated
  corners (2 samples, 0.07 s) cannot fill half of a second; shaking does. The sliding median measured: keyboard
  takes 3-7 rad/s^3 (7-31 under load), gamepad takes 14-18, 60 scripted-expert demos (pick and place at 10, 15
  and 30 fps) at most 57 (their whole-take 90th percentile: at most 62), whereas a keyboard take of key mashing
  (A/D, W/S, R/F alternated in 60-120 ms taps) has 1,470, a gamepad take of a stick flicked back and forth every
  80-160 ms 633, and per-step noise of +-0.05 rad on the joints at 10 fps at least 320 over 20 seeds (noise jerk
  grows as fps^3: ~9,100 at 30 fps). One take recorded with the loop at a quarter of real time (2 s of frames
  for 8.5 s of keys) is flagged (748): in its frames every hold is 2-3 ticks long, as jerky as mashing. Jerk of
  the measured joints (observation.state) was no cure: the arm's PD lag rounds each corner over ~3 frames, yet
  keyboard takes still have a whole-take 90th percentile of 142-238 there. The window is the whole take when the
  take is shorter. It needs 4 rows (one third difference) and at least 2 action dimensions.
- too_short: a duration (last timestamp - first + one frame period) under `min_seconds` (1 s): no pick or place
  fits in less, so such a take is an accidental start/stop.

`compute_quality_flags` reads a stored table; `quality_flags_of_arrays` does the work on plain arrays. Both are pure
and return the flags sorted by name. Tables of 0-3 rows are fine, without numpy warnings: fps_jitter and high_jerk
need more rows and are skipped, idle cannot last long enough, so with a steady clock only too_short fires (a real
timestamp gap is still reported as dropped_frames).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.episode_meta import COL_ACTION, COL_TIMESTAMP
from storage.models import QualityFlagName

MIN_JITTER_PERIODS = 4  # fewer (non-gap) frame periods than this: no fps_jitter verdict
# Slack on duration limits: float32 timestamps are off by up to ~1e-4 s in an hour-long take, so 10 frames at 10 fps
# (0.9 s + a period) count as the full 1 s, and a hold of exactly 2 s is not "longer than 2 s".
TIME_SLACK = 1e-3  # seconds


@dataclass(frozen=True)
class QualityThresholds:
    """Where each quality rule fires; the defaults suit the sim arm at 10-30 fps (see the module docstring)."""

    gap_periods: float = 1.5  # dropped_frames: a timestamp gap longer than this many frame periods (1 / fps)
    jitter_cv: float = 0.25  # fps_jitter: std / mean of the (non-gap) frame periods above this
    idle_seconds: float = 2.0  # idle: a still stretch longer than this (seconds, by the timestamps)
    idle_tolerance: float = 1e-3  # idle: a step is still when no action dim changes by more (action units, rad)
    jerk_window_s: float = 1.0  # high_jerk: in some window this long (seconds; the whole take if shorter) ...
    jerk_percentile: float = 50.0  # ... this percentile (0-100] of the per-step arm jerk norm ...
    max_jerk: float = 150.0  # ... above this, in action units / s^3 (rad/s^3 for joint targets)
    min_seconds: float = 1.0  # too_short: a duration under this (seconds)

    def __post_init__(self) -> None:
        for name in ("gap_periods", "jitter_cv", "idle_seconds", "jerk_window_s", "max_jerk", "min_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"QualityThresholds.{name} must be a finite number > 0, got {value!r}")
        if not (math.isfinite(self.idle_tolerance) and self.idle_tolerance >= 0):
            tol = self.idle_tolerance
            raise ValueError(f"QualityThresholds.idle_tolerance must be a finite number >= 0, got {tol!r}")
        if not (0 < self.jerk_percentile <= 100):
            raise ValueError(f"QualityThresholds.jerk_percentile must be in (0, 100], got {self.jerk_percentile!r}")


DEFAULT_THRESHOLDS = QualityThresholds()


@dataclass(frozen=True)
class QualityFlag:
    """One finding: which rule fired and a short sentence with the measured number."""

    name: QualityFlagName
    detail: str


def compute_quality_flags(
    table: pa.Table, fps: int, thresholds: QualityThresholds = DEFAULT_THRESHOLDS
) -> list[QualityFlag]:
    """The quality flags of an episode's per-step table (needs the timestamp and action columns), sorted by name.

    Raises ValueError when a column is missing or malformed, or fps <= 0.
    """
    _check_fps(fps)
    missing = [c for c in (COL_TIMESTAMP, COL_ACTION) if c not in table.column_names]
    if missing:
        raise ValueError(f"table lacks the column(s) {missing} needed for quality flags; it has {table.column_names}")
    timestamps = _timestamps_of(table.column(COL_TIMESTAMP))  # (T,) float64
    actions = _actions_of(table.column(COL_ACTION))  # (T, A) float64
    return quality_flags_of_arrays(timestamps, actions, fps, thresholds)


def quality_flags_of_arrays(
    timestamps: np.ndarray, actions: np.ndarray, fps: int, thresholds: QualityThresholds = DEFAULT_THRESHOLDS
) -> list[QualityFlag]:
    """The quality flags of timestamps (T,) seconds and actions (T, A), sorted by name.

    Raises ValueError for fps <= 0, mismatched shapes or non-finite values.
    """
    _check_fps(fps)
    t = np.asarray(timestamps, dtype=np.float64)  # (T,)
    a = np.asarray(actions, dtype=np.float64)  # (T, A)
    if t.ndim != 1:
        raise ValueError(f"timestamps must be 1-D (T,), got shape {t.shape}")
    if a.ndim != 2 or a.shape[0] != t.shape[0]:
        raise ValueError(f"actions must have shape (T, A) with T = {t.shape[0]} timestamps, got {a.shape}")
    if not np.isfinite(t).all():
        raise ValueError("timestamps must be finite")
    if not np.isfinite(a).all():
        raise ValueError("actions must be finite")
    period = 1.0 / fps
    flags = [
        _dropped_frames(t, period, thresholds),
        _fps_jitter(t, period, thresholds),
        _idle(t, a, thresholds),
        _high_jerk(t, a, period, thresholds),
        _too_short(t, fps, thresholds),
    ]
    return sorted((f for f in flags if f is not None), key=lambda f: f.name.value)


# ---------------------------------------------------------------------------------------------------- the rules
def _dropped_frames(t: np.ndarray, period: float, th: QualityThresholds) -> QualityFlag | None:
    gaps = np.diff(t)  # (T-1,) seconds
    long = gaps[gaps > th.gap_periods * period]  # (G,)
    if long.size == 0:
        return None
    noun = "gap" if long.size == 1 else "gaps"
    return QualityFlag(
        QualityFlagName.DROPPED_FRAMES,
        f"{long.size} {noun} longer than {th.gap_periods:g} frame periods (longest {long.max():.2f} s)",
    )


def _fps_jitter(t: np.ndarray, period: float, th: QualityThresholds) -> QualityFlag | None:
    periods = np.diff(t)  # (T-1,) seconds
    periods = periods[periods <= th.gap_periods * period]  # (P,) dropped frames are their own flag
    if periods.size < MIN_JITTER_PERIODS:
        return None
    mean = float(periods.mean())
    if mean <= 0:  # all timestamps equal: a broken clock, as unsteady as it gets
        return QualityFlag(QualityFlagName.FPS_JITTER, f"{periods.size} frame periods with a mean of {mean:.3f} s")
    cv = float(periods.std()) / mean
    if cv <= th.jitter_cv:
        return None
    return QualityFlag(
        QualityFlagName.FPS_JITTER,
        f"frame periods vary with a coefficient of variation of {cv:.2f} (limit {th.jitter_cv:g}; "
        f"mean {mean * 1000:.1f} ms, nominal {period * 1000:.1f} ms)",
    )


def _idle(t: np.ndarray, a: np.ndarray, th: QualityThresholds) -> QualityFlag | None:
    if t.size < 2 or a.shape[1] == 0:
        return None
    still = np.abs(np.diff(a, axis=0)).max(axis=1) <= th.idle_tolerance  # (T-1,) step i -> i+1 is still
    edges = np.diff(np.concatenate(([0], still.astype(np.int8), [0])))  # (T,)
    starts = np.flatnonzero(edges == 1)  # (R,) first frame of each still run
    ends = np.flatnonzero(edges == -1)  # (R,) last frame of each still run (steps start..end-1 are still)
    durations = t[ends] - t[starts]  # (R,) seconds
    long = durations > th.idle_seconds + TIME_SLACK  # (R,)
    if not long.any():
        return None
    i = int(np.argmax(durations))
    more = f"; {int(long.sum())} such stretches" if long.sum() > 1 else ""
    return QualityFlag(
        QualityFlagName.IDLE,
        f"action unchanged for {durations[i]:.1f} s (frames {starts[i]}-{ends[i]}; limit {th.idle_seconds:g} s{more})",
    )


def _high_jerk(t: np.ndarray, a: np.ndarray, period: float, th: QualityThresholds) -> QualityFlag | None:
    if a.shape[0] < 4 or a.shape[1] < 2:
        return None
    arm = a[:, :-1]  # (T, A-1) without the gripper command
    jerk = np.linalg.norm(np.diff(arm, n=3, axis=0), axis=1) / period**3  # (T-3,) per-step jerk norm
    width = min(jerk.size, max(1, round(th.jerk_window_s / period)))  # samples per window
    windows = np.lib.stride_tricks.sliding_window_view(jerk, width)  # (T-3-width+1, width)
    per_window = np.percentile(windows, th.jerk_percentile, axis=1)  # (W,)
    i = int(np.argmax(per_window))
    value = float(per_window[i])
    if value <= th.max_jerk:
        return None
    first, last = i, i + width + 2  # jerk sample k spans frames k..k+3
    p = th.jerk_percentile
    what = "median arm jerk" if p == 50 else f"{_ordinal(p)} percentile of the arm jerk"
    return QualityFlag(
        QualityFlagName.HIGH_JERK,
        f"{what} is {value:.0f} rad/s^3 over frames {first}-{last} "
        f"({t[first]:.1f}-{t[last]:.1f} s; limit {th.max_jerk:g} in any {th.jerk_window_s:g} s)",
    )


def _too_short(t: np.ndarray, fps: int, th: QualityThresholds) -> QualityFlag | None:
    duration = float(t[-1] - t[0]) + 1.0 / fps if t.size else 0.0
    if duration >= th.min_seconds - TIME_SLACK:
        return None
    frames = "frame" if t.size == 1 else "frames"
    return QualityFlag(
        QualityFlagName.TOO_SHORT,
        f"{duration:.2f} s long ({t.size} {frames} at {fps:g} fps; minimum {th.min_seconds:g} s)",
    )


# ---------------------------------------------------------------------------------------------------- helpers
def _check_fps(fps: int) -> None:
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")


def _ordinal(p: float) -> str:
    if p != int(p):
        return f"{p:g}th"
    n = int(p)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _timestamps_of(column: pa.ChunkedArray) -> np.ndarray:
    """(T,) float64 seconds."""
    if column.null_count:
        raise ValueError(f"column {COL_TIMESTAMP!r} has {column.null_count} null value(s)")
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        raise ValueError(f"column {COL_TIMESTAMP!r} must hold numbers, got {column.type}")
    return column.to_numpy().astype(np.float64)


def _actions_of(column: pa.ChunkedArray) -> np.ndarray:
    """(T, A) float64 from a (fixed-size) list column."""
    if column.null_count:
        raise ValueError(f"column {COL_ACTION!r} has {column.null_count} null row(s)")
    kind = column.type
    if not (pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        raise ValueError(f"column {COL_ACTION!r} must be a list of numbers per step, got {kind}")
    if not (pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type)):
        raise ValueError(f"column {COL_ACTION!r} must hold numbers, got {kind}")
    n = len(column)
    if n == 0:
        width = kind.list_size if pa.types.is_fixed_size_list(kind) else 0
        return np.zeros((0, width), dtype=np.float64)
    array = column.combine_chunks()
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)  # (T,)
    if (lengths != lengths[0]).any():
        raise ValueError(f"column {COL_ACTION!r} has rows of different lengths ({lengths.min()}..{lengths.max()})")
    values = array.flatten()  # (T * A,)
    if values.null_count:
        raise ValueError(f"column {COL_ACTION!r} has {values.null_count} null value(s) inside its rows")
    return values.to_numpy(zero_copy_only=False).astype(np.float64).reshape(n, int(lengths[0]))
