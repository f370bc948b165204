"""Closed-loop success of a saved checkpoint in the sim, on given seeds, over worker processes.

Checkpoint selection (backend/training.py) rolls out several checkpoints of one run: a pool of worker processes is
started once and kept for the run (each spawn imports torch and MuJoCo and opens a GL context: seconds), every
worker renders with one torch thread (batch-1 inference is latency-bound, and on 2 cores one thread per process
with two processes measured about twice the rollouts per second of one process: bench/bench_vla.py), and the
seeds go out in small chunks so a cancel is noticed within a chunk (a few episodes), not after a whole checkpoint.
Each episode is backend/services/evaluation.run_episode: the same rollout `run.py eval` and the benchmark run.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

from storage.episode_store import EpisodeInfo

if TYPE_CHECKING:
    from backend.sim import SimRobot

__all__ = ["RolloutScore", "SimRolloutScorer", "sim_compatibility"]

CHUNK = 5  # episodes per task sent to a worker at a time


@dataclass(frozen=True)
class RolloutScore:
    successes: int
    episodes: int
    per_group: dict[str, list[int]]  # {"pick/red": [successes, episodes]}
    mean_steps: float
    wall_s: float


def sim_compatibility(infos: Sequence[EpisodeInfo]) -> str | None:
    """None when the sim can replay every episode's task (a registered task and colour, the sim arm's joints and
    cameras); otherwise why not, naming the first episode that does not fit."""
    from backend.sim import CAMERAS, COLOURS, SimConfig, SimRobot, list_tasks

    robot = SimRobot(SimConfig(cameras=()))  # its joint names; no renderer needed
    state_names, action_names = list(robot.state_names), list(robot.action_names)
    robot.close()
    tasks = set(list_tasks())
    for info in infos:
        colour = info.extra.get("colour")
        if info.task not in tasks:
            return f"episode {info.id}'s task {info.task!r} is not a sim task ({', '.join(sorted(tasks))})"
        if colour not in COLOURS:
            return f"episode {info.id} names no sim colour (got {colour!r})"
        if list(info.state_names) != state_names or list(info.action_names) != action_names:
            return f"episode {info.id} was recorded on another robot (joints {info.state_names}, not the sim arm's)"
        unknown = sorted({c.name for c in info.cameras} - set(CAMERAS))
        if unknown:
            return f"episode {info.id} has camera(s) {', '.join(unknown)} the sim does not render"
    return None


class SimRolloutScorer:
    """`scorer(model_dir)`: every group's seeds rolled out with the policy saved in `model_dir`.

    Args:
        seeds: {"task/colour": [seed, ...]}.
        workers: processes (spawned once, at the first call); 0 runs the episodes in this process.
        max_steps: per episode.
        should_stop: polled while the episodes run; True abandons the checkpoint (the call returns None).

    The workers are spawned, so they import the caller's main module: a script that uses this scorer (directly or
    through `train_and_select`) needs an `if __name__ == "__main__":` guard, or every worker re-runs the script.
    """

    def __init__(
        self,
        seeds: Mapping[str, Sequence[int]],
        *,
        workers: int,
        max_steps: int,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.seeds = {k: list(v) for k, v in seeds.items()}
        self.workers, self.max_steps, self.should_stop = workers, max_steps, should_stop
        self._pool: cf.ProcessPoolExecutor | None = None

    def __call__(self, model_dir: Path) -> RolloutScore | None:
        t0 = time.perf_counter()
        jobs = [(g, seeds[i : i + CHUNK]) for g, seeds in self.seeds.items() for i in range(0, len(seeds), CHUNK)]
        results: dict[str, list[tuple[bool, int]]] = {group: [] for group in self.seeds}
        if self.workers == 0:
            for group, chunk in jobs:
                if self.should_stop is not None and self.should_stop():
                    return None
                results[group] += rollout_chunk(str(model_dir), group, chunk, self.max_steps)
        else:
            pool = self._ensure_pool()
            futures = {pool.submit(rollout_chunk, str(model_dir), group, chunk, self.max_steps): group
                       for group, chunk in jobs}  # fmt: skip
            pending = set(futures)
            while pending:
                done, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    results[futures[fut]] += fut.result()
                if pending and self.should_stop is not None and self.should_stop():
                    for fut in pending:
                        fut.cancel()
                    return None
        outcomes = [o for group in results.values() for o in group]
        return RolloutScore(
            successes=sum(ok for ok, _ in outcomes),
            episodes=len(outcomes),
            per_group={g: [sum(ok for ok, _ in r), len(r)] for g, r in results.items()},
            mean_steps=sum(steps for _, steps in outcomes) / max(len(outcomes), 1),
            wall_s=time.perf_counter() - t0,
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        _close_robots()

    def _ensure_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                max_workers=self.workers, mp_context=get_context("spawn"), initializer=_init_worker
            )
        return self._pool


# ----------------------------------------------------------------------------------------------- worker side
_ROBOTS: dict[tuple[int, tuple[str, ...]], SimRobot] = {}  # this process's sims, by (image size, cameras)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def rollout_chunk(model_dir: str, group: str, seeds: Sequence[int], max_steps: int) -> list[tuple[bool, int]]:
    """(success, steps) of each seed's episode of `group` ("task/colour") with the policy saved in `model_dir`."""
    import torch

    from backend.services.evaluation import headless_session, run_episode
    from backend.sim import SimConfig, SimRobot
    from vla_core.policies import load_policy

    task, colour = group.split("/")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # in-process too: see the module docstring
    try:
        policy = load_policy(model_dir)
        key = (int(policy.config.image_size), tuple(policy.config.cameras))
        if key not in _ROBOTS:
            _ROBOTS[key] = SimRobot(SimConfig(image_size=key[0], cameras=key[1]))
        robot = _ROBOTS[key]
        session = headless_session(robot)
        out = []
        for seed in seeds:
            r = run_episode(policy, robot, task_name=task, colour=colour, seed=int(seed), max_steps=max_steps,
                            session=session)  # fmt: skip
            out.append((bool(r.success), int(r.steps)))
        return out
    finally:
        torch.set_num_threads(threads)


def _close_robots() -> None:
    for robot in _ROBOTS.values():
        robot.close()
    _ROBOTS.clear()
