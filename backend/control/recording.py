"""What an episode recorded from a robot says about itself: one rule for every recorder (the console's RobotSession
and the scripted demos), so episodes from either carry the same fields, read the same way."""

from __future__ import annotations

from typing import Any

from backend.robot import Observation, Robot
from storage.episode_store import CameraSpec, EpisodeMeta


def episode_meta_from_robot(
    robot: Robot,
    observation: Observation,
    *,
    dataset: str,
    task: Any,
    instruction: str,
    seed: int | None,
    source: str,
    operator: str | None,
    extra: dict[str, Any] | None = None,
) -> EpisodeMeta:
    """The EpisodeMeta of a take that starts at `observation` of `robot` running `task` (a registered task instance).

    Cameras get their sizes from the observation's images (what is recorded), fps is the robot's control rate (one
    frame per control period), and extra always names the task's colour; `extra` adds recorder-specific fields.
    """
    cameras = [CameraSpec(name, *observation.images[name].shape[:2]) for name in robot.camera_names]
    return EpisodeMeta(
        dataset=dataset,
        task=task.name,
        instruction=instruction,
        source=source,
        fps=robot.control_hz,
        cameras=cameras,
        state_names=list(robot.state_names),
        action_names=list(robot.action_names),
        operator=operator,
        seed=seed,
        extra={"colour": getattr(task, "colour", None), **(extra or {})},
    )
