"""The REST API: one router per resource, collected here and mounted under /api."""

from fastapi import APIRouter

from webapp.routers import curation, episodes, labeling, robot

api_router = APIRouter(prefix="/api")
api_router.include_router(robot.router)
api_router.include_router(episodes.router)
api_router.include_router(labeling.router)
api_router.include_router(curation.router)
