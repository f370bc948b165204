"""Record scripted-expert demonstrations into the episode store (the `demos` CLI command; the UI later)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from backend.control.recording import episode_meta_from_robot
from backend.sim import SimConfig, SimRobot, make_expert, make_task
from storage.episode_store import EpisodeStore, validate_name

# Frames kept after success is first detected, so a demo shows the object held, not a cut at the instant of success.
SETTLE_STEPS_AFTER_SUCCESS = 10


@dataclass(frozen=True)
class DemoResult:
    episode_id: int
    seed: int
    success: bool
    length: int


def check_demo_request(*, dataset: str, task_name: str, colour: str, episodes: int):
    """Raise a clear ValueError for a bad request before anything is written; returns the task instance."""
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    validate_name(dataset)
    return make_task(task_name, colour=colour)


def record_demos(
    *,
    store: EpisodeStore,
    dataset: str,
    task_name: str,
    colour: str,
    episodes: int,
    seed: int = 0,
    sim_config: SimConfig | None = None,
    operator: str = "scripted-expert",
    on_episode: Callable[[DemoResult], None] | None = None,
) -> list[DemoResult]:
    """Roll out the scripted expert for seeds seed, seed+1, ... and save each take as a `scripted` episode.

    Failed takes are saved too (auto_success=False): failures are training signal for later issues, and a manager
    should see the expert's true success rate rather than a filtered one.
    """
    task = check_demo_request(dataset=dataset, task_name=task_name, colour=colour, episodes=episodes)
    robot = SimRobot(sim_config or SimConfig())
    expert = make_expert(task)
    results = []
    for episode_seed in range(seed, seed + episodes):
        results.append(
            _record_one(
                store=store,
                dataset=dataset,
                robot=robot,
                task=task,
                expert=expert,
                seed=episode_seed,
                operator=operator,
            )
        )
        if on_episode is not None:
            on_episode(results[-1])
    return results


def _record_one(*, store, dataset, robot, task, expert, seed, operator) -> DemoResult:
    rng = np.random.default_rng(seed)
    instruction = task.instruction(rng)  # a random paraphrase: language variety for training
    observation = robot.reset(seed=seed, task=task)
    expert.reset(robot)
    meta = episode_meta_from_robot(
        robot, observation, dataset=dataset, task=task, instruction=instruction, seed=seed, source="scripted",
        operator=operator,
    )  # fmt: skip
    recorder = store.begin(meta)
    try:
        steps_since_success = None
        for _ in range(robot.config.max_episode_steps):
            action = expert.act(robot)
            recorder.add_frame(images=observation.images, state=observation.state, action=action)
            robot.apply(action)
            observation = robot.observe()
            if steps_since_success is None and robot.success():
                steps_since_success = 0
            elif steps_since_success is not None:
                steps_since_success += 1
                if steps_since_success >= SETTLE_STEPS_AFTER_SUCCESS:
                    break
        success = robot.success()
        length = recorder.num_frames
        episode_id = recorder.save(auto_success=success)
    except BaseException:
        recorder.discard()
        raise
    return DemoResult(episode_id=episode_id, seed=seed, success=success, length=length)
