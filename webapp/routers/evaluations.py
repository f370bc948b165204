"""/api/models/{id}/evaluate and /evaluations: a registered model rolled out in the sim on fixed seeds by an
evaluation job (backend.jobs.evaluate), and the results of those jobs. Launching is training.write (engineers,
admins) and audited; the job is followed, cancelled and retried under /api/jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request

from backend.jobs.evaluate import EvaluationRequest, submit_evaluation
from backend.services.audit import Action
from webapp.deps import AuditDep, CurrentUserDep, JobsDep, ModelsDep
from webapp.errors import EvaluationLaunchRoute, error_responses
from webapp.model_schemas import EvaluationIn, EvaluationOut, EvaluationsOut, LearningRuleIn, LearningRuleOut
from webapp.schemas import IdPath, JobOut

router = APIRouter(prefix="/models", tags=["models"], route_class=EvaluationLaunchRoute)
INTEGRITY = {409: "the model's files are missing or altered (the answer lists them): refused"}


@router.post("/{model_id}/evaluate", status_code=202, responses=error_responses(404, 409, described=INTEGRITY))
def evaluate_model(
    model_id: IdPath, body: EvaluationIn, jobs: JobsDep, models: ModelsDep, user: CurrentUserDep, audit: AuditDep
) -> JobOut:
    """Queue an evaluation job; a worker runs it. 404: unknown model; 409: its files are missing or altered; 422:
    a task or colour the sim does not know, or a model the sim cannot drive. Nothing is queued on an error."""
    request = EvaluationRequest(
        model_id=model_id, tasks=tuple(body.tasks), colours=tuple(body.colours) if body.colours else None,
        episodes=body.episodes, seed_bases=body.seed_bases, max_steps=body.max_steps, suite=body.suite,
        videos=body.videos,
    )  # fmt: skip
    job = submit_evaluation(jobs, models, request, user=user.name)
    audit(Action.EVALUATION_LAUNCH, "job", job.id, model_id=model_id, seeds=job.config["seeds"])
    return JobOut.model_validate(job)


@router.get("/{model_id}/evaluations", responses=error_responses(404))
def model_evaluations(model_id: IdPath, models: ModelsDep) -> EvaluationsOut:
    """The model's finished evaluation jobs, newest first."""
    return EvaluationsOut(data=[EvaluationOut.model_validate(e) for e in models.evaluations(model_id)])


suites_router = APIRouter(tags=["models"])


@suites_router.get("/evaluation-suites")
def evaluation_suites() -> list[dict]:
    """The named evaluation suites (backend.services.eval_suites): what each rolls out."""
    from backend.services.eval_suites import SUITES

    return [s.to_dict() for s in SUITES.values()]


@suites_router.get("/learning-rules/{model_name}", responses=error_responses(404))
def learning_rule(model_name: Annotated[str, Path(max_length=64)], request: Request) -> LearningRuleOut:
    """The continual-learning rule of a model name and what it did last."""
    from backend.services.continual import LearningRules

    return LearningRuleOut.model_validate(LearningRules(request.app.state.store.session_factory).get(model_name),
                                          from_attributes=True)  # fmt: skip


@suites_router.put("/learning-rules/{model_name}")
def set_learning_rule(
    model_name: Annotated[str, Path(max_length=64)], body: LearningRuleIn, request: Request, user: CurrentUserDep,
    audit: AuditDep,
) -> LearningRuleOut:  # fmt: skip
    """Switch continual learning on or off for a model name: every `every_n` corrections of its production model
    queue a retrain and the A/B gate on `suite` (the child is promoted only if it wins there by the margin)."""
    from backend.services.continual import LearningRules

    try:
        rule = LearningRules(request.app.state.store.session_factory).set(model_name, user=user.name,
                                                                          **body.model_dump())  # fmt: skip
    except ValueError as error:
        raise HTTPException(422, str(error)) from None
    audit(Action.LEARNING_RULE_SET, f"model:{model_name}", **body.model_dump())
    return LearningRuleOut.model_validate(rule, from_attributes=True)
