"""/api/training: launch a training job (a snapshot, a preset, options, optionally a base model to fine-tune).
Following, cancelling and retrying it is /api/jobs; the model it registers is in /api/models."""

from __future__ import annotations

from fastapi import APIRouter

from backend.jobs.train import OPTIONS, PRESETS, TrainingRequest, submit_training
from backend.services.audit import Action
from backend.services.retrain import launch_retrain
from webapp.deps import AuditDep, CurationDep, CurrentUserDep, JobsDep, ModelsDep
from webapp.errors import TrainingLaunchRoute, error_responses
from webapp.schemas import IdPath, JobOut, SnapshotOut
from webapp.training_schemas import RetrainIn, RetrainOut, TrainingJobIn, TrainingPresetsOut

router = APIRouter(prefix="/training", tags=["training"], route_class=TrainingLaunchRoute)


@router.get("/presets")
def training_presets() -> TrainingPresetsOut:
    """The presets a launch may name and the options it may set on top of one."""
    return TrainingPresetsOut(presets=PRESETS, options=list(OPTIONS))


@router.post("/jobs", status_code=202, responses=error_responses(404))
def launch_training(
    body: TrainingJobIn, jobs: JobsDep, curation: CurationDep, models: ModelsDep, user: CurrentUserDep, audit: AuditDep
) -> JobOut:
    """Queue a training job; a worker runs it. 404: unknown snapshot or base model; 422: an empty snapshot, a base
    model that does not fit the data, a bad option. Nothing is queued on an error."""
    request = TrainingRequest(
        snapshot=body.snapshot, preset=body.preset, base_model=body.base_model, model_name=body.model_name,
        options=body.options.model_dump(exclude_none=True), select=body.select, select_episodes=body.select_episodes,
        nproc_per_node=body.nproc_per_node,
    )  # fmt: skip
    job = submit_training(jobs, curation.snapshots, models, request, user=user.name)
    audit(Action.TRAINING_LAUNCH, "job", job.id, snapshot=job.config["snapshot"], preset=body.preset)
    return JobOut.model_validate(job)


retrain_router = APIRouter(prefix="/models", tags=["training"], route_class=TrainingLaunchRoute)


@retrain_router.post("/{model_id}/retrain", status_code=202, responses=error_responses(404))
def retrain(
    model_id: IdPath, body: RetrainIn, jobs: JobsDep, curation: CurationDep, models: ModelsDep, user: CurrentUserDep,
    audit: AuditDep,
) -> RetrainOut:  # fmt: skip
    """One click: the model's training snapshot + its correction takes (whole, or only the stretches operators
    drove) become a new snapshot, and a fine-tuning job from this model is queued. 404: unknown model or one
    without a training snapshot; 422: no corrections yet, a bad mode or preset."""
    snapshot, job = launch_retrain(jobs, curation, models, model_id=model_id, mode=body.mode, preset=body.preset,
                                   user=user.name)  # fmt: skip
    audit(Action.TRAINING_LAUNCH, "job", job.id, snapshot=snapshot.name, preset=body.preset, retrain_of=model_id,
          mode=body.mode)  # fmt: skip
    return RetrainOut(snapshot=SnapshotOut.model_validate(snapshot), job=JobOut.model_validate(job))
