"""/api/exports: export a dataset or a snapshot to LeRobot v3.0 as a background job the UI polls for progress."""

from __future__ import annotations

from fastapi import APIRouter

from backend.services.audit import Action
from webapp.deps import AuditDep, CurationDep, CurrentUserDep
from webapp.errors import error_responses
from webapp.schemas import ExportIn, ExportJobOut, IdPath

router = APIRouter(prefix="/exports", tags=["exports"])


@router.post("", status_code=202, responses=error_responses(404))
def start_export(body: ExportIn, curation: CurationDep, user: CurrentUserDep, audit: AuditDep) -> ExportJobOut:
    """Export a dataset or a snapshot to LeRobot v3.0 under <data dir>/exports/; poll the job for progress."""
    kind, name = body.target()
    job = curation.exports.submit(kind=kind, name=name, user=user.name)
    audit(Action.EXPORT_START, kind, name, job=job.id)
    return ExportJobOut.model_validate(job)


@router.get("")
def list_exports(curation: CurationDep) -> list[ExportJobOut]:
    return [ExportJobOut.model_validate(j) for j in curation.exports.list()]


@router.get("/{job_id}", responses=error_responses(404))
def get_export(job_id: IdPath, curation: CurationDep) -> ExportJobOut:
    return ExportJobOut.model_validate(curation.exports.get(job_id))
