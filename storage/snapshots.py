"""Immutable dataset snapshots: the exact list of episodes, and the annotation version of each, that a training
job consumes.

A snapshot stores a frozen copy of every episode's annotation next to its version, so it stays reproducible
when the episodes are edited, moved or trashed later. Episode files never change after saving (trim and split
write new episodes), and purging an episode a snapshot holds is refused (the foreign key is RESTRICT, and
`AnnotationService.check_purgeable` says so first), so a snapshot's data cannot disappear under it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storage.episode_meta import EpisodeInfo, validate_name
from storage.episode_query import EpisodeQuery, filter_conditions
from storage.errors import AnnotationError, ConflictError, NotFoundError
from storage.models import Dataset, Episode, FailureReason, Snapshot, SnapshotEpisode, utcnow

__all__ = ["SnapshotInfo", "SnapshotService", "frozen_annotation"]

MAX_DESCRIPTION = 2000


@dataclass(frozen=True)
class SnapshotInfo:
    id: int
    name: str
    dataset: str
    description: str
    created_by: str
    created_at: datetime
    num_episodes: int
    num_frames: int
    episodes: list[tuple[int, int]] | None = None  # [(episode id, annotation version)], in order; None if not loaded


def frozen_annotation(ep: Episode) -> dict[str, Any]:
    """The annotation fields as stored in a snapshot (JSON)."""
    return {
        "instruction": ep.instruction,
        "paraphrases": list(ep.paraphrases),
        "segments": [dict(s) for s in ep.segments],
        "human_success": ep.human_success,
        "auto_success": ep.auto_success,
        "failure_reason": None if ep.failure_reason is None else FailureReason(ep.failure_reason).value,
        "notes": ep.notes,
    }


def _info(s: Snapshot, episodes: list[tuple[int, int]] | None = None) -> SnapshotInfo:
    return SnapshotInfo(
        s.id, s.name, s.dataset, s.description, s.created_by, s.created_at, s.num_episodes, s.num_frames, episodes
    )


class SnapshotService:
    def __init__(self, session_factory: sessionmaker[Session], store: Any) -> None:
        self._sf = session_factory
        self._store = store  # EpisodeStore: reads episodes for export

    def create(
        self,
        name: str,
        dataset: str,
        *,
        user: str,
        description: str = "",
        query: EpisodeQuery | None = None,
        episode_ids: Iterable[int] | None = None,
    ) -> SnapshotInfo:
        """Freeze the live (not trashed) episodes of `dataset`, oldest first: all of them, or those matching
        `query`'s filters (e.g. success only), or exactly `episode_ids` (which must belong to the dataset)."""
        validate_name(name, "snapshot name")
        validate_name(dataset, "dataset name")
        if not isinstance(user, str) or not user.strip():
            raise AnnotationError("user name must not be empty")
        if len(description) > MAX_DESCRIPTION:
            raise AnnotationError(f"description is longer than {MAX_DESCRIPTION} characters")
        with self._sf.begin() as session:
            ds_id = session.scalar(select(Dataset.id).where(Dataset.name == dataset))
            if ds_id is None:
                raise NotFoundError(f"no dataset named {dataset!r}")
            query = dataclasses.replace(query or EpisodeQuery(), dataset=dataset, trashed=False)
            stmt = select(Episode).join(Dataset, Episode.dataset_id == Dataset.id).where(*filter_conditions(query))
            if episode_ids is not None:
                ids = list(dict.fromkeys(episode_ids))
                stmt = stmt.where(Episode.id.in_(ids))
            eps = session.scalars(stmt.order_by(Episode.created_at, Episode.id)).all()
            if episode_ids is not None and len(eps) != len(ids):
                missing = sorted(set(ids) - {e.id for e in eps})
                raise NotFoundError(f"episodes {missing} are not live episodes of dataset {dataset!r}")
            if not eps:
                raise AnnotationError(f"dataset {dataset!r} has no live episodes matching; a snapshot cannot be empty")
            if session.scalar(select(Snapshot.id).where(Snapshot.name == name)) is not None:
                raise ConflictError(
                    f"a snapshot named {name!r} exists already (snapshots are immutable): pick a new name"
                )
            snap = Snapshot(
                name=name,
                dataset=dataset,
                description=description,
                created_by=user.strip(),
                created_at=utcnow(),
                num_episodes=len(eps),
                num_frames=sum(e.length for e in eps),
            )
            session.add(snap)
            try:
                session.flush()
            except IntegrityError:  # a concurrent create with the same name
                raise ConflictError(f"a snapshot named {name!r} exists already") from None
            for position, ep in enumerate(eps):
                session.add(
                    SnapshotEpisode(
                        snapshot_id=snap.id,
                        episode_id=ep.id,
                        position=position,
                        annotation_version=ep.version,
                        annotation=frozen_annotation(ep),
                    )
                )
            return _info(snap, [(e.id, e.version) for e in eps])

    def extend(
        self, name: str, base: int | str, episode_ids: Iterable[int], *, user: str, description: str = ""
    ) -> SnapshotInfo:
        """A new snapshot: `base`'s episodes with the annotations frozen in it, then `episode_ids` (live episodes of
        any dataset, e.g. operators' corrections) with their current annotations. It belongs to base's dataset."""
        validate_name(name, "snapshot name")
        if not isinstance(user, str) or not user.strip():
            raise AnnotationError("user name must not be empty")
        if len(description) > MAX_DESCRIPTION:
            raise AnnotationError(f"description is longer than {MAX_DESCRIPTION} characters")
        extra_ids = list(dict.fromkeys(episode_ids))
        with self._sf.begin() as session:
            snap_base = self._snapshot(session, base)
            kept = session.execute(
                select(SnapshotEpisode).where(SnapshotEpisode.snapshot_id == snap_base.id)
                .order_by(SnapshotEpisode.position)
            ).scalars().all()  # fmt: skip
            have = {r.episode_id for r in kept}
            extra_ids = [i for i in extra_ids if i not in have]
            eps = session.scalars(select(Episode).where(Episode.id.in_(extra_ids), Episode.deleted_at.is_(None))).all()
            if len(eps) != len(extra_ids):
                missing = sorted(set(extra_ids) - {e.id for e in eps})
                raise NotFoundError(f"episodes {missing} are not live episodes")
            if not eps:
                raise AnnotationError(f"nothing to add to snapshot {snap_base.name!r}: no new episodes")
            if session.scalar(select(Snapshot.id).where(Snapshot.name == name)) is not None:
                raise ConflictError(f"a snapshot named {name!r} exists already (snapshots are immutable)")
            eps = sorted(eps, key=lambda e: (e.created_at, e.id))
            snap = Snapshot(
                name=name, dataset=snap_base.dataset, description=description, created_by=user.strip(),
                created_at=utcnow(), num_episodes=len(kept) + len(eps),
                num_frames=snap_base.num_frames + sum(e.length for e in eps),
            )  # fmt: skip
            session.add(snap)
            try:
                session.flush()
            except IntegrityError:
                raise ConflictError(f"a snapshot named {name!r} exists already") from None
            rows = [(r.episode_id, r.annotation_version, dict(r.annotation)) for r in kept]
            rows += [(e.id, e.version, frozen_annotation(e)) for e in eps]
            for position, (episode_id, version, annotation) in enumerate(rows):
                session.add(SnapshotEpisode(snapshot_id=snap.id, episode_id=episode_id, position=position,
                                            annotation_version=version, annotation=annotation))  # fmt: skip
            return _info(snap, [(r[0], r[1]) for r in rows])

    def list(self) -> list[SnapshotInfo]:
        with self._sf() as session:
            return [_info(s) for s in session.scalars(select(Snapshot).order_by(Snapshot.id.desc()))]

    def _snapshot(self, session: Session, snapshot: int | str) -> Snapshot:
        column = Snapshot.id if isinstance(snapshot, int) else Snapshot.name
        snap = session.scalar(select(Snapshot).where(column == snapshot))
        if snap is None:
            raise NotFoundError(f"no snapshot {snapshot!r}")
        return snap

    def get(self, snapshot: int | str) -> SnapshotInfo:
        with self._sf() as session:
            snap = self._snapshot(session, snapshot)
            rows = session.execute(
                select(SnapshotEpisode.episode_id, SnapshotEpisode.annotation_version)
                .where(SnapshotEpisode.snapshot_id == snap.id)
                .order_by(SnapshotEpisode.position)
            ).all()
            return _info(snap, [(r[0], r[1]) for r in rows])

    def episodes(self, snapshot: int | str) -> list[EpisodeInfo]:
        """The snapshot's episodes in order, with the annotation they had when it was taken (whatever they say
        now, wherever they are now, trash included)."""
        with self._sf() as session:
            snap = self._snapshot(session, snapshot)
            rows = session.execute(
                select(SnapshotEpisode).where(SnapshotEpisode.snapshot_id == snap.id).order_by(SnapshotEpisode.position)
            ).scalars()
            frozen = [(r.episode_id, r.annotation_version, dict(r.annotation)) for r in rows]
        out = []
        for episode_id, version, annotation in frozen:
            info = self._store.get_episode(episode_id)
            out.append(dataclasses.replace(info, version=version, **annotation))
        return out
