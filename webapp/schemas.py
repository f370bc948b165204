"""Request and response schemas of the REST API (one set per resource)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, computed_field, field_validator, model_validator

from backend.jobs import JobInfo
from backend.jobs.export import export_steps
from backend.jobs.export import out_dir as export_out_dir
from backend.services.curation import BulkOp
from storage.episode_meta import EpisodeInfo
from storage.episode_query import SortKey, SuccessLabel
from storage.models import FailureReason, JobStatus, QualityFlagName

# SQLite (and PostgreSQL's BIGINT) store signed 64-bit integers: anything larger is refused here with a 422 rather
# than raising OverflowError (a 500) in the driver.
SQL_INT_MAX = 2**63 - 1
DbId = Annotated[int, Field(ge=1, le=SQL_INT_MAX)]
FrameIndex = Annotated[int, Field(ge=0, le=2**31 - 1)]  # a frame of an episode (0-based)
# Path parameters: FastAPI needs Path(...) rather than Field(...) in the annotation.
IdPath = Annotated[int, Path(ge=1, le=SQL_INT_MAX)]
NamePath = Annotated[str, Path(min_length=1, max_length=64)]

DatasetName = Field(default="teleop", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")


def _reject_lone_surrogates(data: Any) -> Any:
    """Refuse any string (value or key, at any depth) that is not valid Unicode: JSON may carry a lone surrogate
    ("\\ud800"), which Python decodes but cannot encode again, so storing or answering it would fail with a 500.
    Iterative, so a deeply nested body cannot exhaust the stack."""
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError("text must be valid Unicode (it holds a lone surrogate)") from None
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return data


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        return _reject_lone_surrogates(data)


class _Out(BaseModel):
    """A response read straight from the stored object (`Model.model_validate(info)`): fields by attribute name."""

    model_config = ConfigDict(from_attributes=True)


# -- robot ---------------------------------------------------------------------------------------------------------
class ResetIn(_In):
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1, description="None: a new random seed")
    task: str | None = Field(default=None, max_length=64)
    colour: str | None = Field(default=None, max_length=32)
    instruction: str | None = Field(default=None, max_length=300, description="free text or a registered template")


class SourceIn(_In):
    name: Literal["idle", "teleop", "expert", "policy"]  # "policy" once one is loaded (POST /api/robot/policy)


class PolicyLoadIn(_In):
    """Which registered model drives, and when it asks for help."""

    model_id: DbId | None = Field(None, description="a registered model; none: the production model")
    help_k: int = Field(5, ge=1, le=300, description="consecutive predictions above the threshold before it asks")
    ask_for_help: bool = Field(True, description="pause and ask when unsure (needs a calibrated threshold)")


class OverlaysIn(_In):
    enabled: bool


class TakeoverIn(_In):
    by: Literal["teleop", "expert"] = Field(
        "teleop", description="who drives instead: the operator, or (sim) the scripted expert from the current state"
    )


class EstopIn(_In):
    engaged: bool


class RecordingStartIn(_In):
    """The take's operator is the signed-in user (no `operator` field: identity comes from the session)."""

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
class SegmentOut(_Out):
    start: int = Field(description="first frame")
    end: int = Field(description="last frame (inclusive)")
    text: str


class EpisodePublic(_Out):
    """An episode as the API shows it, built from storage's EpisodeInfo; the URLs are computed from id and cameras."""

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
    duration_s: Annotated[float, AfterValidator(lambda s: round(s, 3))] = Field(validation_alias="duration")
    cameras: list[str]
    auto_success: bool | None
    human_success: bool | None
    effective_success: bool | None = Field(description="the operator's verdict when given, else the automatic check")
    created_at: datetime
    paraphrases: list[str] = []
    segments: list[SegmentOut] = []
    failure_reason: FailureReason | None = None
    notes: str = ""
    version: int = Field(1, description="annotation version: send it back with an edit (optimistic concurrency)")
    deleted_at: datetime | None = Field(None, description="in the trash since (null: live)")
    quality_flags: dict[str, str] = Field({}, description="{flag: what was measured}")
    extra: dict[str, Any] = Field({}, description="what the recorder noted: for a policy rollout or correction the "
                                  "model (id, name, version), interventions and their frames")

    @field_validator("cameras", mode="before")
    @classmethod
    def _camera_names(cls, cameras: list[Any]) -> list[Any]:
        return [getattr(c, "name", c) for c in cameras]  # storage's CameraSpec(name, height, width) -> name

    @computed_field
    @property
    def thumbnail_url(self) -> str:
        return f"/api/episodes/{self.id}/thumbnail.jpg"

    @computed_field
    @property
    def video_urls(self) -> dict[str, str]:
        return {c: f"/api/episodes/{self.id}/video/{c}.mp4" for c in self.cameras}


def to_public(info: EpisodeInfo) -> EpisodePublic:
    return EpisodePublic.model_validate(info)


class EpisodesPublic(BaseModel):
    data: list[EpisodePublic]
    count: int


# -- labeling and curation -----------------------------------------------------------------------------------------
class SegmentIn(_In):
    start: FrameIndex = Field(description="first frame (0-based)")
    end: FrameIndex = Field(description="last frame, inclusive")
    text: str = Field(max_length=500)


class AnnotationFieldsIn(_In):
    """The annotation fields an edit may set; only the fields sent are changed."""

    instruction: str | None = Field(None, max_length=500)
    paraphrases: list[str] | None = Field(None, max_length=50)
    segments: list[SegmentIn] | None = Field(None, max_length=200)
    human_success: bool | None = None
    failure_reason: FailureReason | None = Field(None, description="only with human_success false")
    notes: str | None = Field(None, max_length=5000)

    def changes(self) -> dict:
        return self.model_dump(exclude_unset=True, exclude={"version"}, mode="json")


