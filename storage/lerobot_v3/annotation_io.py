"""Episode annotations (paraphrases, sub-task segments, failure reason, notes) in a LeRobot v3.0 folder.

Annotations are spread over what a v3.0 folder allows, following LeRobot 0.4.x's own conventions and without
changing what LeRobot trains on:

- ``meta/tasks.parquet`` holds every instruction and paraphrase once (instructions first, so an export without
  annotations has the same task indices as before); a frame's ``task_index`` stays its episode's instruction.
  Paraphrases are there because they are alternative task strings listed in the episode's ``tasks``.
- ``meta/subtasks.parquet`` (LeRobot's optional sub-task table, written like tasks.parquet: index = the text,
  column ``subtask_index``) is always written: row 0 is ``NO_SUBTASK_TEXT`` (""), then every distinct segment
  text in first-seen order. Segment texts are not added to tasks.parquet (one that is also an instruction or a
  paraphrase is in both).
- the data files gain ``subtask_index`` (int64, one per frame): the subtasks.parquet row of the segment covering
  the frame, ``NO_SUBTASK`` (0) where no segment does, so LeRobot's ``item["subtask"]`` is the segment text or "".
  An export without segments still has the column (all 0) and a one-row subtasks.parquet: one schema for all.
- ``meta/episodes``: the standard ``tasks`` list is the instruction followed by the paraphrases, and our own
  ``vla_dashboard/*`` columns carry the exact values (segments as JSON). An import restores annotations from
  those columns only; the sub-task column and file are derived from them and ignored on import.

Export reads annotations only from the EpisodeInfo objects it is given (never from SQL): a snapshot export hands
in frozen copies, and those are what must land in the folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from storage.errors import AnnotationError, FormatError, StoreError

from . import layout as L

NO_SUBTASK_TEXT = ""  # row 0 of meta/subtasks.parquet: "no sub-task"
NO_SUBTASK = 0  # subtask_index of a frame no segment covers (the row of NO_SUBTASK_TEXT)

# Extra episodes-parquet columns (after L.VLA_PREFIX) and their arrow types.
ANNOTATION_TYPES: dict[str, pa.DataType] = {
    "paraphrases": pa.list_(pa.string()),
    "segments": pa.string(),  # JSON: [{"start": int, "end": int (inclusive), "text": str}, ...]
    "failure_reason": pa.string(),
    "notes": pa.string(),
    "annotation_version": pa.int64(),  # provenance only; an import starts a new history
}


# -- export --------------------------------------------------------------------------------------------------------
def task_strings(infos: Sequence[Any]) -> dict[str, int]:
    """{text: task_index} for every instruction and paraphrase, deduplicated, instructions first, first seen first."""
    tasks: dict[str, int] = {}
    for e in infos:
        tasks.setdefault(e.instruction, len(tasks))
    for e in infos:
        for text in e.paraphrases:
            tasks.setdefault(text, len(tasks))
    return tasks


def subtask_strings(infos: Sequence[Any]) -> dict[str, int]:
    """{text: subtask_index} for meta/subtasks.parquet: NO_SUBTASK_TEXT first, then each distinct segment text."""
    subtasks = {NO_SUBTASK_TEXT: NO_SUBTASK}
    for e in infos:
        for s in e.segments:
            subtasks.setdefault(s["text"], len(subtasks))
    return subtasks


def episode_tasks(info: Any) -> list[str]:
    """The episodes-parquet ``tasks`` list: the instruction first (LeRobot's tools take tasks[0] as the task)."""
    return list(dict.fromkeys([info.instruction, *info.paraphrases]))


def subtask_indices(info: Any, length: int, subtasks: dict[str, int]) -> np.ndarray:
    """(length,) int64: each frame's segment text as a subtask_index (``subtask_strings``), NO_SUBTASK outside
    every segment.

    Segments come from an EpisodeInfo (validated when they were edited), but a frozen snapshot copy is checked
    again here: a segment past the end, an overlap or an empty text would silently mislabel frames in the export.
    """
    out = np.full(length, NO_SUBTASK, dtype=np.int64)
    prev_end = -1
    for s in info.segments:
        start, end = int(s["start"]), int(s["end"])
        if s["text"] == NO_SUBTASK_TEXT:
            raise StoreError(f"episode {info.id}: segment at frames {start}-{end} has no text; fix it before exporting")
        if not prev_end < start <= end < length:
            raise StoreError(
                f"episode {info.id}: segment {s['text']!r} (frames {start}-{end}) is outside its {length} frames or "
                "overlaps the previous one; fix the episode's segments before exporting"
            )
        out[start : end + 1] = subtasks[s["text"]]
        prev_end = end
    return out


def episode_columns(info: Any) -> dict[str, Any]:
    """The ``vla_dashboard/*`` annotation columns of one episodes-parquet row."""
    segments = [{"start": int(s["start"]), "end": int(s["end"]), "text": s["text"]} for s in info.segments]
    return {
        L.VLA_PREFIX + "paraphrases": list(info.paraphrases),
        L.VLA_PREFIX + "segments": json.dumps(segments, ensure_ascii=False),
        L.VLA_PREFIX + "failure_reason": info.failure_reason,
        L.VLA_PREFIX + "notes": info.notes or "",
        L.VLA_PREFIX + "annotation_version": int(info.version),
    }


# -- import --------------------------------------------------------------------------------------------------------
def read_annotations(row: dict[str, Any], *, length: int, human_success: bool | None, where: str) -> dict | None:
    """The AnnotationService edit that restores one exported episode's annotations, checked against the episode;
    None when the folder carries none for it (other LeRobot datasets, or an unannotated episode).

    Checked here, before anything is imported, so a bad annotation is a FormatError with nothing to undo.
    ``where`` names the episode in messages ("<folder>: episode 3").
    """
    from storage.annotations import validate_changes  # imported late like the store itself (see importer)

    raw_segments = row.get(L.VLA_PREFIX + "segments")
    try:
        segments = json.loads(raw_segments) if raw_segments else []
    except (TypeError, ValueError) as e:
        raise FormatError(f"{where}: {L.VLA_PREFIX}segments is not JSON ({e})") from e
    changes: dict[str, Any] = {}
    paraphrases = row.get(L.VLA_PREFIX + "paraphrases")
    if paraphrases:
        changes["paraphrases"] = paraphrases
    if segments:
        changes["segments"] = segments
    if row.get(L.VLA_PREFIX + "failure_reason") is not None:
        changes["failure_reason"] = row[L.VLA_PREFIX + "failure_reason"]
    if row.get(L.VLA_PREFIX + "notes"):
        changes["notes"] = row[L.VLA_PREFIX + "notes"]
    if not changes:
        return None
    changes["human_success"] = human_success  # already set when the episode is saved; named so the edit is whole
    try:
        validate_changes(changes, length=length, human_success=human_success)
    except AnnotationError as e:
        raise FormatError(f"{where}: invalid annotation: {e}") from e
    return changes
