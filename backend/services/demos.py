"""Record scripted-expert demonstrations into the episode store (the `demos` CLI command; the UI later)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from backend.sim import SimConfig, SimRobot, TargetNoise, make_task
from storage.episode_store import EpisodeStore, validate_name

# Frames kept after success is first detected, so a demo shows the object held, not a cut at the instant of success.
SETTLE_STEPS_AFTER_SUCCESS = 10
# DART noise `run.py demos` records with unless told otherwise (metres; dart_noise): what the VLA benchmark's goal
# was measured on (bench/results/vla.json). 1.5 cm keeps ~11 of 12 demos successful; failed takes are saved and
# left out of training (only_successful).
DEFAULT_DEMO_NOISE_M = 0.015


@dataclass(frozen=True)
class DemoResult:
    episode_id: int
    seed: int
    success: bool
    length: int


def dart_noise(position_m: float, *, seed: int = 0) -> TargetNoise | None:
    """The DART noise of `position_m` metres (yaw noise in proportion: 1 cm goes with 0.05 rad); None for 0."""
    if position_m < 0:
        raise ValueError(f"noise must be >= 0 metres, got {position_m}")
    return TargetNoise(position_m=position_m, yaw_rad=5.0 * position_m, seed=seed) if position_m > 0 else None


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
    noise: TargetNoise | None = None,
) -> list[DemoResult]:
    """Roll out the scripted expert for seeds seed, seed+1, ... and save each take as a `scripted` episode.

    Each take is the live robot's own code run headless (backend.control.RobotSession with headless=True: the
    expert as the session's command source, its safety filter, recorder and success predicate), stepped as fast as
    the sim goes. Failed takes are saved too (auto_success=False): failures are training signal for later issues,
    and a manager should see the expert's true success rate rather than a filtered one.

    `noise` makes DART demos: the arm follows the expert's goal plus a slowly varying offset (seeded by each take's
    seed) and the take records the expert's clean action, so the data shows how to recover from small deviations.
    """
    from backend.control import RobotSession

    task = check_demo_request(dataset=dataset, task_name=task_name, colour=colour, episodes=episodes)
    robot = SimRobot(sim_config or SimConfig())
    results = []
    try:
        session = RobotSession(robot, store, control_hz=robot.control_hz, default_task=task.name,
                               default_colour=colour, headless=True, expert_noise=noise)  # fmt: skip
        for episode_seed in range(seed, seed + episodes):
            if noise is not None:
                noise.reset(episode_seed)
            results.append(_record_one(session, dataset=dataset, task=task, seed=episode_seed, operator=operator))
            if on_episode is not None:
                on_episode(results[-1])
    finally:
        robot.close()
    return results


def _record_one(session, *, dataset: str, task, seed: int, operator: str) -> DemoResult:
    """One take: the seeded scene (instruction: the task's seeded random paraphrase, for language variety), the
    expert driving from the first tick, SETTLE_STEPS_AFTER_SUCCESS more ticks once the task succeeds."""
    robot = session.robot
    session.set_source("idle")  # so that the expert is activated (plans) in the new scene
    session.reset(seed=seed, task=task.name, colour=getattr(task, "colour", None))
    session.set_source("expert")
    session.start_recording(operator, dataset)
    try:
        steps_since_success = None
        for _ in range(robot.config.max_episode_steps):
            session.step()
            if steps_since_success is None and robot.success():
                steps_since_success = 0
            elif steps_since_success is not None:
                steps_since_success += 1
                if steps_since_success >= SETTLE_STEPS_AFTER_SUCCESS:
                    break
        success = bool(robot.success())
        episode_id = session.save_recording(None)  # nobody judged it: only the automatic verdict
    except BaseException:
        if session.status()["recording"]["active"]:
            session.discard_recording()
        raise
    return DemoResult(
        episode_id=episode_id, seed=seed, success=success, length=session.store.get_episode(episode_id).length
    )