class AnnotationPatchIn(AnnotationFieldsIn):
    """Only the fields sent are changed; `version` is the one the edit was made on (409 if it moved since)."""

    version: DbId | None = Field(None, description="or send it as the If-Match header")


class UndoIn(_In):
    version: DbId | None = Field(None, description="refuse (409) if the episode moved past this version")


class TrimIn(UndoIn):
    start: FrameIndex = Field(description="first frame kept")
    end: FrameIndex = Field(description="last frame kept (inclusive)")


class SplitIn(UndoIn):
    at: FrameIndex = Field(description="the first frame of the second part")


class BulkIn(_In):
    episode_ids: list[DbId] = Field(min_length=1, max_length=10_000)
    op: BulkOp
    changes: AnnotationFieldsIn | None = Field(
        None, description="annotate: the annotation fields to set on every episode (as in a single edit)"
    )
    dataset: str | None = Field(None, min_length=1, max_length=64, description="move: the target dataset")


class EpisodeIdsOut(BaseModel):
    episode_ids: list[int]


class EventOut(_Out):
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
    sort_keys: list[SortKey]


class SignalsOut(BaseModel):
    fps: int
    timestamps: list[float]
    state_names: list[str]
    action_names: list[str]
    state: list[list[float]] = Field(description="(T, S)")
    action: list[list[float]] = Field(description="(T, A)")
    # Policy rollouts only (absent for teleop and scripted takes): per step, who acted, whether an operator was
    # correcting the policy, and the policy's uncertainty score (null where no policy predicted).
    actor: list[str] | None = None
    intervention: list[bool] | None = None
    uncertainty: list[float | None] | None = None


class DatasetOut(_Out):
    id: int
    name: str
    description: str
    created_at: datetime
    num_episodes: int


class MergeIn(_In):
    into: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")


class MergedOut(BaseModel):
    moved: int


class SnapshotIn(_In):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    dataset: str = Field(min_length=1, max_length=64)
    description: str = Field("", max_length=2000)
    success: SuccessLabel | None = Field(None, description="only episodes with this effective label")
    episode_ids: list[DbId] | None = Field(
        None, max_length=10_000, description="exactly these episodes (of the dataset)"
    )


class SnapshotOut(_Out):
    id: int
    name: str
    dataset: str
    description: str
    created_by: str
    created_at: datetime
    num_episodes: int
    num_frames: int
    episodes: list[tuple[int, int]] | None = Field(None, description="[(episode id, annotation version)], in order")


class ExportIn(_In):
    """Exactly one of `dataset` and `snapshot`."""

    dataset: str | None = Field(None, min_length=1, max_length=64)
    snapshot: str | None = Field(None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _exactly_one(self) -> ExportIn:
        if (self.dataset is None) == (self.snapshot is None):
            raise ValueError("give exactly one of 'dataset' or 'snapshot'")
        return self

    def target(self) -> tuple[Literal["dataset", "snapshot"], str]:
        """(kind, name) of what to export."""
        return ("dataset", self.dataset) if self.dataset is not None else ("snapshot", self.snapshot)


# -- jobs (backend.jobs: run by worker processes) ------------------------------------------------------------------
class JobOut(_Out):
    id: int
    kind: str = Field(description="export, train, evaluate, ...")
    status: JobStatus
    config: dict[str, Any]
    progress: float = Field(description="0..1, as the job last reported it")
    message: str | None = Field(description="what it is doing now, e.g. 'step 1200/3000'")
    created_by: str | None
    created_at: datetime
    started_at: datetime | None = Field(description="when its latest attempt started")
    finished_at: datetime | None
    heartbeat_at: datetime | None = Field(description="its worker's latest sign of life")
    worker: str | None = Field(description="the worker running it ('host:pid')")
    attempts: int = Field(description="claims so far: more than 1 after a lost worker or a resume")
    cancel_requested: bool
    error: str | None = Field(description="why it failed (the traceback's end; the log has all of it)")
    result: dict[str, Any] = Field(description="references to what it made (an export folder, a model id)")


class JobsOut(BaseModel):
    data: list[JobOut]
    count: int = Field(description="jobs matching the filters, all pages")


class JobRetryIn(_In):
    fresh: bool = Field(
        False,
        strict=True,  # "yes" or 1 is refused, not read as True: this one deletes the job's checkpoints
        description="start over with an empty job folder; default: resume (training from its checkpoint)",
    )


class JobMetricsOut(BaseModel):
    records: list[dict[str, Any]] = Field(description="lines of the job's metrics.jsonl, oldest first")
    next: int = Field(description="pass as `after` to get only the records written since")


class ExportJobOut(JobOut):
    """An export job: the job itself and the export's view of it (what, by whom, where, how far)."""

    target: Literal["dataset", "snapshot"]
    name: str
    user: str | None
    state: Literal["queued", "running", "done", "failed", "cancelled"] = Field(description="done = succeeded")
    done: int = Field(description="progress steps done: one per episode table and one per episode video")
    total: int = Field(description="progress steps in all (0 until the export has started)")
    out_dir: str

    @classmethod
    def of(cls, job: JobInfo, data_dir: FilePath) -> ExportJobOut:
        done, total = export_steps(job)
        state = "done" if job.status == JobStatus.SUCCEEDED else job.status.value
        return cls.model_validate(
            JobOut.model_validate(job).model_dump()
            | {"target": job.config["target"], "name": job.config["name"], "user": job.created_by, "state": state}
            | {"done": done, "total": total, "out_dir": str(export_out_dir(data_dir, job))}
        )
