"""Request and response schemas of the REST API (one set per resource)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.services.curation import BulkOp
from storage.episode_query import SuccessLabel
from storage.models import FailureReason, QualityFlagName

OperatorName = Field(min_length=1, max_length=64, pattern=r"^[\w .@+-]+$")
DatasetName = Field(default="teleop", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# -- robot ---------------------------------------------------------------------------------------------------------
class ResetIn(_In):
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1, description="None: a new random seed")
    task: str | None = Field(default=None, max_length=64)
    colour: str | None = Field(default=None, max_length=32)
    instruction: str | None = Field(default=None, max_length=300, description="free text or a registered template")


class SourceIn(_In):
    name: Literal["idle", "teleop", "expert"]


class EstopIn(_In):
    engaged: bool


class RecordingStartIn(_In):
    operator: str = OperatorName
    dataset: str = DatasetName


class RecordingRestartIn(RecordingStartIn):
    same_scene: bool = Field(default=True, description="reset the scene with the current seed before recording")


class RecordingSaveIn(_In):
    success: bool


class AutoStopIn(_In):
    enabled: bool


class SavedOut(BaseModel):
    episode_id: int


class TaskOut(BaseModel):
    name: str
    colours: list[str]
    templates: list[str]


# -- episodes ------------------------------------------------------------------------------------------------------
class EpisodePublic(BaseModel):
    id: int
    uid: str
    dataset: str
    task: str
    instruction: str
    source: str
    operator: str | None
    seed: int | None
    fps: int
    length: int
    duration_s: float
    cameras: list[str]
    auto_success: bool | None
    human_success: bool | None
    created_at: datetime
    thumbnail_url: str
    video_urls: dict[str, str]
    paraphrases: list[str] = []
    segments: list[SegmentOut] = []
    failure_reason: FailureReason | None = None
    notes: str = ""
    version: int = Field(1, description="annotation version: send it back with an edit (optimistic concurrency)")
    deleted_at: datetime | None = Field(None, description="in the trash since (null: live)")
    quality_flags: dict[str, str] = Field({}, description="{flag: what was measured}")


class SegmentOut(BaseModel):
    start: int = Field(description="first frame")
    end: int = Field(description="last frame (inclusive)")
    text: str


class EpisodesPublic(BaseModel):
    data: list[EpisodePublic]
    count: int


# -- labeling and curation -----------------------------------------------------------------------------------------
class SegmentIn(_In):
    start: int = Field(description="first frame (0-based)")
    end: int = Field(description="last frame, inclusive")
    text: str = Field(max_length=500)


class _UserIn(_In):
    user: str = OperatorName


class AnnotationPatchIn(_UserIn):
    """Only the fields sent are changed; `version` is the one the edit was made on (409 if it moved since)."""

    version: int | None = Field(None, ge=1, description="or send it as the If-Match header")
    instruction: str | None = Field(None, max_length=500)
    paraphrases: list[str] | None = Field(None, max_length=50)
    segments: list[SegmentIn] | None = Field(None, max_length=200)
    human_success: bool | None = None
    failure_reason: FailureReason | None = Field(None, description="only with human_success false")
    notes: str | None = Field(None, max_length=5000)

    def changes(self) -> dict:
        return self.model_dump(exclude_unset=True, exclude={"user", "version"}, mode="json")


class UndoIn(_UserIn):
    version: int | None = Field(None, ge=1, description="refuse (409) if the episode moved past this version")


class TrimIn(UndoIn):
    start: int = Field(description="first frame kept")
    end: int = Field(description="last frame kept (inclusive)")


class SplitIn(UndoIn):
    at: int = Field(description="the first frame of the second part")


class BulkIn(_UserIn):
    episode_ids: list[int] = Field(min_length=1, max_length=10_000)
    op: BulkOp
    changes: dict | None = Field(None, description="annotate: the annotation fields to set on every episode")
    dataset: str | None = Field(None, min_length=1, max_length=64, description="move: the target dataset")


class EpisodeIdsOut(BaseModel):
    episode_ids: list[int]


class EventOut(BaseModel):
    id: int
    version: int
    user: str
    at: datetime
    action: str
    changes: dict[str, list] = Field(description="{field: [before, after]}")
    undone_by: int | None


class VocabularyOut(BaseModel):
    failure_reasons: list[FailureReason]
    quality_flags: list[QualityFlagName]
    sources: list[str]
    success_labels: list[SuccessLabel]


class SignalsOut(BaseModel):
    fps: int
    timestamps: list[float]
    state_names: list[str]
    action_names: list[str]
    state: list[list[float]] = Field(description="(T, S)")
    action: list[list[float]] = Field(description="(T, A)")


class DatasetOut(BaseModel):
    id: int
    name: str
    description: str
    created_at: datetime
    num_episodes: int


class MergeIn(_UserIn):
    into: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")


class MergedOut(BaseModel):
    moved: int


class SnapshotIn(_UserIn):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    dataset: str = Field(min_length=1, max_length=64)
    description: str = Field("", max_length=2000)
    success: SuccessLabel | None = Field(None, description="only episodes with this effective label")
    episode_ids: list[int] | None = Field(None, description="exactly these episodes (of the dataset)")


class SnapshotOut(BaseModel):
    id: int
    name: str
    dataset: str
    description: str
    created_by: str
    created_at: datetime
    num_episodes: int
    num_frames: int
    episodes: list[tuple[int, int]] | None = Field(None, description="[(episode id, annotation version)], in order")


class ExportIn(_UserIn):
    dataset: str | None = Field(None, min_length=1, max_length=64)
    snapshot: str | None = Field(None, min_length=1, max_length=64)


class ExportJobOut(BaseModel):
    id: int
    kind: str
    name: str
    user: str
    state: Literal["queued", "running", "done", "failed"] = Field(description="queued until the worker is free")
    done: int = Field(description="progress steps done: one per episode table and one per episode video")
    total: int = Field(description="progress steps in all (0 until the export has started)")
    out_dir: str
    error: str | None
    created_at: datetime
    finished_at: datetime | None
