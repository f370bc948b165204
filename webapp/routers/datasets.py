"""/api/datasets: datasets with their episode counts, and merging one into another."""

from __future__ import annotations

from fastapi import APIRouter

from backend.services.audit import Action
from webapp.deps import AuditDep, CurationDep, CurrentUserDep
from webapp.errors import error_responses
from webapp.schemas import DatasetOut, MergedOut, MergeIn, NamePath

router = APIRouter(prefix="/datasets", tags=["datasets"])


@router.get("")
def list_datasets(curation: CurationDep) -> list[DatasetOut]:
    """Datasets with their number of live episodes (the trash not counted)."""
    return [DatasetOut.model_validate(d) for d in curation.store.list_datasets()]


@router.post("/{name}/merge", responses=error_responses(404))
def merge(name: NamePath, body: MergeIn, curation: CurationDep, user: CurrentUserDep, audit: AuditDep) -> MergedOut:
    """Move every episode of `name` into `into` (created if missing) and delete `name`."""
    moved = curation.annotations.merge_datasets(name, body.into, user=user.name)
    audit(Action.EPISODES_BULK, "dataset", name, op="merge", into=body.into, moved=moved)
    return MergedOut(moved=moved)
