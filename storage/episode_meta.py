"""Episode metadata: the on-disk layout names, the dataclasses the store hands out, and input validation."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from storage import features
from storage.errors import (
    InvalidNameError,
)
from storage.models import NAME_MAX_LEN, EpisodeSource
from storage.success import effective_success

EPISODES_DIR = "episodes"
TMP_DIR = "tmp"
LOST_DIR = "lost+found"
TABLE_FILE = "data.parquet"
VIDEOS_DIR = "videos"
MANIFEST_FILE = "episode.json"
MANIFEST_FORMAT = "vla-episode"
MANIFEST_VERSION = 1
TRASH_SUFFIX = ".trash"
LOCK_SUFFIX = ".lock"  # tmp/<uid>.lock: flock held by the process recording that take

# Column names of the per-step table, the same as the LeRobot dataset format.
COL_TIMESTAMP = features.TIMESTAMP
COL_FRAME_INDEX = features.FRAME_INDEX
COL_STATE = features.OBS_STATE
COL_ACTION = features.ACTION

MAX_FPS = 1000
MAX_IMAGE_SIDE = 4096

NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
UID_RE = re.compile(r"[0-9a-f]{32}")


def validate_name(name: object, what: str = "dataset name") -> str:
    """Return ``name`` if it is a plain identifier usable as a folder name, else raise InvalidNameError."""
    rule = f"use 1-{NAME_MAX_LEN} letters, digits, '_', '.' or '-', not starting with '.'"
    if not isinstance(name, str):
        raise InvalidNameError(f"{what} must be a string, got {type(name).__name__}; {rule}")
    if not name:
        raise InvalidNameError(f"{what} is empty; {rule}")
    if len(name) > NAME_MAX_LEN:
        raise InvalidNameError(f"{what} {name[:20]!r}... is {len(name)} characters long; {rule}")
    if not NAME_RE.fullmatch(name):
        bad = sorted({c for c in name if not NAME_RE.fullmatch(c)})
        raise InvalidNameError(f"{what} {name!r} contains {''.join(bad)!r} (no path separators or spaces); {rule}")
    if name.startswith(".") or ".." in name:
        raise InvalidNameError(f"{what} {name!r} starts with '.' or contains '..'; {rule}")
    return name


@dataclass(frozen=True)
class CameraSpec:
    name: str
    height: int
    width: int

    def __iter__(self) -> Iterator[Any]:  # unpacks like a tuple: name, height, width = cam
        return iter((self.name, self.height, self.width))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "height": self.height, "width": self.width}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CameraSpec:
        return cls(name=d["name"], height=int(d["height"]), width=int(d["width"]))


@dataclass
class EpisodeMeta:
    """What is known about a take when recording starts."""

    dataset: str
    task: str
    instruction: str
    source: str
    fps: int
    cameras: list[CameraSpec]
    state_names: list[str]
    action_names: list[str]
    operator: str | None = None
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EpisodeInfo:
    """A saved episode, detached from any session."""

    id: int
    uid: str
    dataset: str
    task: str
    instruction: str
    source: str
    fps: int
    length: int  # frames
    cameras: list[CameraSpec]
    state_names: list[str]
    action_names: list[str]
    operator: str | None
    seed: int | None
    auto_success: bool | None
    human_success: bool | None
    created_at: datetime
    path: str  # posix, relative to the data dir
    checksums: dict[str, str]
    extra: dict[str, Any]
    # Annotation (storage.annotations edits these) and curation state.
    paraphrases: list[str] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)  # [{"start", "end" (inclusive), "text"}]
    failure_reason: str | None = None
    notes: str = ""
    version: int = 1
    deleted_at: datetime | None = None
    quality_flags: dict[str, str] = field(default_factory=dict)  # {flag name: detail}

    @property
    def duration(self) -> float:
        return self.length / self.fps

    @property
    def effective_success(self) -> bool | None:
        """The operator's verdict when given, else the task's automatic check (storage.success)."""
        return effective_success(self.human_success, self.auto_success)


@dataclass(frozen=True)
class DatasetInfo:
    id: int
    name: str
    description: str
    created_at: datetime
    num_episodes: int


@dataclass(frozen=True)
class EpisodeFiles:
    """Absolute paths of one episode's files."""

    root: Path
    table: Path
    videos: dict[str, Path]
    manifest: Path


