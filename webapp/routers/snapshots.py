"""/api/snapshots: immutable, named selections of a dataset's episodes, each with its annotation version."""

from __future__ import annotations

from fastapi import APIRouter

from storage.episode_query import EpisodeQuery
from webapp.deps import CurationDep
from webapp.schemas import SnapshotIn, SnapshotOut

router = APIRouter(prefix="/snapshots", tags=["snapshots"])


@router.get("")
def list_snapshots(curation: CurationDep) -> list[SnapshotOut]:
    return [SnapshotOut.model_validate(s) for s in curation.snapshots.list()]


@router.post("", status_code=201, responses={409: {"description": "the name is taken"}})
def create_snapshot(body: SnapshotIn, curation: CurationDep) -> SnapshotOut:
    """Freeze the live episodes of a dataset (all, those with one label, or exactly the ids given) with the
    annotation version of each. Snapshots are immutable."""
    snap = curation.snapshots.create(
        body.name,
        body.dataset,
        user=body.user,
        description=body.description,
        query=EpisodeQuery(success=body.success),
        episode_ids=body.episode_ids,
    )
    return SnapshotOut.model_validate(snap)


@router.get("/{snapshot}")
def get_snapshot(snapshot: str, curation: CurationDep) -> SnapshotOut:
    """A snapshot by name or id, with its (episode id, annotation version) list."""
    key = int(snapshot) if snapshot.isdigit() else snapshot
    return SnapshotOut.model_validate(curation.snapshots.get(key))
