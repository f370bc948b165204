"""DAgger benchmark: does retraining from corrections beat the same number of fresh demos? (issue 13, section 7)

Everything goes through the product's own services, in one fresh data folder (bench/out/dagger):

1. 10 scripted `pick` demos per colour (seeds 0 / 1000 / 2000), a snapshot, and a training job (preset "quick",
   from scratch, run by a job Worker as `run.py worker` would): the weak parent, with its calibrated threshold.
2. 20 live rollouts per colour of the parent on a RobotSession (synchronous inference, ask-for-help on), recorded.
   The scripted expert is the operator: it takes over (`take_over("expert")`, planning from where the arm is) when
   the policy asks for help, knocks the cube away, or has not lifted it after `--patience` ticks. Taken-over
   rollouts are saved as correction takes (source intervention, per-frame flags); the rest as policy episodes.
3. Retrain from the corrections: `launch_retrain` (the Models page's button): the parent's snapshot + only the
   stretches the expert drove, a fine-tuning job from the parent, same preset.
4. Control: as many fresh scripted demos as there were correction takes (same colours), the parent's snapshot +
   those, the same fine-tuning job.
5. Parent, child and control on the same 300 held-out test seeds (100 per colour, bench_vla's), Wilson intervals,
   and the gain over the parent with Newcombe's interval for a difference of two proportions.

    python -m bench.bench_dagger           # ~41 min on 2 cores; writes bench/results/dagger.json
    python -m bench.bench_dagger --quick   # ~5 min smoke check; bench/out/dagger_quick.json

Goal: child >= parent + 15 points, and child > control. Failure prediction (AUROC of the uncertainty score for
failure, on the parent's 300 test rollouts) is reported beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from bench.bench_vla import COLOUR_SEEDS, evaluate_model  # noqa: E402
from bench.machine import write_result  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
COLOURS = tuple(COLOUR_SEEDS)
ROLLOUT_SEEDS = {"red": 300_000, "green": 301_000, "blue": 302_000}  # disjoint from training, validation, test
CONTROL_SEEDS = {"red": 400_000, "green": 401_000, "blue": 402_000}  # the control's fresh demos
GOAL_GAIN = 0.15
USER = "bench-dagger"
QUICK = {"demos": 2, "rollouts": 2, "episodes": 4, "preset": "quick", "minutes": 0.5}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.bench_dagger", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--data-dir", type=Path, default=REPO / "bench/out/dagger", help="emptied first")
    p.add_argument("--demos", type=int, default=10, help="scripted demos per colour for the parent")
    p.add_argument("--rollouts", type=int, default=20, help="live rollouts per colour of the parent")
    p.add_argument("--episodes", type=int, default=100, help="test rollouts per colour per model")
    p.add_argument("--preset", default="quick", help="training preset of the three jobs")
    p.add_argument("--minutes", type=float, help="override the preset's training minutes")
    p.add_argument("--max-steps", type=int, default=200, help="steps of a test rollout")
    p.add_argument("--patience", type=int, default=110, help="ticks the expert lets the policy try before it steps in")
    p.add_argument("--correction-steps", type=int, default=160, help="ticks the expert gets after taking over")
    p.add_argument("--help-k", type=int, default=5, help="unsure predictions in a row before the policy asks")
    p.add_argument("--mode", default="corrected", choices=("corrected", "whole"), help="launch_retrain's mode")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="the job worker's torch threads")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
        args.data_dir = args.data_dir.with_name(args.data_dir.name + "_quick")
    return args


class Product:
    """The services `run.py serve` and `run.py worker` build, over one data folder."""

    def __init__(self, data_dir: Path, threads: int) -> None:
        from backend.jobs import JobQueue, Worker
        from backend.services.curation import CurationService
        from backend.services.models import ModelRegistry
        from backend.services.rollout_log import RolloutLog
        from backend.settings import Settings
        from run import open_store

        self.settings = Settings(data_dir=data_dir)
        self.store = open_store(self.settings)
        self.curation = CurationService(self.store)
        self.jobs = JobQueue(self.store.session_factory, data_dir=self.settings.data_dir)
        self.models = ModelRegistry(self.store.session_factory, self.settings.models_dir)
        self.rollouts = RolloutLog(self.store.session_factory)
        self.worker = Worker(self.jobs, self.settings, self.store, "bench-worker", threads=threads)

    def run_job(self, job) -> dict:
        """Run the queued job (and anything queued before it) as a worker process would; its result."""
        t = time.perf_counter()
        self.worker.run(once=True)
        done = self.jobs.get(job.id)
        if done.status.value != "succeeded":
            raise RuntimeError(f"job {job.id} ({done.kind}) {done.status.value}: {done.error}")
        print(f"job {job.id} ({done.kind}) done in {(time.perf_counter() - t) / 60:.1f} min: {done.result}", flush=True)
        return {**done.result, "wall_s": time.perf_counter() - t}

    def train(self, snapshot, *, preset: str, minutes: float | None, base_model: int | None, name: str) -> dict:
        from backend.jobs.train import TrainingRequest, submit_training

        options = {"minutes": minutes} if minutes else {}
        request = TrainingRequest(snapshot=snapshot.id, preset=preset, base_model=base_model, model_name=name,
                                  options=options)  # fmt: skip
        return self.run_job(submit_training(self.jobs, self.curation.snapshots, self.models, request, user=USER))


# ----------------------------------------------------------------------------------------------- 2. corrections
def knocked(robot, colour: str, start: np.ndarray) -> bool:
    """The cube slid 3+ cm on the table without being lifted: the policy pushed it away."""
    pos = robot.object_position(colour)
    return bool(np.linalg.norm(pos[:2] - start[:2]) > 0.03 and pos[2] - start[2] < 0.02)


def live_rollouts(product: Product, model_id: int, args) -> dict:
    """The parent drives each scene on a RobotSession; the scripted expert corrects it when needed (see the module
    docstring). Returns counts and the correction takes' colours."""
    from backend.control import RobotSession
    from backend.services.live_policy import install_policy
    from backend.sim import SimRobot

    robot = SimRobot()
    session = RobotSession(robot, product.store)
    session.set_rollout_sink(product.rollouts.record)
    install_policy(product.models, session, model_id=model_id, help_k=args.help_k, asynchronous=False, process=False)
    counts = {"rollouts": 0, "policy_success": 0, "takeovers": {"help": 0, "knocked": 0, "patience": 0},
              "expert_success": 0, "correction_colours": []}  # fmt: skip
    t0 = time.perf_counter()
    try:
        for colour in COLOURS:
            for i in range(args.rollouts):
                session.reset(seed=ROLLOUT_SEEDS[colour] + i, task="pick", colour=colour)
                cube = robot.object_position(colour).copy()
                session.start_recording(USER, "dagger_rollouts")
                session.set_source("policy")
                why, tick, took_over_at = None, 0, None
                while True:
                    session.step()
                    tick += 1
                    if robot.success():
                        break
                    if why is None:
                        if session.policy.help.asking:
                            why = "help"
                        elif knocked(robot, colour, cube):
                            why = "knocked"
                        elif tick >= args.patience:
                            why = "patience"
                        if why is not None:
                            session.take_over("expert")
                            took_over_at = tick
                    elif tick - took_over_at >= args.correction_steps:
                        break
                success = bool(robot.success())
                session.save_recording(success=success)
                counts["rollouts"] += 1
                if why is None:
                    counts["policy_success"] += int(success)
                else:
                    counts["takeovers"][why] += 1
                    counts["expert_success"] += int(success)
                    counts["correction_colours"].append(colour)
                session.set_source("idle")
    finally:
        session.set_policy(None)
        robot.close()
    counts["wall_s"] = time.perf_counter() - t0
    print(f"live rollouts: {counts}", flush=True)
    return counts


