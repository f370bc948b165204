"""Retrain from failures and corrections: one call builds the next training set from a model's own training
snapshot plus the takes in which operators corrected it, and queues a fine-tuning job from that model.

    snapshot, job = launch_retrain(queue, curation, registry, model_id=3, mode="corrected", user="erin")

Corrections are the model's `intervention` episodes (recorded while it drove and an operator took over; the model
is named in their metadata). Modes:
- "whole": each correction take as it was recorded (the policy's frames too), HG-DAgger's simplest variant;
- "corrected": only the stretches the operator drove (per-frame `intervention` flag), each copied into a new
  episode beside the take (the take itself is kept): the corrections alone, as HG-DAgger trains on.
When the job ends, its model is registered with the parent as `parent_id`, and the registry's comparison shows the
two side by side on the same evaluation seeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backend.jobs.train import TrainingRequest, check_preset_and_options, submit_training
from storage.episode_edit import copy_stretch
from storage.episode_meta import EpisodeInfo
from storage.errors import NotFoundError
from storage.features import INTERVENTION

__all__ = ["MODES", "corrections_of", "corrected_stretches", "launch_retrain"]

MODES = ("whole", "corrected")
MIN_STRETCH = 3  # frames: a shorter correction is a key tap, not a demonstration


def corrections_of(store: Any, model_id: int) -> list[EpisodeInfo]:
    """The live intervention takes recorded while `model_id` drove, oldest first (a trimmed take counts; the
    stretches an earlier retrain copied out of a take do not)."""
    return [
        e
        for e in store.list_episodes()
        if e.source == "intervention"
        and (e.extra.get("model") or {}).get("id") == model_id
        and (e.extra.get("derived_from") or {}).get("kind") != "stretch"
    ]


def corrected_stretches(flags: np.ndarray, min_len: int = MIN_STRETCH) -> list[tuple[int, int]]:
    """[(start, end)] inclusive runs of True in a (T,) bool array, at least `min_len` frames long."""
    runs, start = [], None
    for t, flag in enumerate(np.append(np.asarray(flags, dtype=bool), False)):
        if flag and start is None:
            start = t
        elif not flag and start is not None:
            if t - start >= min_len:
                runs.append((start, t - 1))
            start = None
    return runs


def launch_retrain(
    queue: Any,
    curation: Any,
    registry: Any,
    *,
    model_id: int,
    mode: str = "corrected",
    preset: str = "quick",
    user: str,
    after: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[Any, Any]:
    """Build the snapshot (parent's snapshot + corrections) and queue the fine-tuning job; returns both.
    `options`: TrainConfig fields over the preset, as a training job takes them (backend.jobs.train.OPTIONS).
    NotFoundError: unknown model, or one without a training snapshot; ValueError: a bad mode, no corrections."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    check_preset_and_options(preset, options or {})  # before the snapshot is written
    parent = registry.get(model_id)
    if parent.snapshot_id is None:
        raise NotFoundError(f"{parent.label} has no training snapshot (imported?): nothing to extend")
    store = curation.store
    takes = corrections_of(store, model_id)
    if not takes:
        raise ValueError(f"{parent.label} has no corrections yet: take over from it while recording, then save")
    if mode == "whole":
        episode_ids = [e.id for e in takes]
    else:
        episode_ids = []
        for take in takes:
            table = store.read_table(take.id)
            flags = np.asarray(table.column(INTERVENTION).to_pylist(), dtype=bool) if INTERVENTION in \
                table.column_names else np.zeros(take.length, dtype=bool)  # fmt: skip
            for start, end in corrected_stretches(flags):
                episode_ids.append(copy_stretch(store, curation.annotations, take.id, start, end, user=user))
        if not episode_ids:
            raise ValueError(f"{parent.label}'s corrections have no stretch of {MIN_STRETCH}+ operator frames")
    n = len(curation.snapshots.list())
    name = f"{parent.name}-v{parent.version}-corrections-{n + 1}"
    snapshot = curation.snapshots.extend(
        name, parent.snapshot_id, episode_ids, user=user,
        description=f"{parent.label}'s training snapshot + {len(takes)} correction take(s), mode {mode}",
    )  # fmt: skip
    request = TrainingRequest(snapshot=snapshot.id, preset=preset, base_model=parent.id, model_name=parent.name,
                              after=after, options=dict(options or {}))  # fmt: skip
    job = submit_training(queue, curation.snapshots, registry, request, user=user)
    return snapshot, job
