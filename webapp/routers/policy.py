"""/api/robot/policy: a registered model driving the live robot, and the operator stepping in.

Loading (engineers, admins) installs the model as the session's "policy" source without moving anything; starting
it is POST /api/robot/source {"name": "policy"} by the lease holder. When it asks for help the lease holder takes
over (the take goes on recording, flagged as a correction), hands back, or lets it continue. Thin routes over
backend.services.live_policy and the session (backend.control.RobotSession)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from backend.services.audit import Action
from backend.services.live_policy import load_policy
from webapp.deps import AuditDep, ModelsDep, RobotSessionDep
from webapp.errors import RobotSessionRoute, error_responses
from webapp.schemas import OverlaysIn, PolicyLoadIn, TakeoverIn

router = APIRouter(prefix="/robot/policy", tags=["robot"], route_class=RobotSessionRoute)
LOAD_ERRORS = error_responses(
    400, 404, 409,
    described={400: "the model does not fit this robot (cameras, state or action size)",
               404: "no such model, or none in production", 409: "the model's files are missing or altered"},
)  # fmt: skip


@router.post("", responses=LOAD_ERRORS)
def load(body: PolicyLoadIn, robot: RobotSessionDep, models: ModelsDep, audit: AuditDep, request: Request) -> dict:
    """Load a registered model (default: the production one) as the robot's policy; replaces one loaded before.
    Takes a few seconds: the model gets a process of its own (Settings.policy_process)."""
    model = load_policy(models, robot, model_id=body.model_id, help_k=body.help_k, ask_for_help=body.ask_for_help,
                        process=request.app.state.settings.policy_process)  # fmt: skip
    audit(Action.POLICY_LOAD, f"model:{model.id}", name=model.name, version=model.version)
    return robot.status()


@router.delete("", responses=error_responses(409))
def unload(robot: RobotSessionDep, audit: AuditDep) -> dict:
    """Remove the loaded policy (the arm holds if it was driving)."""
    robot.set_policy(None)
    audit(Action.POLICY_UNLOAD, "robot")
    return robot.status()


@router.post("/takeover", responses=error_responses(400))
def takeover(robot: RobotSessionDep, audit: AuditDep, body: TakeoverIn | None = None) -> dict:
    """The lease holder drives instead of the policy, from the next tick; `by: "expert"` lets the sim's scripted
    expert correct it instead (400 on a robot without one)."""
    by = body.by if body is not None else "teleop"
    robot.take_over(by)
    audit(Action.POLICY_TAKEOVER, "robot", by=by)
    return robot.status()


@router.post("/handback", responses=error_responses(400))
def handback(robot: RobotSessionDep) -> dict:
    robot.hand_back()
    return robot.status()


@router.post("/continue", responses=error_responses(400))
def keep_going(robot: RobotSessionDep) -> dict:
    """Answer a request for help with 'continue'."""
    robot.continue_policy()
    return robot.status()


@router.post("/overlays")
def overlays(body: OverlaysIn, robot: RobotSessionDep) -> dict:
    """Whether frames carry the policy's attention and uncertainty (the console's overlay switch)."""
    robot.set_overlays(body.enabled)
    return robot.status()
