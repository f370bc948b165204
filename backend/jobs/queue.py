"""The persistent job queue: jobs are rows of the `jobs` table, claimed by worker processes with one atomic UPDATE.

Why a table and not a queue library: no well-kept library serves both SQLite (the embedded default) and
PostgreSQL (several machines): procrastinate and pgqueuer are PostgreSQL-only, huey, rq, dramatiq and celery need
Redis or a broker and keep no job history we could show. The whole protocol is a few guarded UPDATEs:

* **claim**: ``UPDATE jobs SET status='running', worker=... WHERE id = (SELECT id FROM jobs WHERE status='queued'
  ORDER BY id LIMIT 1 [FOR UPDATE SKIP LOCKED]) AND status='queued' RETURNING id``. On SQLite the statement runs
  under the database's single write lock, so two workers cannot both match a row; on PostgreSQL SKIP LOCKED lets
  a second worker pass over the row the first is taking instead of waiting for it, and the repeated
  ``status='queued'`` re-check refuses a row that changed meanwhile. No row back: nothing was claimed.
* every later write of a worker (heartbeat, finish, fail, release) is guarded by ``worker = me AND
  status = 'running'``: a worker whose job was taken away (its heartbeat went stale and the job was re-queued)
  changes nothing, and learns so from the False it gets back.
* **requeue_stale**: a running job whose heartbeat is older than the limit lost its worker (SIGKILL, a crashed
  machine); it goes back to queued (attempts counts claims) and the next claim resumes it in the same job folder.

Times come from the injected clock (seconds since the epoch), so tests move time instead of sleeping.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.jobs.handlers import get_handler
from storage.errors import ConflictError, NotFoundError
from storage.models import Job, JobStatus

S = JobStatus
MESSAGE_MAX_LEN = 255  # Job.message
WORKER_MAX_LEN = 128  # Job.worker
MAX_LIST = 500
JOBS_DIR = "jobs"  # <data dir>/jobs/<id>/: a job's folder, the same for every attempt
LOG_NAME = "job.log"
METRICS_NAME = "metrics.jsonl"


@dataclass(frozen=True)
class JobInfo:
    """One job as stored (a detached copy of its row)."""

    id: int
    kind: str
    status: JobStatus
    config: dict[str, Any]
    progress: float
    message: str | None
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    worker: str | None
    attempts: int
    cancel_requested: bool
    log_path: str | None  # relative to the data directory
    error: str | None
    result: dict[str, Any]

    @classmethod
    def of(cls, row: Job) -> JobInfo:
        return cls(
            id=row.id,
            kind=row.kind,
            status=JobStatus(row.status),
            config=dict(row.config),
            progress=row.progress,
            message=row.message,
            created_by=row.created_by,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            heartbeat_at=row.heartbeat_at,
            worker=row.worker,
            attempts=row.attempts,
            cancel_requested=row.cancel_requested,
            log_path=row.log_path,
            error=row.error,
            result=dict(row.result),
        )

    @property
    def finished(self) -> bool:
        return self.status in (S.SUCCEEDED, S.FAILED, S.CANCELLED)


def job_dir(data_dir: Path, job_id: int) -> Path:
    """<data dir>/jobs/<id>: the job's folder (log, metrics, checkpoints), the same for every attempt."""
    return Path(data_dir) / JOBS_DIR / str(job_id)


def _cut(text: str | None, length: int) -> str | None:
    return text if text is None or len(text) <= length else text[: length - 1] + "…"


