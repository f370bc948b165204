"""/api/robot: the live robot session (status, tasks, scene reset, command source, e-stop, recording, breaking the
control lease). Who may send which command is webapp.permissions' business (the api router's guard); the only
check here is the one that depends on the body: releasing the e-stop belongs to the lease holder."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from backend.services.audit import Action
from backend.services.roles import Permission
from webapp.deps import AuditDep, CurrentUserDep, RobotSessionDep
from webapp.errors import RobotSessionRoute, error_responses
from webapp.permissions import refuse_unless_allowed, refuse_unless_lease_holder
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
def estop(body: EstopIn, robot: RobotSessionDep, user: CurrentUserDep, audit: AuditDep) -> dict:
    """Engaging is open to every signed-in user; releasing belongs to the holder of the control lease."""
    if not body.engaged:
        refuse_unless_allowed(user, Permission.ROBOT_CONTROL)
        refuse_unless_lease_holder(user, robot, "estop.release")
    robot.set_estop(body.engaged)
    audit(Action.ESTOP_ENGAGE if body.engaged else Action.ESTOP_RELEASE, "robot")
    return robot.status()


@router.post("/recording/start", responses=SESSION_ERRORS)
def recording_start(body: RecordingStartIn, robot: RobotSessionDep, user: CurrentUserDep, audit: AuditDep) -> dict:
    robot.start_recording(user.name, body.dataset)
    audit("recording.start", "robot", dataset=body.dataset)
    return robot.status()


@router.post("/recording/save", responses=SESSION_ERRORS)
def recording_save(body: RecordingSaveIn, robot: RobotSessionDep, audit: AuditDep) -> SavedOut:
    episode_id = robot.save_recording(body.success)
    audit(Action.RECORDING_SAVE, "episode", episode_id, success=body.success)
    return SavedOut(episode_id=episode_id)


@router.post("/recording/discard", responses=SESSION_ERRORS)
def recording_discard(robot: RobotSessionDep, audit: AuditDep) -> dict:
    was_recording = robot.status().get("recording", {}).get("active", False)
    robot.discard_recording()
    if was_recording:
        audit(Action.RECORDING_DISCARD, "robot")
    return robot.status()


@router.post("/recording/restart", responses=SESSION_ERRORS)
def recording_restart(body: RecordingRestartIn, robot: RobotSessionDep, user: CurrentUserDep, audit: AuditDep) -> dict:
    """Re-record: drop the current take (if any), put the scene back (same seed by default) and start again."""
    current = robot.status()
    if current.get("recording", {}).get("active"):
        robot.discard_recording()
        audit(Action.RECORDING_DISCARD, "robot", restart=True)
    if body.same_scene:
        robot.reset(seed=current.get("seed"))
    robot.start_recording(user.name, body.dataset)
    audit("recording.start", "robot", dataset=body.dataset)
    return robot.status()


@router.post("/recording/auto-stop", responses=SESSION_ERRORS)
def recording_auto_stop(body: AutoStopIn, robot: RobotSessionDep) -> dict:
    robot.set_auto_stop(body.enabled)
    return robot.status()


@router.post("/lease/break", responses=error_responses(409, described={409: "nobody holds the lease"}))
def break_lease(robot: RobotSessionDep, audit: AuditDep) -> dict:
    """Take the control lease from its holder (admins): their socket stays open as a viewer; the arm holds."""
    holder = robot.break_lease()
    if holder is None:
        raise HTTPException(409, "nobody holds the control lease")
    audit(Action.CONTROL_BREAK, "robot", holder=holder)
    return robot.status()
