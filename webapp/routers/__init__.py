"""The REST API: one router per resource, collected here and mounted under /api."""

from fastapi import APIRouter

from webapp.routers import datasets, episodes, exports, labeling, robot, snapshots

api_router = APIRouter(prefix="/api")
for resource in (robot, episodes, labeling, datasets, snapshots, exports):
    api_router.include_router(resource.router)
