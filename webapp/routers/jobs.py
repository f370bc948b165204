"""/api/jobs: the persistent jobs (exports, training, evaluation) that worker processes run: list and read them,
follow their log and metrics while they run, cancel, retry or resume them. Submitting is each kind's own route
(POST /api/exports, ...): the config of a job is checked where its kind is understood."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import FileResponse, PlainTextResponse

from backend.jobs import job_dir
from backend.jobs.files import read_log_tail, read_metrics
from backend.jobs.queue import LOG_NAME, MAX_LIST, METRICS_NAME
from backend.services.audit import Action
from storage.models import JobStatus
from webapp.deps import AuditDep, CurrentUserDep, JobsDep, SettingsDep
from webapp.errors import error_responses
from webapp.permissions import refuse_unless_may_manage_job
from webapp.schemas import IdPath, JobMetricsOut, JobOut, JobRetryIn, JobsOut

router = APIRouter(prefix="/jobs", tags=["jobs"])

MAX_TAIL_LINES = 5000
MAX_METRICS_PAGE = 5000


@router.get("")
def list_jobs(
    jobs: JobsDep,
    status: JobStatus | None = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    created_by: Annotated[str | None, Query(max_length=64)] = None,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
) -> JobsOut:
    """Jobs newest first, filtered by status, kind and who submitted them."""
    filters = {"status": status, "kind": kind, "created_by": created_by}
    page = jobs.list(**filters, offset=offset, limit=limit)
    return JobsOut(data=[JobOut.model_validate(j) for j in page], count=jobs.count(**filters))


@router.get("/{job_id}", responses=error_responses(404))
def get_job(job_id: IdPath, jobs: JobsDep) -> JobOut:
    return JobOut.model_validate(jobs.get(job_id))


@router.post("/{job_id}/cancel", responses=error_responses(404, 409))
def cancel_job(job_id: IdPath, jobs: JobsDep, user: CurrentUserDep, audit: AuditDep) -> JobOut:
    """A queued job is cancelled at once; a running one stops within a few seconds (its worker sees the request
    at its next heartbeat) and keeps its folder and checkpoints. 409 if it already finished."""
    job = jobs.get(job_id)
    refuse_unless_may_manage_job(user, kind=job.kind, created_by=job.created_by)
    job = jobs.request_cancel(job_id)
    audit(Action.JOB_CANCEL, "job", job_id, kind=job.kind, status=job.status.value)
    return JobOut.model_validate(job)


@router.post("/{job_id}/retry", responses=error_responses(404, 409))
def retry_job(
    job_id: IdPath, jobs: JobsDep, user: CurrentUserDep, audit: AuditDep, body: JobRetryIn | None = None
) -> JobOut:
    """Queue a failed or cancelled job again: resumed in its folder (a training job from its last checkpoint),
    or with `fresh` from scratch. 409 for a job that is queued, running or succeeded."""
    fresh = body.fresh if body is not None else False
    job = jobs.get(job_id)
    refuse_unless_may_manage_job(user, kind=job.kind, created_by=job.created_by)
    job = jobs.retry(job_id) if fresh else jobs.resume(job_id)
    audit(Action.JOB_RETRY, "job", job_id, kind=job.kind, fresh=fresh)
    return JobOut.model_validate(job)


@router.get(
    "/{job_id}/log",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}, **error_responses(404)},
)
def job_log(
    job_id: IdPath,
    jobs: JobsDep,
    settings: SettingsDep,
    tail_lines: Annotated[int, Query(ge=1, le=MAX_TAIL_LINES)] = 200,
) -> PlainTextResponse:
    """The last lines of the job's log (empty before it started); at most the log's last 256 KiB are read."""
    job = jobs.get(job_id)
    return PlainTextResponse(read_log_tail(job_dir(settings.data_dir, job.id) / LOG_NAME, tail_lines))


@router.get("/{job_id}/metrics", responses=error_responses(404))
def job_metrics(
    job_id: IdPath,
    jobs: JobsDep,
    settings: SettingsDep,
    after: Annotated[int, Query(ge=0, le=2**31 - 1, description="skip the first `after` lines")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_METRICS_PAGE)] = 1000,
) -> JobMetricsOut:
    """Records of the job's metrics.jsonl after its first `after` lines (poll with the `next` of the previous
    answer to stream a live curve)."""
    job = jobs.get(job_id)
    records, next_after = read_metrics(job_dir(settings.data_dir, job.id) / METRICS_NAME, after=after, limit=limit)
    return JobMetricsOut(records=records, next=next_after)


@router.get(
    "/{job_id}/videos/{name}",
    response_class=FileResponse,
    responses={200: {"content": {"video/mp4": {}}}, **error_responses(404)},
)
def job_video(
    job_id: IdPath,
    name: Annotated[str, Path(max_length=80, description="<task>_<colour>_<seed>.mp4, as the job's result lists")],
    jobs: JobsDep,
    settings: SettingsDep,
) -> FileResponse:
    """One rollout video of an evaluation job (its result's `failure_videos`): the cameras side by side with the
    attention overlay, uncertainty and outcome. Range requests work, so the browser's player can seek."""
    from backend.jobs.evaluate import evaluation_video

    job = jobs.get(job_id)
    path = evaluation_video(job_dir(settings.data_dir, job.id), name)
    if path is None:
        raise HTTPException(404, f"job {job_id} has no video {name!r}")
    return FileResponse(path, media_type="video/mp4")
