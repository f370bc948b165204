"""Run every benchmark in turn (`make bench`); each writes bench/results/<name>.json with the machine it ran on.

Run them on an otherwise idle machine: they share 2 cores with whatever else is running.
"""

import importlib
import os
import sys

os.environ.setdefault("MUJOCO_GL", "egl")

BENCHMARKS = [
    "bench.bench_sim",
    "bench.bench_recording",
    "bench.bench_control",
    "bench.bench_browser",
    "bench.bench_browse",
]


def main() -> int:
    for name in BENCHMARKS:
        print(f"== {name}", flush=True)
        importlib.import_module(name).main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
