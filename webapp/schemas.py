"""Request and response schemas of the REST API (one set per resource)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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


class EpisodesPublic(BaseModel):
    data: list[EpisodePublic]
    count: int
