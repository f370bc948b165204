"""Request and response bodies of /api/training (the job itself comes back as schemas.JobOut)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from webapp.schemas import DbId, JobOut, SnapshotOut, _In

Preset = Literal["quick", "standard"]


class TrainingOptionsIn(_In):
    """TrainConfig options over the preset (unset: the preset's or the product's default)."""

    steps: int | None = Field(None, ge=1, le=10_000_000, description="optimizer steps (replaces the time budget)")
    minutes: float | None = Field(None, gt=0, le=7 * 24 * 60, description="budget of training and selection")
    batch_size: int | None = Field(None, ge=1, le=4096)
    lr: float | None = Field(None, gt=0, le=1.0)
    weight_decay: float | None = Field(None, ge=0, le=1.0)
    warmup_steps: int | None = Field(None, ge=0, le=1_000_000)
    val_fraction: float | None = Field(None, ge=0, lt=1)
    augment: bool | None = None
    paraphrase: bool | None = None
    only_successful: bool | None = None
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    ema_decay: float | None = Field(None, gt=0, lt=1)
    checkpoint_every: int | None = Field(None, ge=0, le=10_000_000, description="steps between checkpoints (0: none)")
    policy_overrides: dict[str, int | float | bool | str | list[int] | list[str]] | None = Field(
        None,
        max_length=32,
        description='policy config fields for a model trained from scratch, e.g. {"d_model": 64}; cameras, '
        "state_dim and action_dim default to the snapshot's. An unknown field fails the job with its name.",
    )


class TrainingJobIn(_In):
    snapshot: str | DbId = Field(description="the snapshot (name or id) to train on: its frozen annotations")
    preset: Preset = "standard"
    base_model: DbId | None = Field(None, description="a registered model to fine-tune; none: from scratch")
    model_name: str | None = Field(
        None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="registry name of the result"
    )
    options: TrainingOptionsIn = Field(default_factory=TrainingOptionsIn)
    select: bool = Field(True, description="choose the checkpoint by closed-loop success on validation seeds")
    select_episodes: int | None = Field(None, ge=1, le=200, description="validation rollouts per task and colour")
    nproc_per_node: int = Field(1, ge=1, le=64, description="DDP ranks (torchrun) the worker runs the job as")


class TrainingPresetsOut(BaseModel):
    presets: dict[str, dict[str, Any]]
    options: list[str]


class RetrainIn(_In):
    """Retrain a model from its corrections (backend.services.retrain)."""

    mode: Literal["whole", "corrected"] = Field(
        "corrected", description="whole correction takes, or only the stretches the operator drove (HG-DAgger)"
    )
    preset: str = Field("quick", max_length=32, description="a training preset (GET /api/training/presets)")


class RetrainOut(BaseModel):
    snapshot: SnapshotOut
    job: JobOut
