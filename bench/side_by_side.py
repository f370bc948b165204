"""Run benchmarks on an earlier commit and on this tree, alternating, in one session: a refactor's before/after.

    .venv/bin/python -m bench.side_by_side --ref fa5b6e2 [--rounds 2] [--bench control browse]

The earlier commit is checked out into a temporary git worktree and run with this tree's .venv (the working
directory comes first on sys.path, so each run imports its own tree's packages). Runs alternate A, B, A, B so a
noisy neighbour hits both sides alike; the figures compared are medians over rounds. Writes
bench/results/side_by_side.json (and each run's own result file in its tree, as usual).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.machine import write_result

REPO_ROOT = Path(__file__).resolve().parent.parent

# Each benchmark: its command-line arguments and the figures worth comparing, read from its result JSON.
BENCHES = {
    "control": {
        "args": ["--seconds", "20", "--subscribers", "1", "10"],
        "figures": lambda r: {
            f"{s['subscribers']} viewers: {key}": s[key]
            for s in r["scenarios"]
            for key in (
                "loop_fps",
                "dropped_ticks",
                "tick_ms_p50",
                "tick_ms_p95",
                "command_to_frame_ms_p50",
                "command_to_frame_ms_p95",
                "cpu_percent_of_one_core",
            )  # fmt: skip
        },
    },
    "browse": {
        "args": ["--episodes", "10000", "--repeats", "30"],
        "figures": lambda r: {
            **{f"{name}: p95_ms": q["p95_ms"] for name, q in r["api_pages_limit_50"].items()},
            **{f"{name}: median_ms": q["median_ms"] for name, q in r["api_pages_limit_50"].items()},
            "worst_api_p95_ms": r["worst_api_p95_ms"],
        },
    },
}


def run_once(tree: Path, name: str) -> dict:
    """One run of bench.<name> inside `tree`; returns the figures from the JSON it wrote there."""
    env = {**os.environ, "PYTHONPATH": str(tree), "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    subprocess.run([sys.executable, "-m", f"bench.bench_{name}", *BENCHES[name]["args"]], cwd=tree, env=env,
                   check=True)  # fmt: skip
    result = json.loads((tree / "bench" / "results" / f"{name}.json").read_text())
    return BENCHES[name]["figures"](result)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="the earlier commit (the 'before')")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bench", nargs="+", default=list(BENCHES), choices=list(BENCHES))
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", args.ref], cwd=REPO_ROOT, check=True, capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip
    summary: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_before_") as tmp:
        before = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(before), commit], cwd=REPO_ROOT, check=True)
        try:
            for name in args.bench:
                runs: dict[str, list[dict]] = {"before": [], "after": []}
                for _ in range(args.rounds):
                    runs["before"].append(run_once(before, name))
                    runs["after"].append(run_once(REPO_ROOT, name))
                summary[name] = {
                    key: {
                        "before_median": statistics.median(r[key] for r in runs["before"]),
                        "after_median": statistics.median(r[key] for r in runs["after"]),
                        "before_runs": [r[key] for r in runs["before"]],
                        "after_runs": [r[key] for r in runs["after"]],
                    }
                    for key in runs["after"][0]
                    if key in runs["before"][0]
                }
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=REPO_ROOT, check=False)
    result = {"before": commit, "after": head, "rounds": args.rounds, "benchmarks": summary}
    for name, figures in summary.items():
        print(f"== {name}")
        for key, f in figures.items():
            print(f"  {key:60s} before {f['before_median']:>9.2f} after {f['after_median']:>9.2f}")
    print(f"wrote {write_result('side_by_side', result)}")
    return result


if __name__ == "__main__":
    main()