@dataclass
class RecoveryReport:
    removed_temp: list[str] = field(default_factory=list)  # tmp/ leftovers of killed takes, deleted
    recovered: list[int] = field(default_factory=list)  # ids of complete folders registered from their manifest
    quarantined: list[str] = field(default_factory=list)  # "path: reason", moved to lost+found/
    finished_deletes: list[str] = field(default_factory=list)  # uids whose interrupted delete was completed

    @property
    def changed(self) -> bool:
        return bool(self.removed_temp or self.recovered or self.quarantined or self.finished_deletes)

    def __str__(self) -> str:
        if not self.changed:
            return "store clean: nothing to recover"
        parts = []
        if self.removed_temp:
            parts.append(f"removed {len(self.removed_temp)} unfinished take(s) from tmp/")
        if self.recovered:
            parts.append(f"registered {len(self.recovered)} saved-but-unregistered episode(s): ids {self.recovered}")
        if self.finished_deletes:
            parts.append(f"finished {len(self.finished_deletes)} interrupted delete(s)")
        if self.quarantined:
            parts.append(f"moved {len(self.quarantined)} unverifiable folder(s) to {LOST_DIR}/: {self.quarantined}")
        return "; ".join(parts)


def as_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(value)


def _names(values: object, what: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"{what} must be a non-empty list of strings, got {values!r}")
    out = [str(v) for v in values]
    if any(not isinstance(v, str) or not v for v in values):
        raise ValueError(f"{what} must contain non-empty strings, got {values!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"{what} has duplicates: {out}")
    return out


def validate_meta(meta: EpisodeMeta) -> EpisodeMeta:
    """Check every field and return a normalised copy (plain types, source as its string value)."""
    dataset = validate_name(meta.dataset, "dataset name")
    task = validate_name(meta.task, "task name")
    if not isinstance(meta.instruction, str):
        raise ValueError(f"instruction must be a string, got {type(meta.instruction).__name__}")
    try:
        source = EpisodeSource(meta.source).value
    except ValueError:
        allowed = ", ".join(s.value for s in EpisodeSource)
        raise ValueError(f"source {meta.source!r} is not one of: {allowed}") from None
    fps = as_int(meta.fps, "fps")
    if not 0 < fps <= MAX_FPS:
        raise ValueError(f"fps must be in 1..{MAX_FPS}, got {fps}")
    if not isinstance(meta.cameras, Sequence) or not meta.cameras:
        raise ValueError("cameras must be a non-empty list of CameraSpec(name, height, width)")
    cameras: list[CameraSpec] = []
    for cam in meta.cameras:
        if isinstance(cam, Mapping):
            cam = CameraSpec.from_dict(cam)
        if not isinstance(cam, CameraSpec):
            raise ValueError(f"cameras must hold CameraSpec(name, height, width), got {cam!r}")
        name = validate_name(cam.name, "camera name")
        h, w = as_int(cam.height, f"camera {name!r} height"), as_int(cam.width, f"camera {name!r} width")
        for side, v in (("height", h), ("width", w)):
            if not 2 <= v <= MAX_IMAGE_SIDE or v % 2:
                raise ValueError(
                    f"camera {name!r} {side} must be even and in 2..{MAX_IMAGE_SIDE} (H.264 yuv420p), got {v}"
                )
        cameras.append(CameraSpec(name, h, w))
    if len({c.name for c in cameras}) != len(cameras):
        raise ValueError(f"camera names must be unique, got {[c.name for c in cameras]}")
    state_names = _names(meta.state_names, "state_names")
    action_names = _names(meta.action_names, "action_names")
    if meta.operator is not None and (not isinstance(meta.operator, str) or not 0 < len(meta.operator) <= 128):
        raise ValueError(f"operator must be None or a 1-128 character string, got {meta.operator!r}")
    seed = None if meta.seed is None else as_int(meta.seed, "seed")
    if seed is not None and not -(2**63) <= seed < 2**63:
        raise ValueError(f"seed must fit in 64 bits, got {seed}")
    if not isinstance(meta.extra, Mapping):
        raise ValueError(f"extra must be a dict, got {type(meta.extra).__name__}")
    try:
        extra = json.loads(json.dumps(dict(meta.extra), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"extra must be JSON-serialisable (str keys, finite numbers): {exc}") from None
    return EpisodeMeta(
        dataset=dataset,
        task=task,
        instruction=meta.instruction,
        source=source,
        fps=fps,
        cameras=cameras,
        state_names=state_names,
        action_names=action_names,
        operator=meta.operator,
        seed=seed,
        extra=extra,
    )


def asdict_meta(meta: EpisodeMeta) -> dict[str, Any]:
    d = asdict(meta)
    d["cameras"] = [c.to_dict() for c in meta.cameras]
    return d


def read_signals(table) -> dict[str, np.ndarray]:
    """{name: (T, 2) float32} of an episode table's training-signal columns (features.is_signal_key; NaN where
    unknown): what recordings store and data loading, edits and exports read back."""
    import pyarrow.compute as pc

    return {
        name: pc.list_flatten(table.column(name)).to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, 2)
        for name in table.column_names
        if features.is_signal_key(name)
    }
