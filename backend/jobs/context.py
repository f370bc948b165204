"""What a job handler gets: its job, its folder, a log, progress reporting and the stop signal.

    def handler(ctx: JobContext) -> dict:
        for step in range(start, total):
            if ctx.should_stop():        # cancel requested, heartbeat lost, or the worker shutting down
                raise JobStopped()       # (or return early: the worker decides what a stop means)
            ...
            ctx.report(step / total, f"step {step}/{total}")
        return {"model": "..."}          # references only, stored in Job.result

Once should_stop() is True, however the handler ends counts as a stop, not a success: ``train(cfg)`` returns
normally when told to stop, with a model that is not finished. The worker records it as cancelled (the result
kept) or hands it back to the queue (the worker is shutting down).

The folder (``<data dir>/jobs/<id>/``) is the same for every attempt, so a job re-queued after its worker died, or
resumed after a cancel, finds its checkpoints there. ``report`` only stores the numbers; the worker's heartbeat
thread writes them to the database (at most a few times a second), so a handler may call it every step.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Literal

from backend.jobs.queue import LOG_NAME, METRICS_NAME, JobInfo, job_dir
from backend.settings import Settings

StopReason = Literal["cancel", "lost", "shutdown"]
_LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class JobStopped(Exception):
    """A handler stopped early because should_stop() said so (not a failure: the job is cancelled or re-queued)."""


class JobContext:
    """Handed to a handler by the worker: `id`, `kind`, `config`, `job_dir`, `log`, `report`, `should_stop`,
    `store`, `settings`, and `threads` (the CPU threads the job may use: pass it on, e.g. to TrainConfig)."""

    def __init__(self, job: JobInfo, *, settings: Settings, store: Any, threads: int) -> None:
        self.job = job
        self.settings, self.store, self.threads = settings, store, threads
        self.job_dir = job_dir(settings.data_dir, job.id)
        self.job_dir.mkdir(parents=True, exist_ok=True)
        self.log = _job_logger(job.id, self.job_dir / LOG_NAME)
        self._lock = threading.Lock()
        self._progress, self._message = 0.0, None
        self.progress_changed = threading.Event()  # wakes the heartbeat thread early
        self._stopped = threading.Event()
        self.stop_reason: StopReason | None = None

    @property
    def id(self) -> int:
        return self.job.id

    @property
    def kind(self) -> str:
        return self.job.kind

    @property
    def config(self) -> dict[str, Any]:
        return self.job.config

    @property
    def metrics_path(self) -> Path:
        """job_dir/metrics.jsonl: one JSON object per line; GET /api/jobs/{id}/metrics serves it."""
        return self.job_dir / METRICS_NAME

    def report(self, progress: float, message: str | None = None) -> None:
        """How far the job is (0..1) and what it is doing; sent with the next heartbeat."""
        with self._lock:
            self._progress, self._message = min(1.0, max(0.0, float(progress))), message
        self.progress_changed.set()

    def progress(self) -> tuple[float, str | None]:
        with self._lock:
            return self._progress, self._message

    def write_metrics(self, record: dict[str, Any]) -> None:
        """Append one record to metrics.jsonl as one line in one write (a line cut short by a crash is skipped
        by the reader)."""
        line = json.dumps(record, allow_nan=False, default=float) + "\n"
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(line)

    def should_stop(self) -> bool:
        """True once a cancel was requested, the heartbeat was lost or the worker is shutting down."""
        return self._stopped.is_set()

    def stop(self, reason: StopReason) -> None:
        """Ask the handler to stop (the worker's heartbeat thread and signal handler call this); the first
        reason wins."""
        with self._lock:
            if self.stop_reason is None:
                self.stop_reason = reason
        self._stopped.set()

    def close(self) -> None:
        for handler in list(self.log.handlers):
            self.log.removeHandler(handler)
            handler.close()


def _job_logger(job_id: int, path: Path) -> logging.Logger:
    """A logger writing to the job's log file and passing records on to "backend.jobs" (the worker's stderr).

    Built outside logging's registry on purpose: registered loggers live for ever, and a worker runs many jobs."""
    logger = logging.Logger(f"backend.jobs.job{job_id}", logging.INFO)
    logger.parent = logging.getLogger("backend.jobs")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    logger.addHandler(handler)
    return logger
