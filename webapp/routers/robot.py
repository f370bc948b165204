"""/api/robot: the live robot session (status, tasks, scene reset, command source, e-stop, recording)."""

from __future__ import annotations

from fastapi import APIRouter

from webapp.deps import RobotSessionDep
from webapp.errors import RobotSessionRoute, error_responses
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

# The session's errors (bad value, unknown, wrong state) become 400 / 404 / 409 in webapp.errors.
router = APIRouter(prefix="/robot", tags=["robot"], route_class=RobotSessionRoute)
SESSION_ERRORS = error_responses(400, 404, 409)  # what the session may refuse a command with


@router.get("/status")
def status(robot: RobotSessionDep) -> dict:
    return robot.status()


@router.get("/tasks")
def tasks(robot: RobotSessionDep) -> list[TaskOut]:
    return [TaskOut(**t) for t in robot.tasks()]


@router.post("/reset", responses=SESSION_ERRORS)
def reset(body: ResetIn, robot: RobotSessionDep) -> dict:
    """A new scene (a new random seed unless one is given), optionally another task, colour or instruction."""
    return robot.reset(**body.model_dump())


@router.post("/source", responses=SESSION_ERRORS)
def source(body: SourceIn, robot: RobotSessionDep) -> dict:
    robot.set_source(body.name)
    return robot.status()


@router.post("/estop", responses=SESSION_ERRORS)
def estop(body: EstopIn, robot: RobotSessionDep) -> dict:
    robot.set_estop(body.engaged)
    return robot.status()


@router.post("/recording/start", responses=SESSION_ERRORS)
def recording_start(body: RecordingStartIn, robot: RobotSessionDep) -> dict:
    robot.start_recording(body.operator, body.dataset)
    return robot.status()


@router.post("/recording/save", responses=SESSION_ERRORS)
def recording_save(body: RecordingSaveIn, robot: RobotSessionDep) -> SavedOut:
    return SavedOut(episode_id=robot.save_recording(body.success))


@router.post("/recording/discard", responses=SESSION_ERRORS)
def recording_discard(robot: RobotSessionDep) -> dict:
    robot.discard_recording()
    return robot.status()


@router.post("/recording/restart", responses=SESSION_ERRORS)
def recording_restart(body: RecordingRestartIn, robot: RobotSessionDep) -> dict:
    """Re-record: drop the current take (if any), put the scene back (same seed by default) and start again."""
    current = robot.status()
    if current.get("recording", {}).get("active"):
        robot.discard_recording()
    if body.same_scene:
        robot.reset(seed=current.get("seed"))
    robot.start_recording(body.operator, body.dataset)
    return robot.status()


@router.post("/recording/auto-stop", responses=SESSION_ERRORS)
def recording_auto_stop(body: AutoStopIn, robot: RobotSessionDep) -> dict:
    robot.set_auto_stop(body.enabled)
    return robot.status()
