"""Real `run.py worker` (and `run.py serve`) processes for the crash and restart tests: the environment that points
them at a throwaway data dir with tests/backend/jobs_test_plugin.py loaded, starting them with their output in a log
file, and waiting on a condition with a deadline that is a safety net for a hung process, never a timing claim."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jobs_test_plugin

from backend.jobs import job_dir

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 120


def worker_env(data_dir: Path, url: str | None = None, *, stale_after_s: float, heartbeat_s: float = 0.1) -> dict:
    """Workers on `data_dir` (its SQLite file unless `url`), one thread per job, the test job kind loaded."""
    env = {
        **os.environ,
        "VLA_DATA_DIR": str(data_dir),
        "VLA_JOB_PLUGINS": jobs_test_plugin.__name__,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(Path(jobs_test_plugin.__file__).parent), os.environ.get("PYTHONPATH")) if p
        ),
        "VLA_JOB_HEARTBEAT_S": str(heartbeat_s),
        "VLA_JOB_STALE_AFTER_S": str(stale_after_s),
        "VLA_WORKER_THREADS": "1",
    }
    if url is None:
        env.pop("VLA_DATABASE_URL", None)
    else:
        env["VLA_DATABASE_URL"] = url
    return env


def start(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen:
    """`python run.py <args>` in the repository root, stdout and stderr appended to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "run.py", *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def start_worker(env: dict[str, str], name: str, *args: str, log: Path) -> subprocess.Popen:
    return start(env, "worker", "--name", name, *args, log=log)


def wait_for(predicate: Callable[[], bool], what: str, logs: list[Path], *, poll_s: float = 0.05) -> None:
    """Poll until `predicate()`; past DEADLINE_S fail with the tail of every log."""
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        if time.monotonic() > deadline:
            text = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.exists())
            raise AssertionError(f"timed out waiting for {what}\n{text}")
        time.sleep(poll_s)


def runs(data_dir: Path, job_id: int) -> list[tuple[int, int]]:
    """(pid, first step) of every attempt at a test.sleep job, from its runs.log."""
    lines = (job_dir(data_dir, job_id) / "runs.log").read_text().splitlines()
    return [(int(pid), int(step)) for pid, step in (line.split() for line in lines)]
