"""The REST API: one router per resource, collected here and mounted under /api. Every route passes the one guard
(webapp.permissions.authorize: sign-in, role, CSRF, control lease) and documents its 401 and 403."""

from fastapi import APIRouter, Depends

from webapp.errors import error_responses
from webapp.permissions import API_PREFIX, authorize
from webapp.routers import (
    audit,
    auth,
    datasets,
    episodes,
    evaluations,
    exports,
    jobs,
    labeling,
    metrics,
    models,
    policy,
    robot,
    rollouts,
    snapshots,
    training,
    users,
)

RESOURCE_ROUTERS = [
    r if isinstance(r, APIRouter) else r.router
    for r in (
        robot,
        policy,
        episodes,
        labeling,
        datasets,
        snapshots,
        exports,
        jobs,
        training,
        training.retrain_router,
        evaluations,
        evaluations.suites_router,
        models,
        rollouts,
        metrics,
        auth,
        users,
        audit,
    )  # fmt: skip
]
api_router = APIRouter(prefix=API_PREFIX, dependencies=[Depends(authorize)], responses=error_responses(401, 403))
for resource_router in RESOURCE_ROUTERS:
    api_router.include_router(resource_router)
