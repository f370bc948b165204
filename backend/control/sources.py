"""Command sources: what decides the robot's next action. Exactly one is active in a RobotSession at a time.

A source turns the robot's current state (and the observation the previous tick rendered) into a (D_action,) joint
action, or None to hold still. It runs on the loop thread only. The policy source (backend/control/policy_source.py)
implements the same four methods and is registered with `RobotSession.add_source`.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from backend.control.commands import CommandMailbox
from backend.robot import EETarget


class CommandSource(Protocol):
    name: str  # "idle" | "teleop" | "expert" | ...
    record_as: str  # the episode source recorded for takes driven by it (storage.models.EpisodeSource value)

    def activate(self, robot, task, instruction: str) -> None:
        """Called (loop thread or under the robot lock) when it becomes active, after a reset and after an e-stop
        is released: start from the robot's current state; `instruction` is the scene's text."""

    def deactivate(self) -> None: ...

    def act(self, robot, now: float, obs) -> np.ndarray | None:
        """The action for this tick, or None to hold still; `obs` is the observation the previous tick rendered
        (backend.robot.Observation)."""


class IdleSource:
    """Nobody drives: the arm holds where it is."""

    name = "idle"
    record_as = "teleop"

    def activate(self, robot, task, instruction: str = "") -> None:
        pass

    def deactivate(self) -> None:
        pass

    def act(self, robot, now: float, obs=None) -> np.ndarray | None:
        return None


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


class TeleopSource:
    """Integrates the controller's velocity commands into an end-effector target and follows it by IK.

    position += v * speed * max_linear_speed * dt, yaw += yaw_rate * speed * max_yaw_rate * dt, gripper = command;
    the target is clamped to the workspace (the robot's `reachable` when it has one, else the limits' box) and kept
    within `max_lead_m` / `max_yaw_lead` of the measured pose, so letting go stops the arm at once instead of
    letting it chase a far-away target. No command for `command_timeout_s` (or none at all) -> hold still, and the
    target restarts from the measured pose at the next command.
    """

    name = "teleop"
    record_as = "teleop"

    def __init__(
        self,
        mailbox: CommandMailbox,
        *,
        dt: float,
        command_timeout_s: float = 0.2,
        max_linear_speed: float = 0.25,  # m/s at |v| = 1, speed = 1
        max_yaw_rate: float = 1.5,  # rad/s
        max_lead_m: float = 0.05,
        max_yaw_lead: float = 0.5,
    ) -> None:
        self.mailbox = mailbox
        self.dt = dt
        self.command_timeout_s = command_timeout_s
        self.max_linear_speed = max_linear_speed
        self.max_yaw_rate = max_yaw_rate
        self.max_lead_m = max_lead_m
        self.max_yaw_lead = max_yaw_lead
        self._pos: np.ndarray | None = None
        self._yaw = 0.0
        self.applied_seq: int | None = None  # seq of the last command turned into an action
        self.fresh = False  # whether the last tick followed a live command
        self.timeouts = 0  # times a live command stream went stale (arm held)

    def activate(self, robot, task, instruction: str = "") -> None:
        self._pos = None
        self.fresh = False

    def deactivate(self) -> None:
        self._pos = None
        self.fresh = False

    def _clamp(self, robot, pos: np.ndarray) -> np.ndarray:
        reachable = getattr(robot, "reachable", None)
        if reachable is not None:
            return np.asarray(reachable(pos), dtype=np.float64)
        return np.clip(pos, robot.limits.workspace_low, robot.limits.workspace_high)

    def act(self, robot, now: float, obs=None) -> np.ndarray | None:
        cmd, t_cmd = self.mailbox.latest()
        if cmd is None or now - t_cmd > self.command_timeout_s:
            if self.fresh:
                self.timeouts += 1
            self.fresh = False
            self._pos = None  # frozen: the next command starts from wherever the arm is then
            return None
        self.fresh = True
        cur = robot.ee_target()
        if self._pos is None:
            self._pos = np.asarray(cur.position, dtype=np.float64).copy()
            self._yaw = float(cur.yaw)
        k = cmd.speed * self.dt
        pos = self._pos + np.array([cmd.vx, cmd.vy, cmd.vz]) * (k * self.max_linear_speed)
        lead = pos - cur.position
        dist = float(np.linalg.norm(lead))
        if dist > self.max_lead_m:
            pos = cur.position + lead * (self.max_lead_m / dist)
        self._pos = self._clamp(robot, pos)
        d_yaw = _wrap(self._yaw + cmd.yaw_rate * k * self.max_yaw_rate - float(cur.yaw))
        self._yaw = float(cur.yaw) + float(np.clip(d_yaw, -self.max_yaw_lead, self.max_yaw_lead))
        self.applied_seq = cmd.seq
        return robot.ee_action(EETarget(position=self._pos.copy(), yaw=self._yaw, gripper=cmd.gripper))


class ExpertSource:
    """The sim's scripted expert (`make_expert(task)`) for the current task; re-plans from the current pose on
    activation, after a reset and after an e-stop; holds its final pose when its plan is done.

    With `noise` (a backend.sim.TargetNoise) the arm executes a perturbed goal and `label` holds the clean action
    for the recorder (DART demos); without it `label` stays None and the executed action is the recorded one.
    """

    name = "expert"
    record_as = "scripted"

    def __init__(self, noise=None) -> None:
        self.expert = None
        self.noise = noise
        self.label: np.ndarray | None = None  # the action to record for this tick, when it differs from the executed

    def activate(self, robot, task, instruction: str = "") -> None:
        from backend.sim import make_expert  # the sim package is only needed when an expert is used

        self.expert = make_expert(task)
        self.expert.reset(robot)
        self.label = None

    def deactivate(self) -> None:
        self.expert = None
        self.label = None

    def act(self, robot, now: float, obs=None) -> np.ndarray | None:
        if self.expert is None:
            return None
        clean = self.expert.act(robot)
        if self.noise is None:
            return clean
        self.label = clean
        return robot.ee_action(self.noise.perturb(self.expert.last_target, 1.0 / robot.control_hz))

    def done(self, robot) -> bool:
        return self.expert is not None and self.expert.done(robot)
