"""Gymnasium wrapper around SimRobot: Dict(images, state) observations, (7,) joint-position actions."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from backend.robot import Observation
from backend.sim.physics import COLOURS
from backend.sim.sim_robot import SimConfig, SimRobot
from backend.sim.tasks import make_task

ENV_ID = "VLADashboard/TableTop-v0"


class TableTopEnv(gym.Env):
    """One language-conditioned table-top task per episode.

    Observation: {"images": {camera: (H, W, 3) uint8}, "state": (7,) float32}. Action: (7,) float32 joint targets +
    gripper, bounded by `robot.limits`. Reward 1.0 and `terminated` on success; `truncated` at
    `config.max_episode_steps`. `reset(options={"task": "place", "colour": "blue"})` picks the task; without a
    colour one is drawn from the env's seeded generator. `info["instruction"]` holds the language command.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        task: str = "pick",
        colour: str | None = None,
        config: SimConfig | None = None,
        render_mode: str | None = None,
    ):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        make_task(task, colour or COLOURS[0])  # validate early: unknown names raise here
        self.robot = SimRobot(config)
        self.config = self.robot.config
        self.render_mode = render_mode
        self.task_name, self.colour = task, colour
        self.metadata = {**self.metadata, "render_fps": self.robot.control_hz}
        h, w = self.config.image_hw
        lim = self.robot.limits
        self.action_space = spaces.Box(lim.joint_low, lim.joint_high, dtype=np.float32)
        margin = np.float32(0.5)  # measured joints may overshoot the command range a little
        self.observation_space = spaces.Dict(
            {
                "images": spaces.Dict(
                    {cam: spaces.Box(0, 255, (h, w, 3), dtype=np.uint8) for cam in self.robot.camera_names}
                ),
                "state": spaces.Box(lim.joint_low - margin, lim.joint_high + margin, dtype=np.float32),
            }
        )
        self._steps = 0

    def _obs(self, o: Observation) -> dict[str, Any]:
        return {"images": dict(o.images), "state": o.state}

    def _info(self) -> dict[str, Any]:
        task = self.robot.task
        return {
            "task": task.name,
            "colour": task.colour,
            "instruction": self.robot.instruction,
            "is_success": self.robot.success(),
            "seed": self.robot.seed,
            **task.info(self.robot.physics),
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        name = options.get("task", self.task_name)
        colour = options.get("colour", self.colour)
        if colour is None:
            colour = COLOURS[int(self.np_random.integers(len(COLOURS)))]
        task = make_task(name, colour)
        episode_seed = int(self.np_random.integers(2**31 - 1))
        obs = self.robot.reset(episode_seed, task)
        self._steps = 0
        return self._obs(obs), self._info()

    def step(self, action):
        self.robot.apply(np.asarray(action, dtype=np.float32))
        self._steps += 1
        obs = self.robot.observe()
        success = self.robot.success()
        truncated = not success and self._steps >= self.config.max_episode_steps
        return self._obs(obs), float(success), success, truncated, self._info()

    def render(self):
        if self.render_mode == "rgb_array":
            return self.robot.render(self.robot.camera_names[0] if self.robot.camera_names else "front")
        return None

    def close(self):
        self.robot.close()


def register() -> None:
    """Register `ENV_ID` with gymnasium (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="backend.sim.gym_env:TableTopEnv")


register()