# ----------------------------------------------------------------------------------------------- 5. comparison
def newcombe(a: dict, b: dict) -> list[float]:
    """95% interval of b's success rate minus a's (Newcombe's hybrid score interval from the two Wilson ones)."""
    pa, (la, ua) = a["success_rate"], a["wilson_95"]
    pb, (lb, ub) = b["success_rate"], b["wilson_95"]
    d = pb - pa
    return [d - float(np.hypot(pb - lb, ua - pa)), d + float(np.hypot(ub - pb, pa - la))]


def summary(evaluation: dict, model: dict) -> dict:
    o = evaluation["overall"]
    return {"model_id": model["model_id"], "version": model["version"], "success_rate": o["success_rate"],
            "wilson_95": o["wilson_95"], "episodes": o["episodes"],
            "per_colour": {c: v["success_rate"] for c, v in evaluation["per_colour"].items()},
            "uncertainty_auroc_max": o.get("uncertainty_auroc_max"),
            "uncertainty_auroc_mean": o.get("uncertainty_auroc_mean"), "eval_wall_s": evaluation["wall_s"]}  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sys.path.insert(0, str(REPO))
    from backend.services.demos import record_demos
    from backend.services.retrain import launch_retrain

    if args.data_dir.exists():
        shutil.rmtree(args.data_dir)
    t_all = time.perf_counter()
    product = Product(args.data_dir, args.threads)
    snaps = product.curation.snapshots

    # 1. the weak parent
    for colour, base in zip(COLOURS, (0, 1000, 2000), strict=True):
        record_demos(store=product.store, dataset="dagger_base", task_name="pick", colour=colour,
                     episodes=args.demos, seed=base)  # fmt: skip
    base_snap = snaps.create("dagger-base-v1", "dagger_base", user=USER)
    parent = product.train(base_snap, preset=args.preset, minutes=args.minutes, base_model=None, name="pick")

    # 2. live rollouts, corrected by the expert
    live = live_rollouts(product, parent["model_id"], args)
    if not live["correction_colours"]:
        print("the parent never needed a correction: nothing to retrain from", file=sys.stderr)
        return 1

    # 3. retrain from the corrections (the product's button)
    snapshot, job = launch_retrain(product.jobs, product.curation, product.models, model_id=parent["model_id"],
                                   mode=args.mode, preset=args.preset, user=USER,
                                   options={"minutes": args.minutes} if args.minutes else None)  # fmt: skip
    child = product.run_job(job)

    # 4. the control: as many fresh scripted demos, same colours
    fresh = []
    for colour in COLOURS:
        n = live["correction_colours"].count(colour)
        if n:
            fresh += [r.episode_id for r in record_demos(store=product.store, dataset="dagger_control",
                                                         task_name="pick", colour=colour, episodes=n,
                                                         seed=CONTROL_SEEDS[colour])]  # fmt: skip
    control_snap = snaps.extend("dagger-control-v1", base_snap.id, fresh, user=USER,
                                description=f"the parent's snapshot + {len(fresh)} fresh scripted demos")  # fmt: skip
    control = product.train(control_snap, preset=args.preset, minutes=args.minutes, base_model=parent["model_id"],
                            name="pick-control")  # fmt: skip

    # 5. the same test seeds for all three
    results = {}
    for label, model in (("parent", parent), ("child", child), ("control", control)):
        path = product.models.get(model["model_id"]).path
        evaluation = evaluate_model(path, args.episodes, args.workers, args.max_steps)
        results[label] = summary(evaluation, model)
        print(f"{label}: {results[label]['success_rate']:.1%} {results[label]['wilson_95']}", flush=True)
    p, c, k = results["parent"], results["child"], results["control"]
    headline = {
        "parent": p["success_rate"], "child": c["success_rate"], "control": k["success_rate"],
        "gain_child": c["success_rate"] - p["success_rate"], "gain_child_95": newcombe(p, c),
        "gain_control": k["success_rate"] - p["success_rate"], "gain_control_95": newcombe(p, k),
        "child_minus_control_95": newcombe(k, c), "correction_takes": len(live["correction_colours"]),
        "failure_auroc_parent": p["uncertainty_auroc_max"],
    }  # fmt: skip
    result = {
        "argv": sys.argv[1:] if argv is None else list(argv),
        "snapshots": {
            "base": base_snap.num_episodes,
            "child": snapshot.num_episodes,
            "control": control_snap.num_episodes,
        },  # fmt: skip
        "live_rollouts": live,
        "jobs": {"parent": parent, "child": child, "control": control},
        "models": results,
        "headline": headline,
        "goals": {"gain_child": GOAL_GAIN, "child_beats_control": True},
        "goals_met": {
            "gain_child": headline["gain_child"] >= GOAL_GAIN,
            "child_beats_control": headline["child"] > headline["control"],
        },  # fmt: skip
        "bench_wall_s": time.perf_counter() - t_all,
    }
    path = write_result("dagger_quick", result, REPO / "bench/out") if args.quick else write_result("dagger", result)
    print(f"wrote {path}: {json.dumps(headline)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
