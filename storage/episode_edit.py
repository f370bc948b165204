"""Trim and split: cut an episode into new episodes by frame range.

Episode files never change once saved (snapshots and caches rely on it), so a cut writes new episodes through
the normal recorder (crash-safe, checksummed, quality-flagged) and then moves the original to the trash, from
which it can be restored. Annotations carry over: instruction, paraphrases and notes as they are, sub-task
segments clipped to the new range and renumbered from 0. The success labels (the sim's check and the
operator's verdict) judge the end of a take, so only the part that keeps the original last frame inherits them.

Not one transaction: a crash after a new episode is saved but before the original is trashed leaves both live,
which loses nothing (trash one by hand).
"""

from __future__ import annotations

from typing import Any

import pyarrow.compute as pc

from storage import features as F
from storage.annotations import AnnotationService
from storage.episode_meta import EpisodeInfo, EpisodeMeta, read_signals
from storage.errors import AnnotationError, ConflictError

__all__ = ["copy_stretch", "split_episode", "trim_episode"]


def _check_live(info: EpisodeInfo, expected_version: int | None) -> None:
    if info.deleted_at is not None:
        raise ConflictError(f"episode {info.id} is in the trash; restore it first")
    if expected_version is not None and info.version != expected_version:
        raise ConflictError(
            f"episode {info.id} is at version {info.version}, but this cut was asked for on version "
            f"{expected_version}; reload it",
            current_version=info.version,
        )


def _clip_segments(segments: list[dict[str, Any]], start: int, end: int) -> list[dict[str, Any]]:
    """Segments overlapping [start, end], clipped to it and shifted so that `start` becomes frame 0."""
    out = []
    for s in segments:
        lo, hi = max(s["start"], start), min(s["end"], end)
        if lo <= hi:
            out.append({"start": lo - start, "end": hi - start, "text": s["text"]})
    return out


def _copy_range(
    store: Any, annotations: AnnotationService, info: EpisodeInfo, start: int, end: int, user: str, kind: str = "cut"
) -> int:
    """Record frames [start, end] (inclusive) of `info` as a new episode in the same dataset; returns its id.
    `kind` ("cut": trim or split, the original trashed; "stretch": a copy beside it) goes into extra.derived_from."""
    table = store.read_table(info.id)
    timestamps = table.column(F.TIMESTAMP).to_numpy()  # (T,) float32 seconds
    states = pc.list_flatten(table.column(F.OBS_STATE)).to_numpy().reshape(info.length, -1)  # (T, S)
    actions = pc.list_flatten(table.column(F.ACTION)).to_numpy().reshape(info.length, -1)  # (T, A)
    videos = {cam.name: store.read_frames(info.id, cam.name) for cam in info.cameras}  # {cam: (T, H, W, 3)}
    # A policy rollout's per-frame actor and intervention flags travel with the frames they describe.
    actors = table.column(F.ACTOR).to_pylist() if F.ACTOR in table.column_names else [None] * info.length
    flags = table.column(F.INTERVENTION).to_pylist() if F.INTERVENTION in table.column_names else [None] * info.length
    scores = table.column(F.UNCERTAINTY).to_pylist() if F.UNCERTAINTY in table.column_names else [None] * info.length
    signals = read_signals(table)  # training-only columns (the sim's grounding), (T, 2) each
    derived = {"episode_id": info.id, "uid": info.uid, "frames": [start, end], "kind": kind}
    extra = {**info.extra, "derived_from": derived}
    meta = EpisodeMeta(
        dataset=info.dataset,
        task=info.task,
        instruction=info.instruction,
        source=info.source,
        fps=info.fps,
        cameras=list(info.cameras),
        state_names=list(info.state_names),
        action_names=list(info.action_names),
        operator=info.operator,
        seed=info.seed,
        extra=extra,
    )
    keeps_end = end == info.length - 1
    recorder = store.begin(meta)
    try:
        for t in range(start, end + 1):
            recorder.add_frame(
                images={name: frames[t] for name, frames in videos.items()},
                state=states[t],
                action=actions[t],
                timestamp=float(timestamps[t] - timestamps[start]),
                actor=actors[t] or None,
                intervention=flags[t],
                uncertainty=scores[t],
                signals={name: values[t] for name, values in signals.items()},
            )
        new_id = recorder.save(
            auto_success=info.auto_success if keeps_end else None,
            human_success=info.human_success if keeps_end else None,
        )
    except BaseException:
        if recorder.status not in ("saved", "failed"):
            recorder.discard()
        raise
    changes: dict[str, Any] = {
        "paraphrases": list(info.paraphrases),
        "segments": _clip_segments(info.segments, start, end),
        "notes": info.notes,
    }
    if keeps_end and info.human_success is False:
        changes["failure_reason"] = info.failure_reason
    annotations.edit(new_id, changes, user=user, expected_version=1, action="derive")
    return new_id


def copy_stretch(
    store: Any, annotations: AnnotationService, episode_id: int, start: int, end: int, *, user: str
) -> int:
    """Frames [start, end] (inclusive) as a new episode of the same dataset, the original kept (e.g. the corrected
    stretches of a policy rollout, HG-DAgger style). Returns the new id."""
    info = store.get_episode(episode_id)
    _check_live(info, None)
    if not (isinstance(start, int) and isinstance(end, int)) or not 0 <= start <= end < info.length:
        raise AnnotationError(f"range {start}-{end} is outside episode {episode_id} (frames 0 to {info.length - 1})")
    return _copy_range(store, annotations, info, start, end, user, kind="stretch")


def trim_episode(
    store: Any,
    annotations: AnnotationService,
    episode_id: int,
    start: int,
    end: int,
    *,
    user: str,
    expected_version: int | None = None,
) -> int:
    """Keep frames [start, end] (inclusive) as a new episode; the original goes to the trash. Returns the new id."""
    info = store.get_episode(episode_id)
    _check_live(info, expected_version)
    if not (isinstance(start, int) and isinstance(end, int)) or not 0 <= start <= end < info.length:
        raise AnnotationError(
            f"trim range {start}-{end} is outside episode {episode_id}: frames run from 0 to {info.length - 1}"
        )
    if (start, end) == (0, info.length - 1):
        raise AnnotationError(f"trim range {start}-{end} keeps the whole episode; nothing to trim")
    new_id = _copy_range(store, annotations, info, start, end, user)
    annotations.trash([episode_id], user=user, action="trim")
    return new_id


def split_episode(
    store: Any,
    annotations: AnnotationService,
    episode_id: int,
    at: int,
    *,
    user: str,
    expected_version: int | None = None,
) -> tuple[int, int]:
    """Split before frame `at`: frames [0, at-1] and [at, last] become two new episodes, the original goes to
    the trash. Returns the two new ids."""
    info = store.get_episode(episode_id)
    _check_live(info, expected_version)
    if not isinstance(at, int) or not 1 <= at < info.length:
        raise AnnotationError(
            f"split frame {at} must be inside episode {episode_id}: between 1 and {info.length - 1} so that both "
            "parts have frames"
        )
    first = _copy_range(store, annotations, info, 0, at - 1, user)
    second = _copy_range(store, annotations, info, at, info.length - 1, user)
    annotations.trash([episode_id], user=user, action="split")
    return first, second
