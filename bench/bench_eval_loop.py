"""What running evaluation on the headless RobotSession costs, against the plain loop it replaced.

Side by side in one process, alternating seed by seed (A B A B), the same saved model: the plain loop evaluation had
before (observe -> select_action -> robot.apply) and backend.services.evaluation.run_episode (a tick of a headless
RobotSession: safety filter with forward kinematics, rollout tracking, no JPEG). Reports the median time per step of
each, their ratio, and how many rollouts ended differently (the live safety filter at work).

    python -m bench.bench_eval_loop --model-dir bench/out/dagger/models/pick/v2 --seeds 20
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from bench.machine import write_result  # noqa: E402


def plain_episode(policy, robot, *, colour: str, seed: int, max_steps: int) -> tuple[bool, int]:
    """The loop before evaluation ran on the session."""
    import torch

    from backend.services.evaluation import _policy_obs
    from backend.sim import make_task

    task = make_task("pick", colour)
    obs = robot.reset(seed=seed, task=task)
    instruction = task.instruction(None)
    policy.reset()
    for steps in range(1, max_steps + 1):
        with torch.inference_mode():
            action = policy.select_action(_policy_obs(obs, tuple(policy.config.cameras)), instruction)
        robot.apply(np.asarray(action, dtype=np.float32).reshape(-1))
        if robot.success():
            return True, steps
        obs = robot.observe()
    return False, max_steps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_eval_loop", description=__doc__)
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--seeds", type=int, default=20, help="test seeds per colour")
    p.add_argument("--max-steps", type=int, default=200)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    import torch

    from backend.services.evaluation import headless_session, run_episode
    from backend.sim import SimConfig, SimRobot
    from vla_core.policies import load_policy

    torch.set_num_threads(1)  # as evaluation runs (EvalConfig.num_threads)
    policy = load_policy(args.model_dir).eval()
    robot = SimRobot(SimConfig(image_size=int(policy.config.image_size), cameras=tuple(policy.config.cameras)))
    session = headless_session(robot)
    per_step = {"plain": [], "session": []}
    outcomes = {"plain": [], "session": []}
    try:
        for colour, base in (("red", 100_000), ("green", 101_000), ("blue", 102_000)):
            for seed in range(base, base + args.seeds):
                t = time.perf_counter()
                ok, steps = plain_episode(policy, robot, colour=colour, seed=seed, max_steps=args.max_steps)
                per_step["plain"].append((time.perf_counter() - t) / steps)
                outcomes["plain"].append((ok, steps))
                t = time.perf_counter()
                r = run_episode(policy, robot, task_name="pick", colour=colour, seed=seed, max_steps=args.max_steps,
                                session=session)  # fmt: skip
                per_step["session"].append((time.perf_counter() - t) / r.steps)
                outcomes["session"].append((r.success, r.steps))
    finally:
        robot.close()
    med = {k: float(np.median(v)) * 1e3 for k, v in per_step.items()}
    differ = [i for i, (a, b) in enumerate(zip(outcomes["plain"], outcomes["session"], strict=True)) if a != b]
    result = {
        "model": str(args.model_dir),
        "rollouts_each": len(outcomes["plain"]),
        "ms_per_step_median": med,
        "session_over_plain": med["session"] / med["plain"],
        "successes": {k: int(sum(ok for ok, _ in v)) for k, v in outcomes.items()},
        "rollouts_ending_differently": len(differ),
        "same_success_differently_long": sum(outcomes["plain"][i][0] == outcomes["session"][i][0] for i in differ),
        "safety_filter_counts": dict(session.safety.counts),
    }
    path = write_result("eval_loop", result)
    print(f"wrote {path}: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
