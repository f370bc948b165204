"""/api/snapshots: immutable, named selections of a dataset's episodes, each with its annotation version."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from backend.services.audit import Action
from storage.episode_query import EpisodeQuery
from webapp.deps import AuditDep, CurationDep, CurrentUserDep
from webapp.errors import error_responses
from webapp.schemas import SQL_INT_MAX, NamePath, SnapshotIn, SnapshotOut

router = APIRouter(prefix="/snapshots", tags=["snapshots"])


@router.get("")
def list_snapshots(curation: CurationDep) -> list[SnapshotOut]:
    return [SnapshotOut.model_validate(s) for s in curation.snapshots.list()]


@router.post("", status_code=201, responses=error_responses(404, 409, described={409: "the name is taken"}))
def create_snapshot(body: SnapshotIn, curation: CurationDep, user: CurrentUserDep, audit: AuditDep) -> SnapshotOut:
    """Freeze the live episodes of a dataset (all, those with one label, or exactly the ids given) with the
    annotation version of each. Snapshots are immutable."""
    snap = curation.snapshots.create(
        body.name,
        body.dataset,
        user=user.name,
        description=body.description,
        query=EpisodeQuery(success=body.success),
        episode_ids=body.episode_ids,
    )
    audit(Action.SNAPSHOT_CREATE, "snapshot", snap.id, name=snap.name, dataset=snap.dataset)
    return SnapshotOut.model_validate(snap)


@router.get("/{snapshot}", responses=error_responses(404))
def get_snapshot(snapshot: NamePath, curation: CurationDep) -> SnapshotOut:
    """A snapshot by name or id, with its (episode id, annotation version) list."""
    key = int(snapshot) if snapshot.isascii() and snapshot.isdigit() else snapshot  # "²" is a digit, not an id
    if isinstance(key, int) and key > SQL_INT_MAX:
        raise HTTPException(422, f"a snapshot id is at most {SQL_INT_MAX}")
    return SnapshotOut.model_validate(curation.snapshots.get(key))
