"""Evaluation suites on models already trained by bench_vla, without re-running its test seeds (e.g. a suite added
after the run). Writes bench/results/<name>.json.

    python -m bench.bench_suites --suites edge --models bench/out/vla_v3/seed_0 bench/out/vla_v3/seed_1 \
        bench/out/vla_v3/seed_2 --episodes 10 --name vla_edge
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

from bench.bench_vla import evaluate_model  # noqa: E402
from bench.machine import write_result  # noqa: E402

KEYS = ("success_rate", "successes", "episodes", "wilson_95", "grounding_rate", "attention_mass", "wrong_object_rate",
        "occlusion")  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_suites", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--suites", nargs="+", required=True, help="names in backend.services.eval_suites")
    p.add_argument("--models", nargs="+", type=Path, required=True, help="saved policy folders")
    p.add_argument("--episodes", type=int, default=10, help="rollouts per colour per suite")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--name", default="vla_suites", help="bench/results/<name>.json")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    from backend.services.eval_suites import get_suite

    result: dict = {"argv": sys.argv[1:] if argv is None else list(argv), "suites": {}}
    for name in args.suites:
        suite = get_suite(name)
        runs = []
        for model in args.models:
            r = evaluate_model(model, args.episodes, args.workers, args.max_steps, dict(suite.seed_bases),
                               suite.to_dict())  # fmt: skip
            runs.append({"model": str(model), **{k: r["overall"].get(k) for k in KEYS}, "wall_s": r["wall_s"]})
            o = r["overall"]
            print(f"{name} {model}: {o['successes']}/{o['episodes']} {[round(x, 3) for x in o['wilson_95']]}, "
                  f"wrong object {o['wrong_object_rate']:.1%}", flush=True)  # fmt: skip
        result["suites"][name] = {"suite": suite.to_dict(), "runs": runs}
    print(write_result(args.name, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
