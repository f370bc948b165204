"""Failure prediction from the policy's uncertainty, on closed-loop rollouts (issue 13, section 7).

A saved model is rolled out on the 300 held-out test seeds (100 per colour, bench_vla's), as evaluation and the live
console run it (a headless RobotSession, one select_action per tick). From each rollout's per-prediction scores:

- AUROC of the rollout's max / mean score for failure (goal >= 0.80);
- the share of predictions above the calibrated threshold on successful rollouts, against the α it was calibrated
  for (the 95th percentile of held-out successful frames: α = 5% per prediction);
- what the console's ask-for-help monitor (backend.control.policy_source.HelpMonitor, k unsure predictions in a
  row) would have done: the share of successful rollouts it would have interrupted (false alarms) and of failed
  ones it flagged, and how early (the prediction of the first request, as a fraction of the rollout); the same two
  rates for other k (K_SWEEP).

    python -m bench.bench_failure_prediction --model-dir bench/out/dagger/models/pick/v2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from bench.bench_vla import COLOUR_SEEDS, _eval_worker  # noqa: E402
from bench.machine import write_result  # noqa: E402

QUANTILE = 0.95  # vla_core.metrics.calibrate_threshold's default: the trainer's calibration
K_SWEEP = (1, 3, 5, 10, 20, 40)  # the monitor's k, for the trade-off between interruptions and detections
GOAL_AUROC = 0.80


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.bench_failure_prediction", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model-dir", type=Path, required=True, help="a save_pretrained folder (a registry version)")
    p.add_argument("--episodes", type=int, default=100, help="test rollouts per colour")
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--help-k", type=int, default=5, help="the monitor's unsure predictions in a row")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--result-name", default="failure_prediction")
    return p.parse_args(argv)


def rollouts(model_dir: Path, episodes: int, workers: int, max_steps: int) -> list:
    """EpisodeResults (with their per-prediction scores) of every test seed, over `workers` processes."""
    jobs = []
    for colour, base in COLOUR_SEEDS.items():
        seeds = list(range(base, base + episodes))
        jobs += [(colour, seeds[w::workers]) for w in range(workers) if seeds[w::workers]]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_eval_worker, str(model_dir), colour, seeds, max_steps) for colour, seeds in jobs]
        return [r for f in futures for r in f.result()]


def first_request(scores: list[float], threshold: float, k: int) -> int | None:
    """Index of the prediction at which the console's monitor would ask for help (None: never)."""
    from backend.control.policy_source import HelpMonitor

    monitor = HelpMonitor(threshold, k=k)
    for i, s in enumerate(scores):
        if monitor.observe(s):
            return i
    return None


def analyse(results: list, threshold: float | None, k: int) -> dict:
    from vla_core.metrics import auroc

    failed = [not r.success for r in results]
    out = {
        "rollouts": len(results),
        "failures": int(sum(failed)),
        "auroc_max": auroc([r.max_uncertainty for r in results], failed),
        "auroc_mean": auroc([r.mean_uncertainty for r in results], failed),
        "threshold": threshold,
    }
    if threshold is None:
        return out
    ok = [r for r in results if r.success]
    bad = [r for r in results if not r.success]
    above = [s > threshold for r in ok for s in r.uncertainties]
    out["share_above_threshold_on_successes"] = float(np.mean(above)) if above else None
    out["alpha"] = 1 - QUANTILE
    asks_ok = [first_request(r.uncertainties, threshold, k) for r in ok]
    asks_bad = [first_request(r.uncertainties, threshold, k) for r in bad]
    out["help_k"] = k
    out["false_alarm_rate"] = float(np.mean([a is not None for a in asks_ok])) if ok else None
    out["failures_flagged"] = float(np.mean([a is not None for a in asks_bad])) if bad else None
    early = [a / max(r.predictions, 1) for a, r in zip(asks_bad, bad, strict=True) if a is not None]
    out["flag_at_fraction_of_failed_rollout_median"] = float(np.median(early)) if early else None
    out["k_sweep"] = [
        {"k": kk,
         "false_alarm_rate": float(np.mean([first_request(r.uncertainties, threshold, kk) is not None for r in ok]))
         if ok else None,
         "failures_flagged": float(np.mean([first_request(r.uncertainties, threshold, kk) is not None for r in bad]))
         if bad else None}
        for kk in K_SWEEP
    ]  # fmt: skip
    return out


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from vla_core.policies import load_policy

    threshold = getattr(load_policy(args.model_dir).config, "uncertainty_threshold", None)
    t = time.perf_counter()
    results = rollouts(args.model_dir, args.episodes, args.workers, args.max_steps)
    result = {"model": str(args.model_dir), "argv": sys.argv[1:] if argv is None else list(argv),
              "success_rate": float(np.mean([r.success for r in results])), "wall_s": time.perf_counter() - t,
              "steps": int(sum(r.steps for r in results)), **analyse(results, threshold, args.help_k)}  # fmt: skip
    result["goals"] = {"auroc": GOAL_AUROC}
    result["goals_met"] = {"auroc": max(result["auroc_max"] or 0, result["auroc_mean"] or 0) >= GOAL_AUROC}
    path = write_result(args.result_name, result)
    print(f"wrote {path}: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
