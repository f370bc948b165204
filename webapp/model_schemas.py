"""Request and response bodies of /api/models: the registry (backend.services.models), its lineage, the side-by-side
comparison and the evaluation jobs of a model (backend.jobs.evaluate)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from storage.models import ModelStage
from webapp.schemas import _In, _Out


class ModelOut(_Out):
    id: int
    name: str
    version: int = Field(description="1, 2, ... per name")
    policy_type: str = Field(description="the registered policy (config.json's model_type)")
    stage: ModelStage = Field(description="production: the default for rollouts, one per name")
    path: str = Field(description="the model's folder on the server (e.g. for run.py eval --model)")
    files: dict[str, str] = Field(description="{relative path: sha256} as registered")
    config: dict[str, Any] = Field(description="the policy's config.json")
    parent_id: int | None = Field(description="the model it was fine-tuned from")
    snapshot_id: int | None = Field(description="the snapshot it was trained on")
    job_id: int | None = Field(description="the job that made it")
    metrics: dict[str, Any] = Field(
        description="val_loss, train_loss, steps, uncertainty_threshold; closed_loop: {episodes, successes, "
        "success_rate, wilson_95, seeds, task} when it was rolled out"
    )
    notes: str | None
    created_by: str | None
    created_at: datetime

    @field_validator("path", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        return str(value)


class ModelsOut(BaseModel):
    data: list[ModelOut] = Field(description="newest first: the page asked for (limit, offset)")
    count: int = Field(description="how many models match the filters in all")


class ModelRefOut(BaseModel):
    id: int
    name: str
    version: int
    stage: ModelStage
    snapshot_id: int | None
    job_id: int | None


class LineageSnapshotOut(BaseModel):
    id: int
    name: str
    dataset: str
    num_episodes: int
    episode_ids: list[int] = Field(description="the snapshot's episodes, in order")


class LineageJobOut(BaseModel):
    id: int
    kind: str
    status: str
    created_by: str | None
    finished_at: datetime | None


class LineageOut(BaseModel):
    parents: list[ModelRefOut] = Field(description="the model it was fine-tuned from, then that one's parent, ...")
    snapshot: LineageSnapshotOut | None
    job: LineageJobOut | None


class ModelDetailOut(ModelOut):
    lineage: LineageOut
    problems: list[str] = Field(description="missing, altered or unexpected files; [] when the files are intact")


class DiffOut(BaseModel):
    key: str
    a: Any
    b: Any


class ClosedLoopCompareOut(BaseModel):
    a: dict[str, Any] | None
    b: dict[str, Any] | None
    same_seeds: bool | None = Field(description="true: both rolled out on the same seeds; null: not known")
    note: str


class EvaluationOut(BaseModel):
    """A finished evaluation job of a model (backend.jobs.evaluate)."""

    job_id: int
    finished_at: datetime | None
    created_by: str | None
    seeds: dict[str, list[int]] = Field(description='{"pick/red": [first seed, episodes]}')
    max_steps: int | None
    suite: str | None = Field(None, description="the named evaluation suite it ran, if any")
    overall: dict[str, Any] = Field(description="success_rate, successes, episodes, wilson_95, grounding_rate, ...")
    per_group: dict[str, dict[str, Any]] = Field(description="the same per task/colour")
    failure_videos: list[dict[str, Any]] | None = Field(
        None, description='failed rollouts with a video: [{"group", "seed", "video"}], each served by '
        "GET /api/jobs/{job_id}/videos/{video}")


class EvaluationsOut(BaseModel):
    data: list[EvaluationOut] = Field(description="newest first")


class EvaluationPairOut(BaseModel):
    """Both models' newest evaluation on one set of seeds."""

    seeds: dict[str, list[int]]
    max_steps: int | None
    a: EvaluationOut
    b: EvaluationOut
    difference: float | None = Field(None, description="success rate of A minus B")
    difference_95: list[float] | None = Field(None, description="Newcombe's 95% interval of the difference")
    significant: bool | None = Field(None, description="the interval excludes 0")


class ModelCompareOut(BaseModel):
    a: ModelOut
    b: ModelOut
    config_diff: list[DiffOut] = Field(description="config keys whose values differ")
    metrics: list[DiffOut] = Field(description="every metric of either, side by side")
    closed_loop: ClosedLoopCompareOut
    evaluations: list[EvaluationPairOut] = Field(description="evaluations of both on the same seeds")


class EvaluationIn(_In):
    """What to roll the model out on. Episode i of a colour uses seed_bases[colour] + i; the default bases are the
    test seeds (100000 red, 101000 green, 102000 blue), so models evaluated alike compare on the same scenes."""

    tasks: list[str] = Field(default_factory=lambda: ["pick"], min_length=1, max_length=8)
    colours: list[str] | None = Field(None, min_length=1, max_length=8, description="default: every sim colour")
    episodes: int = Field(10, ge=1, le=1000, description="rollouts per task and colour")
    seed_bases: dict[str, int] | None = Field(None, max_length=8, description="first seed per colour")
    max_steps: int = Field(200, ge=1, le=10_000, description="steps per rollout before it counts as a failure")
    suite: str | None = Field(None, max_length=64, description="a named suite (GET /api/evaluation-suites): fixes "
                              "tasks, colours, seeds, instructions and steps, so versions compare on the same episodes")
    videos: Literal["failures", "all", "none"] = Field(
        "failures", description="which rollouts keep an MP4 with the attention overlay (the failures by default)")


class ModelNotesIn(_In):
    notes: str = Field(max_length=10_000)


class ModelCurvesOut(BaseModel):
    records: list[dict[str, Any]] = Field(description="the training's metrics.jsonl copied with the model")


class LearningRuleIn(_In):
    """Continual learning for a model name (backend.services.continual)."""

    enabled: bool = True
    every_n: int = Field(10, ge=1, le=10_000, description="new corrections of the production model per retrain")
    mode: Literal["whole", "corrected"] = "corrected"
    suite: str = Field("held-out", max_length=64, description="where the A/B gate compares parent and child")
    preset: str = Field("quick", max_length=32)
    margin: float = Field(0.0, ge=0.0, lt=1.0, description="how far above the parent the interval must lie")


class LearningRuleOut(BaseModel):
    model_name: str
    enabled: bool
    every_n: int
    mode: str
    suite: str
    preset: str
    margin: float
    corrections_seen: int
    created_by: str | None
    updated_at: datetime
    last_event: str | None = Field(None, description="what the rule did last, and why")
