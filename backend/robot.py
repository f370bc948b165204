"""The robot interface: what the control loop, teleop, the scripted expert and the policy talk to.

The MuJoCo sim (backend/sim) implements it; a real-arm adapter implements the same methods later, so nothing
above this line knows which one it drives.

Action space (what datasets record, as real arm datasets do): joint-position targets for the arm joints plus one
gripper command in [0, 1] (0 open, 1 closed). State: measured joint positions plus the gripper opening in [0, 1].
End-effector commands (teleop keys, scripted waypoints) are turned into that joint action by the robot's own
differential IK (`ee_action`), so every command source emits the same action space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Observation:
    images: dict[str, np.ndarray]  # camera name -> (H, W, 3) uint8 RGB
    state: np.ndarray  # (D_state,) float32: joint positions (rad) + gripper opening [0, 1]
    timestamp: float  # seconds since reset
    # Training-only per-step signals a simulator can give (storage.features.grounding_key(camera): the instructed
    # object's (x, y) in that image); recorded with the frame, never fed to a policy. A real robot gives none.
    signals: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class EETarget:
    """An absolute end-effector goal in the robot base frame."""

    position: np.ndarray  # (3,) metres
    yaw: float  # radians about the vertical axis, gripper pointing down
    gripper: float  # 0 open .. 1 closed


@dataclass(frozen=True)
class RobotLimits:
    joint_low: np.ndarray  # (D_action,) lower bound of each action component (gripper included)
    joint_high: np.ndarray  # (D_action,)
    max_joint_speed: np.ndarray  # (D_action,) per second
    workspace_low: np.ndarray  # (3,) end-effector box, metres
    workspace_high: np.ndarray  # (3,)
    extra: dict = field(default_factory=dict)


@runtime_checkable
class Robot(Protocol):
    camera_names: tuple[str, ...]
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]
    control_hz: int
    limits: RobotLimits

    def reset(self, seed: int, task) -> Observation:
        """Start an episode of `task` (a registered task instance) with a seeded scene."""

    def observe(self) -> Observation:
        """Render every camera and read the state."""

    def apply(self, action: np.ndarray) -> None:
        """Command joint targets + gripper, (D_action,), and advance one control period."""

    def ee_target(self) -> EETarget:
        """The current end-effector pose and gripper command."""

    def ee_action(self, target: EETarget) -> np.ndarray:
        """Differential IK: the joint action, (D_action,), that moves the end effector toward `target`."""

    def success(self) -> bool:
        """Whether the current task's success predicate holds now."""

    def forward_kinematics(self, action: np.ndarray) -> np.ndarray:
        """(3,) end-effector position, metres in the base frame, that the joint targets `action` (D_action,) would
        put the tool at (the safety filter's workspace check). Pure: the robot does not move."""

    def project(self, points: np.ndarray, camera: str) -> np.ndarray:
        """(N, 2) positions of world points (N, 3) in `camera`'s image as fractions of width and height (NaN behind
        the camera): the console draws the policy's planned path with it. Optional (a robot without calibrated
        cameras leaves it out and the path is not drawn)."""
