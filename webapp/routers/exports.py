"""/api/exports: export a dataset or a snapshot to LeRobot v3.0 as a job (backend.jobs.export) that a worker
process runs; the UI polls it for progress. The same jobs are under /api/jobs (cancel, retry, log)."""

from __future__ import annotations

from fastapi import APIRouter

from backend.jobs.export import KIND, submit_export
from backend.services.audit import Action
from storage.errors import NotFoundError
from webapp.deps import AuditDep, CurationDep, CurrentUserDep, JobsDep, SettingsDep, StoreDep
from webapp.errors import error_responses
from webapp.schemas import ExportIn, ExportJobOut, IdPath

router = APIRouter(prefix="/exports", tags=["exports"])
MAX_LISTED = 100


@router.post("", status_code=202, responses=error_responses(404))
def start_export(
    body: ExportIn,
    jobs: JobsDep,
    store: StoreDep,
    curation: CurationDep,
    settings: SettingsDep,
    user: CurrentUserDep,
    audit: AuditDep,
) -> ExportJobOut:
    """Export a dataset or a snapshot to LeRobot v3.0 under <data dir>/exports/; poll the job for progress."""
    target, name = body.target()
    job = submit_export(jobs, store, curation.snapshots, target=target, name=name, user=user.name)
    audit(Action.EXPORT_START, target, name, job=job.id)
    return ExportJobOut.of(job, settings.data_dir)


@router.get("")
def list_exports(jobs: JobsDep, settings: SettingsDep) -> list[ExportJobOut]:
    """The newest export jobs (at most 100)."""
    return [ExportJobOut.of(j, settings.data_dir) for j in jobs.list(kind=KIND, limit=MAX_LISTED)]


@router.get("/{job_id}", responses=error_responses(404))
def get_export(job_id: IdPath, jobs: JobsDep, settings: SettingsDep) -> ExportJobOut:
    job = jobs.get(job_id)
    if job.kind != KIND:
        raise NotFoundError(f"no export job {job_id} (job {job_id} is a {job.kind} job)")
    return ExportJobOut.of(job, settings.data_dir)
