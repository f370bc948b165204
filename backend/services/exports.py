"""Export jobs: LeRobot v3.0 exports of a dataset or a snapshot, run one at a time in a background thread so
the UI can start one and follow its progress.

Jobs live in memory (an export is minutes at most and its result is a folder on disk); a server restart forgets
finished jobs, and an interrupted export leaves nothing half-written (storage.lerobot_v3 writes into a hidden
folder and renames it into place).
"""

from __future__ import annotations

import itertools
import logging
import queue
import re
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from storage.errors import NotFoundError, StoreError
from storage.models import utcnow

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "done", "failed"]
MAX_JOBS_KEPT = 100


@dataclass(frozen=True)
class ExportJob:
    id: int
    kind: Literal["dataset", "snapshot"]
    name: str
    user: str
    out_dir: str
    state: JobState = "queued"
    done: int = 0  # progress steps: one per episode and per episode video
    total: int = 0
    error: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None


class ExportJobs:
    """Queue of export jobs, one worker thread (exports are CPU- and disk-heavy; two at once only compete)."""

    def __init__(self, store: Any, snapshots: Any, exports_dir: Path) -> None:
        self._store, self._snapshots = store, snapshots
        self.exports_dir = Path(exports_dir)
        self._jobs: dict[int, ExportJob] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._queue: queue.Queue[int] = queue.Queue()
        self._worker: threading.Thread | None = None

    def submit(self, *, kind: Literal["dataset", "snapshot"], name: str, user: str) -> ExportJob:
        """Queue an export; NotFoundError at once if the dataset or snapshot does not exist."""
        if kind == "dataset":
            if name not in {d.name for d in self._store.list_datasets()}:
                raise NotFoundError(f"no dataset named {name!r}")
        else:
            self._snapshots.get(name)
        stamp = utcnow().strftime("%Y%m%d-%H%M%S")
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        with self._lock:
            job_id = next(self._ids)
            out = self.exports_dir / f"{kind}-{safe}-{stamp}-{job_id}"
            job = ExportJob(id=job_id, kind=kind, name=name, user=user, out_dir=str(out))
            self._jobs[job_id] = job
            for old in sorted(self._jobs)[:-MAX_JOBS_KEPT]:
                if self._jobs[old].state in ("done", "failed"):
                    del self._jobs[old]
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run_forever, name="export-jobs", daemon=True)
                self._worker.start()
        self._queue.put(job_id)
        return job

    def get(self, job_id: int) -> ExportJob:
        with self._lock:
            if job_id not in self._jobs:
                raise NotFoundError(f"no export job {job_id}")
            return self._jobs[job_id]

    def list(self) -> list[ExportJob]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.id, reverse=True)

    def wait(self, job_id: int, timeout: float = 600.0) -> ExportJob:
        """Block until the job finished (tests, CLI)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(job_id)
            if job.state in ("done", "failed"):
                return job
            time.sleep(0.05)
        raise TimeoutError(f"export job {job_id} did not finish in {timeout} s")

    def _update(self, job_id: int, **changes: Any) -> None:
        with self._lock:
            self._jobs[job_id] = replace(self._jobs[job_id], **changes)

    def _run_forever(self) -> None:
        while True:
            job_id = self._queue.get()
            self._run(self.get(job_id))

    def _run(self, job: ExportJob) -> None:
        from storage.lerobot_v3 import export_dataset, export_episodes

        self._update(job.id, state="running")

        def progress(done: int, total: int) -> None:
            self._update(job.id, done=done, total=total)

        try:
            if job.kind == "dataset":
                export_dataset(self._store, job.name, job.out_dir, progress=progress)
            else:
                infos = self._snapshots.episodes(job.name)
                export_episodes(self._store, infos, job.out_dir, label=f"snapshot {job.name}", progress=progress)
        except StoreError as error:  # bad input or broken files: the message says what
            self._update(job.id, state="failed", error=str(error), finished_at=utcnow())
        except Exception as error:  # noqa: BLE001 - a job must never kill the worker thread
            log.exception("export job %s failed", job.id)
            self._update(job.id, state="failed", error=f"{type(error).__name__}: {error}", finished_at=utcnow())
        else:
            self._update(job.id, state="done", finished_at=utcnow())
