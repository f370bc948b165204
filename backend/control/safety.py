"""The safety filter every action passes on its way to the robot, whatever its source (teleop, expert, policy).

Checks, in order, on the (D_action,) action = joint-position targets + gripper command:

1. shape and finiteness: a wrong shape or a NaN/inf anywhere rejects the action; the robot holds instead.
2. joint limits: each component is clamped into [joint_low, joint_high].
3. per-tick step: |target - current| <= max_joint_speed * dt per component, where `current` is the measured joint
   positions plus the last applied gripper command (the convention of the sim's own IK, so a well-behaved source is
   never touched); a larger step is scaled down as a whole (same direction, slower).
4. workspace: the TCP position of the commanded joints (forward kinematics, when the robot offers it) must lie in
   the workspace box (+ tolerance). A violation is rejected (hold) unless it moves the TCP back toward the box, so
   an arm that is already outside can always be brought back.

Each intervention is counted per reason (`counts`) and logged (rate-limited). Small float rounding (float32
actions) is clamped silently, not counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from backend.control.ratelog import RateLimitedLog
from backend.robot import RobotLimits

log = logging.getLogger(__name__)

REASONS = ("invalid", "nonfinite", "joint_limit", "velocity", "workspace")

# Forward kinematics: (D_action,) joint action -> (3,) TCP position in the base frame.
ForwardKinematics = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SafetyResult:
    action: np.ndarray  # (D_action,) float32: what may be applied
    reasons: tuple[str, ...]  # interventions on this action (empty: passed untouched)
    held: bool  # the action was rejected and `action` is the hold action


class SafetyFilter:
    def __init__(
        self,
        limits: RobotLimits,
        dt: float,
        *,
        fk: ForwardKinematics | None = None,
        limit_tol: float = 1e-5,
        step_tol: float = 1e-4,
        workspace_tol: float = 0.01,
    ) -> None:
        self.low = np.asarray(limits.joint_low, dtype=np.float64)
        self.high = np.asarray(limits.joint_high, dtype=np.float64)
        self.max_step = np.asarray(limits.max_joint_speed, dtype=np.float64) * dt
        self.ws_low = np.asarray(limits.workspace_low, dtype=np.float64)
        self.ws_high = np.asarray(limits.workspace_high, dtype=np.float64)
        self.fk = fk
        self.limit_tol, self.step_tol, self.workspace_tol = limit_tol, step_tol, workspace_tol
        self.counts: dict[str, int] = dict.fromkeys(REASONS, 0)
        self._log = RateLimitedLog(log)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def _count(self, reason: str, detail: str) -> None:
        self.counts[reason] += 1
        self._log.warning(reason, "safety filter: %s (%s; %d so far)", reason, detail, self.counts[reason])

    def _outside(self, pos: np.ndarray) -> float:
        """How far (m) `pos` lies outside the workspace box (0 inside)."""
        return float(np.linalg.norm(np.maximum(self.ws_low - pos, 0.0) + np.maximum(pos - self.ws_high, 0.0)))

    def filter(self, action: object, *, current: np.ndarray, hold: np.ndarray) -> SafetyResult:
        """Check `action` against the limits, relative to `current` ((D_action,) measured joints + last gripper
        command); on rejection return `hold` (which the caller guarantees is safe: the current pose)."""
        hold = np.asarray(hold, dtype=np.float32)
        try:
            a = np.array(action, dtype=np.float64)
        except (TypeError, ValueError):
            self._count("invalid", f"not numeric: {type(action).__name__}")
            return SafetyResult(hold, ("invalid",), True)
        if a.shape != self.low.shape:
            self._count("invalid", f"shape {a.shape}, expected {self.low.shape}")
            return SafetyResult(hold, ("invalid",), True)
        if not np.all(np.isfinite(a)):
            self._count("nonfinite", f"NaN/inf in components {np.flatnonzero(~np.isfinite(a)).tolist()}")
            return SafetyResult(hold, ("nonfinite",), True)
        reasons: list[str] = []
        over = np.maximum(self.low - a, a - self.high)
        if np.any(over > self.limit_tol):
            bad = np.flatnonzero(over > self.limit_tol).tolist()
            reasons.append("joint_limit")
            self._count("joint_limit", f"components {bad} beyond limits by up to {over.max():.4f}")
        a = np.clip(a, self.low, self.high)
        cur = np.asarray(current, dtype=np.float64)
        step = a - cur
        ratio = np.abs(step) / np.maximum(self.max_step, 1e-12)
        worst = float(ratio.max())
        # Over the per-tick limit by more than step_tol: scaled down. Within it (float rounding: the sim's IK clamps
        # its steps at the limit, so the scripted expert lands a few 1e-7 over it) the action passes untouched.
        if worst > 1.0 and np.any(np.abs(step) - self.max_step > self.step_tol):
            reasons.append("velocity")
            self._count("velocity", f"step {worst:.2f}x the per-tick limit, scaled down")
            a = np.clip(cur + step / worst, self.low, self.high)
        if self.fk is not None:
            out_new = self._outside(np.asarray(self.fk(a), dtype=np.float64))
            if out_new > self.workspace_tol:
                out_now = self._outside(np.asarray(self.fk(cur), dtype=np.float64))
                if out_new > out_now + 1e-6:
                    self._count("workspace", f"commanded TCP {out_new * 100:.1f} cm outside the workspace box")
                    return SafetyResult(hold, (*reasons, "workspace"), True)
        return SafetyResult(a.astype(np.float32), tuple(reasons), False)


def robot_forward_kinematics(robot) -> ForwardKinematics | None:
    """The robot interface's forward kinematics (backend.robot.Robot.forward_kinematics), or None for a robot that
    has none (the workspace check is then skipped; joint and speed limits still hold)."""
    fk = getattr(robot, "forward_kinematics", None)
    return fk if callable(fk) else None