class JobQueue:
    """Submit, claim, watch and steer jobs. Thread-safe: every method opens its own session.

    Args:
        session_factory: the store's session factory (SQLite or PostgreSQL).
        clock: seconds since the epoch (time.time; tests pass a FakeClock).
        data_dir: where job folders live (job_dir); retry() empties a job's folder (resume() keeps it). None:
            retry leaves files alone.
        max_attempts: a stale job claimed this many times already (``attempts``: every claim, so resumes and
            worker restarts count too) is failed instead of re-queued again: a job that kills its worker every
            time, e.g. out of memory, must not loop for ever.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        clock: Callable[[], float] = time.time,
        data_dir: Path | None = None,
        max_attempts: int = 10,
    ) -> None:
        self._sf = session_factory
        self._clock = clock
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.max_attempts = max_attempts

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # -- submitting and reading ----------------------------------------------------------------------------------------
    def submit(self, kind: str, config: dict[str, Any], created_by: str | None) -> JobInfo:
        """Queue a job; ValueError for an unknown kind or a config that is not a JSON object."""
        get_handler(kind)
        if not isinstance(config, dict):
            raise ValueError(f"a job config is a JSON object, got {type(config).__name__}")
        try:
            json.dumps(config, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ValueError(f"the job config is not plain JSON: {error}") from None
        with self._sf.begin() as session:
            row = Job(kind=kind, status=S.QUEUED, config=config, created_by=created_by, created_at=self._now())
            session.add(row)
            session.flush()
            row.log_path = f"{JOBS_DIR}/{row.id}/{LOG_NAME}"  # relative: workers may mount the data dir elsewhere
            session.flush()
            return JobInfo.of(row)

    def get(self, job_id: int) -> JobInfo:
        with self._sf() as session:
            row = session.get(Job, job_id)
            if row is None:
                raise NotFoundError(f"no job {job_id}")
            return JobInfo.of(row)

    def _filtered(self, query, status: JobStatus | None, kind: str | None, created_by: str | None):
        if status is not None:
            query = query.where(Job.status == status)
        if kind is not None:
            query = query.where(Job.kind == kind)
        if created_by is not None:
            query = query.where(Job.created_by == created_by)
        return query

    def list(
        self,
        *,
        status: JobStatus | None = None,
        kind: str | None = None,
        created_by: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobInfo]:
        """Jobs newest first (by id: ids grow with submission on both backends)."""
        if not 1 <= limit <= MAX_LIST or offset < 0:
            raise ValueError(f"limit must be 1..{MAX_LIST} and offset >= 0, got {limit} and {offset}")
        query = self._filtered(select(Job), status, kind, created_by).order_by(Job.id.desc())
        with self._sf() as session:
            return [JobInfo.of(r) for r in session.scalars(query.limit(limit).offset(offset))]

    def count(self, *, status: JobStatus | None = None, kind: str | None = None, created_by: str | None = None) -> int:
        with self._sf() as session:
            return session.scalar(self._filtered(select(func.count(Job.id)), status, kind, created_by)) or 0

    # -- the worker's side ---------------------------------------------------------------------------------------------
    def claim(self, worker: str, *, kinds: Collection[str] | None = None) -> JobInfo | None:
        """Take the oldest queued job (of `kinds`, if given) for `worker`, atomically; None if there is none."""
        now = self._now()
        oldest = select(Job.id).where(Job.status == S.QUEUED).order_by(Job.id).limit(1)
        if kinds is not None:
            if not kinds:
                return None
            oldest = oldest.where(Job.kind.in_(sorted(kinds)))
        # FOR UPDATE SKIP LOCKED on PostgreSQL; SQLAlchemy leaves the clause out on SQLite (one writer at a time).
        oldest = oldest.with_for_update(skip_locked=True)
        stmt = (
            update(Job)
            .where(Job.id == oldest.correlate(None).scalar_subquery(), Job.status == S.QUEUED)  # a subquery of its own
            .values(
                status=S.RUNNING,
                worker=_cut(worker, WORKER_MAX_LEN),
                started_at=now,
                heartbeat_at=now,
                finished_at=None,
                attempts=Job.attempts + 1,
                message=None,
                error=None,
            )
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
        with self._sf.begin() as session:
            claimed = session.execute(stmt).scalars().all()  # the rows changed: one, or none
            if not claimed:  # none queued, or another worker was first
                return None
            return JobInfo.of(session.get(Job, claimed[0]))

    def _running(self, job_id: int, worker: str):
        """An UPDATE of `job_id` that matches only while `worker` runs it."""
        return (
            update(Job)
            .where(Job.id == job_id, Job.worker == _cut(worker, WORKER_MAX_LEN), Job.status == S.RUNNING)
            .execution_options(synchronize_session=False)
        )

    def heartbeat(self, job_id: int, worker: str, progress: float, message: str | None) -> bool:
        """Record that `worker` is alive on the job, with its progress; False if the job is no longer its own
        (re-queued as stale, finished) or a cancel was requested: the worker should stop."""
        stmt = (
            self._running(job_id, worker)
            .values(
                heartbeat_at=self._now(),
                progress=min(1.0, max(0.0, float(progress))),
                message=_cut(message, MESSAGE_MAX_LEN),
            )
            .returning(Job.cancel_requested)
        )
        with self._sf.begin() as session:
            cancel = session.execute(stmt).scalars().all()
        return len(cancel) == 1 and not cancel[0]

    def _end(self, job_id: int, worker: str, values: dict[str, Any]) -> bool:
        with self._sf.begin() as session:
            return session.execute(self._running(job_id, worker).values(**values)).rowcount == 1

    def finish(self, job_id: int, worker: str, result: dict[str, Any]) -> bool:
        """The job succeeded with `result` (references: paths, ids); False if it was not `worker`'s any more."""
        return self._end(
            job_id, worker, {"status": S.SUCCEEDED, "result": result, "progress": 1.0, "finished_at": self._now()}
        )

    def fail(self, job_id: int, worker: str, error: str) -> bool:
        return self._end(job_id, worker, {"status": S.FAILED, "error": error, "finished_at": self._now()})

    def mark_cancelled(self, job_id: int, worker: str, result: dict[str, Any] | None = None) -> bool:
        """The worker stopped the job on a cancel request (its folder, checkpoints included, stays)."""
        values: dict[str, Any] = {"status": S.CANCELLED, "finished_at": self._now(), "message": "cancelled"}
        if result is not None:
            values["result"] = result
        return self._end(job_id, worker, values)

    def release(self, job_id: int, worker: str, message: str = "re-queued: its worker shut down") -> bool:
        """Back to queued (the worker is shutting down); the next claim resumes it in the same folder."""
        return self._end(job_id, worker, {"status": S.QUEUED, "worker": None, "message": message})

    def requeue_stale(self, older_than_s: float) -> list[int]:
        """Running jobs whose last heartbeat is older than `older_than_s`: back to queued (ids returned); those
        with a pending cancel request are cancelled instead, and those that lost `max_attempts` workers fail."""
        now = self._now()
        stale = (Job.status == S.RUNNING, Job.heartbeat_at < now - timedelta(seconds=older_than_s))
        with self._sf.begin() as session:

            def apply(*where: Any, **values: Any) -> list[int]:
                stmt = update(Job).where(*stale, *where).values(**values).returning(Job.id)
                return list(session.execute(stmt.execution_options(synchronize_session=False)).scalars())

            apply(Job.cancel_requested.is_(True), status=S.CANCELLED, finished_at=now, message="cancelled")
            apply(
                Job.attempts >= self.max_attempts,
                status=S.FAILED,
                finished_at=now,
                error=f"its worker stopped sending heartbeats after {self.max_attempts} or more claims (killed, "
                "out of memory?); retry it once the cause is fixed",
            )
            return apply(status=S.QUEUED, worker=None, message="re-queued: its worker stopped sending heartbeats")

    # -- steering (the API) --------------------------------------------------------------------------------------------
    def request_cancel(self, job_id: int) -> JobInfo:
        """A queued job is cancelled at once; a running one is asked to stop (its worker sees it at the next
        heartbeat and stops within a few seconds). ConflictError if it already finished."""
        now = self._now()
        with self._sf.begin() as session:
            queued = update(Job).where(Job.id == job_id, Job.status == S.QUEUED)
            changed = session.execute(queued.values(status=S.CANCELLED, finished_at=now, message="cancelled")).rowcount
            if not changed:
                running = update(Job).where(Job.id == job_id, Job.status == S.RUNNING)
                changed = session.execute(running.values(cancel_requested=True, message="cancel requested")).rowcount
        job = self.get(job_id)
        if not changed:
            raise ConflictError(
                f"job {job_id} already {job.status.value}; only a queued or running job can be cancelled"
            )
        return job

    def resume(self, job_id: int) -> JobInfo:
        """A failed or cancelled job goes back to the queue with its folder as it is: a training job continues
        from its last checkpoint."""
        return self._requeue(job_id, "resumed")

    def retry(self, job_id: int) -> JobInfo:
        """A failed or cancelled job starts over: its folder is emptied first (a training job from scratch)."""
        job = self.get(job_id)
        self._check_rerunnable(job)
        if self.data_dir is not None:
            folder = job_dir(self.data_dir, job_id)
            if folder.exists():
                aside = folder.with_name(f".{folder.name}.retry-{os.getpid()}")
                os.replace(folder, aside)  # atomic: the job never sees a half-deleted folder
                shutil.rmtree(aside, ignore_errors=True)
        return self._requeue(job_id, "retried")

    @staticmethod
    def _check_rerunnable(job: JobInfo) -> None:
        if job.status not in (S.FAILED, S.CANCELLED):
            raise ConflictError(f"job {job.id} is {job.status.value}; only a failed or cancelled job can run again")

    def _requeue(self, job_id: int, message: str) -> JobInfo:
        stmt = (
            update(Job)
            .where(Job.id == job_id, Job.status.in_([S.FAILED, S.CANCELLED]))
            .values(
                status=S.QUEUED,
                cancel_requested=False,
                error=None,
                progress=0.0,
                message=message,
                worker=None,
                finished_at=None,
            )
        )
        with self._sf.begin() as session:
            changed = session.execute(stmt).rowcount
        job = self.get(job_id)
        if not changed:
            self._check_rerunnable(job)
        return job
