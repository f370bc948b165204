"""Typed dependencies: routes get the robot session, the episode store and the settings from app.state."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from backend.settings import Settings


def get_session(request: Request) -> Any:
    return request.app.state.session


def get_store(request: Request) -> Any:
    return request.app.state.store


def get_curation(request: Request) -> Any:
    return request.app.state.curation


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


# The session is a backend.control.RobotSession (or a test double with the same API); the store an EpisodeStore.
SessionDep = Annotated[Any, Depends(get_session)]
StoreDep = Annotated[Any, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
CurationDep = Annotated[Any, Depends(get_curation)]  # a backend.services.curation.CurationService
