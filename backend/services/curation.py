"""The labeling and curation service the routes call: annotation edits, history and undo, bulk operations,
trash, trim and split, merges, snapshots and quality flags, over one episode store (exports are jobs:
backend.jobs.export).

The rules live in storage (annotations, snapshots, episode_edit, quality); this class wires them to one store and
adds what spans several of them (purge = check + delete files, per-episode signals for the player).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import pyarrow.compute as pc

from storage import features as F
from storage.annotations import AnnotationService, EventInfo
from storage.episode_edit import split_episode, trim_episode
from storage.episode_meta import EpisodeInfo
from storage.errors import AnnotationError
from storage.snapshots import SnapshotService

BulkOp = Literal["annotate", "move", "trash", "restore", "purge"]  # the operations on a selection


class CurationService:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.annotations = AnnotationService(store.session_factory)
        self.snapshots = SnapshotService(store.session_factory, store)

    # -- one episode -----------------------------------------------------------------------------------------------
    def annotate(self, episode_id: int, changes: Mapping[str, Any], *, user: str, version: int) -> EpisodeInfo:
        self.annotations.edit(episode_id, changes, user=user, expected_version=version)
        return self.store.get_episode(episode_id)

    def undo(self, episode_id: int, *, user: str, version: int | None) -> EpisodeInfo:
        self.annotations.undo(episode_id, user=user, expected_version=version)
        return self.store.get_episode(episode_id)

    def history(self, episode_id: int) -> list[EventInfo]:
        return self.annotations.history(episode_id)

    def trim(self, episode_id: int, start: int, end: int, *, user: str, version: int | None) -> list[int]:
        return [trim_episode(self.store, self.annotations, episode_id, start, end, user=user, expected_version=version)]

    def split(self, episode_id: int, at: int, *, user: str, version: int | None) -> list[int]:
        return list(split_episode(self.store, self.annotations, episode_id, at, user=user, expected_version=version))

    def signals(self, episode_id: int) -> dict[str, Any]:
        """State and action over time for the player's charts: {"timestamps": [T], "state": [T][S], ...}."""
        info = self.store.get_episode(episode_id)
        table = self.store.read_table(episode_id)

        def rows(column: str, width: int) -> list[list[float]]:
            flat = pc.list_flatten(table.column(column)).to_numpy()
            return flat.reshape(info.length, width).round(5).tolist()

        return {
            "fps": info.fps,
            "timestamps": table.column(F.TIMESTAMP).to_numpy().round(5).tolist(),
            "state_names": info.state_names,
            "action_names": info.action_names,
            "state": rows(F.OBS_STATE, len(info.state_names)),
            "action": rows(F.ACTION, len(info.action_names)),
            **_rollout_signals(table),
        }

    # -- selections --------------------------------------------------------------------------------------------------
    def bulk(
        self,
        op: BulkOp,
        episode_ids: Iterable[int],
        *,
        user: str,
        changes: Mapping[str, Any] | None = None,
        dataset: str | None = None,
    ) -> list[int]:
        """Apply `op` to every selected episode (all or nothing); returns the ids that changed."""
        ids = list(episode_ids)
        if op == "annotate":
            if not changes:
                raise AnnotationError("'annotate' needs the changes to apply")
            return [e.episode_id for e in self.annotations.bulk_edit(ids, changes, user=user)]
        if op == "move":
            if not dataset:
                raise AnnotationError("'move' needs the dataset to move to")
            return [e.episode_id for e in self.annotations.move(ids, dataset, user=user)]
        if op == "trash":
            return [e.episode_id for e in self.annotations.trash(ids, user=user)]
        if op == "restore":
            return [e.episode_id for e in self.annotations.restore(ids, user=user)]
        if op == "purge":
            return self.purge(ids)
        raise AnnotationError(f"unknown bulk operation {op!r}")

    def purge(self, episode_ids: Iterable[int]) -> list[int]:
        """Delete rows and files for good: only episodes already in the trash and in no snapshot."""
        ids = self.annotations.check_purgeable(episode_ids)
        for episode_id in ids:
            self.store.delete_episode(episode_id)
        return ids


def _rollout_signals(table) -> dict[str, Any]:
    """A policy rollout's per-step uncertainty (None where no policy predicted), intervention flags and actors;
    {} for an episode recorded without them."""
    if F.ACTOR not in table.column_names:
        return {}
    out: dict[str, Any] = {"actor": table.column(F.ACTOR).to_pylist(),
                           "intervention": table.column(F.INTERVENTION).to_pylist()}  # fmt: skip
    if F.UNCERTAINTY in table.column_names:
        out["uncertainty"] = [None if v is None or v != v else round(float(v), 5)
                              for v in table.column(F.UNCERTAINTY).to_pylist()]  # fmt: skip
    return out
