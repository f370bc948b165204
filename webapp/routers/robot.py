"""/api/robot: the live robot session (status, tasks, scene reset, command source, e-stop, recording)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException

from webapp.deps import SessionDep
from webapp.schemas import (
    AutoStopIn,
    EstopIn,
    RecordingRestartIn,
    RecordingSaveIn,
    RecordingStartIn,
    ResetIn,
    SavedOut,
    SourceIn,
    TaskOut,
)

router = APIRouter(prefix="/robot", tags=["robot"])


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a session call, turning its errors into HTTP ones: bad value 400, unknown 404, wrong state 409."""
    try:
        return fn(*args, **kwargs)
    except LookupError as error:
        raise HTTPException(404, str(error)) from error
    except ValueError as error:
        raise HTTPException(400, str(error)) from error
    except RuntimeError as error:
        raise HTTPException(409, str(error)) from error


@router.get("/status")
def status(session: SessionDep) -> dict:
    return session.status()


@router.get("/tasks")
def tasks(session: SessionDep) -> list[TaskOut]:
    return [TaskOut(**t) for t in session.tasks()]


@router.post("/reset")
def reset(body: ResetIn, session: SessionDep) -> dict:
    """A new scene (a new random seed unless one is given), optionally another task, colour or instruction."""
    return _call(session.reset, **body.model_dump())


@router.post("/source")
def source(body: SourceIn, session: SessionDep) -> dict:
    _call(session.set_source, body.name)
    return session.status()


@router.post("/estop")
def estop(body: EstopIn, session: SessionDep) -> dict:
    session.set_estop(body.engaged)
    return session.status()


@router.post("/recording/start")
def recording_start(body: RecordingStartIn, session: SessionDep) -> dict:
    _call(session.start_recording, body.operator, body.dataset)
    return session.status()


@router.post("/recording/save")
def recording_save(body: RecordingSaveIn, session: SessionDep) -> SavedOut:
    return SavedOut(episode_id=_call(session.save_recording, body.success))


@router.post("/recording/discard")
def recording_discard(session: SessionDep) -> dict:
    _call(session.discard_recording)
    return session.status()


@router.post("/recording/restart")
def recording_restart(body: RecordingRestartIn, session: SessionDep) -> dict:
    """Re-record: drop the current take (if any), put the scene back (same seed by default) and start again."""
    current = session.status()
    if current.get("recording", {}).get("active"):
        _call(session.discard_recording)
    if body.same_scene:
        _call(session.reset, seed=current.get("seed"))
    _call(session.start_recording, body.operator, body.dataset)
    return session.status()


@router.post("/recording/auto-stop")
def recording_auto_stop(body: AutoStopIn, session: SessionDep) -> dict:
    session.set_auto_stop(body.enabled)
    return session.status()
