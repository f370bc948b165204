"""/api/datasets, /api/snapshots, /api/exports: merge datasets, freeze snapshots, export to LeRobot v3.0 with
progress (a background job the UI polls)."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, HTTPException

from storage.episode_query import EpisodeQuery
from webapp.deps import CurationDep
from webapp.schemas import DatasetOut, ExportIn, ExportJobOut, MergedOut, MergeIn, SnapshotIn, SnapshotOut

router = APIRouter(tags=["curation"])


@router.get("/datasets")
def list_datasets(curation: CurationDep) -> list[DatasetOut]:
    """Datasets with their number of live episodes (the trash not counted)."""
    return [DatasetOut(**dataclasses.asdict(d)) for d in curation.store.list_datasets()]


@router.post("/datasets/{name}/merge")
def merge(name: str, body: MergeIn, curation: CurationDep) -> MergedOut:
    """Move every episode of `name` into `into` (created if missing) and delete `name`."""
    return MergedOut(moved=curation.annotations.merge_datasets(name, body.into, user=body.user))


@router.get("/snapshots")
def list_snapshots(curation: CurationDep) -> list[SnapshotOut]:
    return [SnapshotOut(**dataclasses.asdict(s)) for s in curation.snapshots.list()]


@router.post("/snapshots", status_code=201, responses={409: {"description": "the name is taken"}})
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
    return SnapshotOut(**dataclasses.asdict(snap))


@router.get("/snapshots/{snapshot}")
def get_snapshot(snapshot: str, curation: CurationDep) -> SnapshotOut:
    """A snapshot by name or id, with its (episode id, annotation version) list."""
    key = int(snapshot) if snapshot.isdigit() else snapshot
    return SnapshotOut(**dataclasses.asdict(curation.snapshots.get(key)))


@router.post("/exports", status_code=202)
def start_export(body: ExportIn, curation: CurationDep) -> ExportJobOut:
    """Export a dataset or a snapshot to LeRobot v3.0 under <data dir>/exports/; poll the job for progress."""
    if (body.dataset is None) == (body.snapshot is None):
        raise HTTPException(422, "give exactly one of 'dataset' or 'snapshot'")
    kind, name = ("dataset", body.dataset) if body.dataset is not None else ("snapshot", body.snapshot)
    job = curation.exports.submit(kind=kind, name=name, user=body.user)
    return ExportJobOut(**dataclasses.asdict(job))


@router.get("/exports")
def list_exports(curation: CurationDep) -> list[ExportJobOut]:
    return [ExportJobOut(**dataclasses.asdict(j)) for j in curation.exports.list()]


@router.get("/exports/{job_id}")
def get_export(job_id: int, curation: CurationDep) -> ExportJobOut:
    return ExportJobOut(**dataclasses.asdict(curation.exports.get(job_id)))
