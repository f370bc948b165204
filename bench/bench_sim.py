"""Sim benchmark: physics steps/s, render ms per camera frame, scripted-expert success with 95% Wilson intervals.

Run from the repo root: `.venv/bin/python -m bench.bench_sim [--seeds 100] [--size 224]`; writes bench/results/sim.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from backend.sim import COLOURS, SimConfig, SimRobot, list_tasks, make_expert, make_task  # noqa: E402
from bench.machine import machine_info, write_result  # noqa: E402
from vla_core.metrics import percentile, wilson_interval  # noqa: E402


def machine() -> dict:
    return {
        **machine_info(),
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "mujoco": mujoco.__version__,
        "numpy": np.__version__,
        "mujoco_gl": os.environ.get("MUJOCO_GL"),
    }


def bench_physics(runs: int = 5, steps: int = 20000) -> dict:
    robot = SimRobot(SimConfig(cameras=()))
    robot.reset_state(0, make_task("pick"))
    rates = []
    for _ in range(runs):
        t = time.perf_counter()
        mujoco.mj_step(robot.model, robot.data, nstep=steps)
        rates.append(steps / (time.perf_counter() - t))
    # Whole control periods (IK + substeps + forward), what a rollout without rendering costs.
    robot.reset_state(0, make_task("pick"))
    expert = make_expert(robot.task)
    expert.reset(robot)
    control = []
    for _ in range(runs):
        robot.reset_state(0, make_task("pick"))
        expert.reset(robot)
        t = time.perf_counter()
        for _ in range(60):
            robot.apply(expert.act(robot))
        control.append(60 / (time.perf_counter() - t))
    return {
        "physics_steps_per_s_median": statistics.median(rates),
        "physics_steps_per_s_runs": rates,
        "timestep_s": robot.model.opt.timestep,
        "substeps_per_control": robot.n_substeps,
        "control_steps_per_s_median_no_render": statistics.median(control),
        "nbody": robot.model.nbody,
        "ngeom": robot.model.ngeom,
        "nv": robot.model.nv,
    }


def bench_render(size: int = 224, frames: int = 100) -> dict:
    robot = SimRobot(SimConfig(image_size=size))
    robot.reset(0, make_task("pick"))
    renderer = robot._get_renderer()
    out = {}
    for cam in robot.camera_names:
        for _ in range(5):  # warm-up: first frames upload textures
            renderer.update_scene(robot.data, camera=cam)
            renderer.render()
        ms = []
        for _ in range(frames):
            t = time.perf_counter()
            renderer.update_scene(robot.data, camera=cam)
            renderer.render()
            ms.append(1000 * (time.perf_counter() - t))
        out[cam] = {"median_ms": statistics.median(ms), "p95_ms": percentile(ms, 95)}
    t = time.perf_counter()
    for _ in range(frames // 2):
        robot.observe()
    out["observe_all_cameras_ms"] = 1000 * (time.perf_counter() - t) / (frames // 2)
    out["size"] = [size, size]
    robot.close()
    return out


def bench_expert(seeds: int = 100, max_steps: int = 300) -> dict:
    robot = SimRobot(SimConfig(cameras=()))
    out = {}
    for name in list_tasks():
        per_colour, lengths, failures = {}, [], []
        t = time.perf_counter()
        for colour in COLOURS:
            wins = 0
            for seed in range(seeds):
                task = make_task(name, colour)
                robot.reset_state(seed, task)
                expert = make_expert(task)
                expert.reset(robot)
                for step in range(1, max_steps + 1):
                    robot.apply(expert.act(robot))
                    if robot.success():
                        wins += 1
                        lengths.append(step)
                        break
                else:
                    failures.append([colour, seed])
            lo, hi = wilson_interval(wins, seeds)
            per_colour[colour] = {"success": wins, "n": seeds, "rate": wins / seeds, "wilson95": [lo, hi]}
        total = sum(c["success"] for c in per_colour.values())
        n = seeds * len(COLOURS)
        lo, hi = wilson_interval(total, n)
        out[name] = {
            "success": total,
            "n": n,
            "rate": total / n,
            "wilson95": [lo, hi],
            "per_colour": per_colour,
            "steps_to_success_median": statistics.median(lengths) if lengths else None,
            "seconds_to_success_median": statistics.median(lengths) / robot.control_hz if lengths else None,
            "failures": failures,
            "wall_s": time.perf_counter() - t,
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=100, help="seeds per task and colour")
    ap.add_argument("--size", type=int, default=224, help="square render size")
    args = ap.parse_args(argv)

    result = {
        "bench": "sim",
        "machine": machine(),
        "physics": bench_physics(),
        "render": bench_render(args.size),
        "expert": bench_expert(args.seeds),
    }
    out = write_result("sim", result)

    m, p, r = result["machine"], result["physics"], result["render"]
    print(f"machine   {m['cpu_model']} x{m['nproc']}, python {m['python']}, mujoco {m['mujoco']}")
    print(
        f"physics   {p['physics_steps_per_s_median']:,.0f} steps/s (dt {p['timestep_s']} s); "
        f"{p['control_steps_per_s_median_no_render']:,.0f} control steps/s without rendering"
    )
    for cam in (c for c in r if isinstance(r[c], dict)):
        print(
            f"render    {cam:<6} {r['size'][0]}x{r['size'][1]}: median {r[cam]['median_ms']:.2f} ms, "
            f"p95 {r[cam]['p95_ms']:.2f} ms"
        )
    print(f"render    observe() all cameras: {r['observe_all_cameras_ms']:.2f} ms")
    print(f"{'task':<8}{'colour':<8}{'success':>10}{'rate':>8}  wilson95")
    for name, e in result["expert"].items():
        for colour, c in e["per_colour"].items():
            print(
                f"{name:<8}{colour:<8}{c['success']:>6}/{c['n']:<3}{c['rate']:>8.2f}  "
                f"[{c['wilson95'][0]:.3f}, {c['wilson95'][1]:.3f}]"
            )
        print(
            f"{name:<8}{'all':<8}{e['success']:>6}/{e['n']:<3}{e['rate']:>8.2f}  "
            f"[{e['wilson95'][0]:.3f}, {e['wilson95'][1]:.3f}]  "
            f"median {e['seconds_to_success_median']:.2f} s to success"
        )
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
