"""THE route -> permission map, and the one guard that applies it to every /api route (a dependency of the api
router). What each role holds is backend.services.roles' table; this file only says what each route needs.

Fails closed: a route missing from ROUTE_PERMISSIONS is refused with 500 (and create_app refuses to build an app
with one: check_every_route_mapped). Anonymous callers get 401, a role without the permission 403, a write
authenticated by the session cookie without the CSRF header 403, and a lease-bound robot command (ROBOT_COMMANDS)
from anyone but the signed-in holder of the control lease 403.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Final

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.routing import APIRoute

from backend.services.auth import UserInfo
from backend.services.roles import Permission, allowed, may_command, may_manage_job
from webapp.deps import CSRF_HEADER, Caller, get_auth, get_caller, get_robot_session

P = Permission
API_PREFIX: Final = "/api"
PUBLIC: Final = "public"  # open without sign-in (only the sign-in itself)
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

ROUTE_PERMISSIONS: dict[tuple[str, str], Permission | str] = {
    # robot
    ("GET", "/api/robot/status"): P.ROBOT_READ,
    ("GET", "/api/robot/tasks"): P.ROBOT_READ,
    ("POST", "/api/robot/reset"): P.ROBOT_CONTROL,
    ("POST", "/api/robot/source"): P.ROBOT_CONTROL,
    ("POST", "/api/robot/estop"): P.ESTOP_ENGAGE,  # releasing it: robot.control + the lease (checked in the route)
    ("POST", "/api/robot/recording/start"): P.ROBOT_CONTROL,
    ("POST", "/api/robot/recording/save"): P.ROBOT_CONTROL,
    ("POST", "/api/robot/recording/discard"): P.ROBOT_CONTROL,
    ("POST", "/api/robot/recording/restart"): P.ROBOT_CONTROL,
    ("POST", "/api/robot/recording/auto-stop"): P.ROBOT_CONTROL,
    ("POST", "/api/robot/lease/break"): P.CONTROL_BREAK,
    # a registered model on the robot: loading one is an engineer's (it does not move anything; starting it is
    # POST /api/robot/source by the lease holder); stepping in belongs to the lease holder
    ("POST", "/api/robot/policy"): P.TRAINING_WRITE,
    ("DELETE", "/api/robot/policy"): P.TRAINING_WRITE,
    ("POST", "/api/robot/policy/takeover"): P.ROBOT_CONTROL,
    ("POST", "/api/robot/policy/handback"): P.ROBOT_CONTROL,
    ("POST", "/api/robot/policy/continue"): P.ROBOT_CONTROL,
    ("POST", "/api/robot/policy/overlays"): P.ROBOT_CONTROL,
    # episodes, labeling, curation
    ("GET", "/api/episodes"): P.EPISODES_READ,
    ("GET", "/api/episodes/{episode_id}"): P.EPISODES_READ,
    ("GET", "/api/episodes/{episode_id}/thumbnail.jpg"): P.EPISODES_READ,
    ("GET", "/api/episodes/{episode_id}/video/{camera}.mp4"): P.EPISODES_READ,
    ("PATCH", "/api/episodes/{episode_id}/annotation"): P.EPISODES_EDIT,
    ("GET", "/api/episodes/{episode_id}/history"): P.EPISODES_READ,
    ("POST", "/api/episodes/{episode_id}/undo"): P.EPISODES_EDIT,
    ("POST", "/api/episodes/{episode_id}/trim"): P.EPISODES_EDIT,
    ("POST", "/api/episodes/{episode_id}/split"): P.EPISODES_EDIT,
    ("POST", "/api/episodes/bulk"): P.CURATION_WRITE,
    ("GET", "/api/episodes/{episode_id}/signals"): P.EPISODES_READ,
    ("POST", "/api/episodes/{episode_id}/quality"): P.EPISODES_EDIT,
    ("GET", "/api/labeling/vocabulary"): P.EPISODES_READ,
    ("GET", "/api/datasets"): P.EPISODES_READ,
    ("POST", "/api/datasets/{name}/merge"): P.CURATION_WRITE,
    ("GET", "/api/snapshots"): P.EPISODES_READ,
    ("POST", "/api/snapshots"): P.CURATION_WRITE,
    ("GET", "/api/snapshots/{snapshot}"): P.EPISODES_READ,
    ("POST", "/api/exports"): P.EXPORTS_WRITE,
    ("GET", "/api/exports"): P.EPISODES_READ,
    ("GET", "/api/exports/{job_id}"): P.EPISODES_READ,
    # jobs (exports, training, evaluation): everyone who reads episodes reads jobs; cancel and retry need
    # exports.write at least (an operator's own export), and the route asks roles.may_manage_job for the rest
    ("GET", "/api/jobs"): P.EPISODES_READ,
    ("GET", "/api/jobs/{job_id}"): P.EPISODES_READ,
    ("GET", "/api/jobs/{job_id}/log"): P.EPISODES_READ,
    ("GET", "/api/jobs/{job_id}/metrics"): P.EPISODES_READ,
    ("GET", "/api/jobs/{job_id}/videos/{name}"): P.EPISODES_READ,  # an evaluation job's rollout videos
    ("POST", "/api/jobs/{job_id}/cancel"): P.EXPORTS_WRITE,
    ("POST", "/api/jobs/{job_id}/retry"): P.EXPORTS_WRITE,
    # the model registry: read by whoever reads training (engineers, managers, admins; operators pick no model:
    # rollouts default to the production one), changed by whoever trains (engineers, admins)
    ("GET", "/api/models"): P.TRAINING_READ,
    ("GET", "/api/models/{model_id}"): P.TRAINING_READ,
    ("GET", "/api/models/{model_id}/compare/{other_id}"): P.TRAINING_READ,
    ("GET", "/api/models/{model_id}/curves"): P.TRAINING_READ,
    ("GET", "/api/models/{model_id}/download"): P.TRAINING_READ,
    ("POST", "/api/models/{model_id}/promote"): P.TRAINING_WRITE,
    ("POST", "/api/models/{model_id}/archive"): P.TRAINING_WRITE,
    ("PATCH", "/api/models/{model_id}"): P.TRAINING_WRITE,
    ("POST", "/api/models/import"): P.TRAINING_WRITE,
    ("POST", "/api/models/{model_id}/evaluate"): P.TRAINING_WRITE,  # an evaluation job (followed under /api/jobs)
    ("GET", "/api/models/{model_id}/evaluations"): P.TRAINING_READ,
    ("GET", "/api/evaluation-suites"): P.TRAINING_READ,
    ("GET", "/api/learning-rules/{model_name}"): P.TRAINING_READ,
    ("PUT", "/api/learning-rules/{model_name}"): P.TRAINING_WRITE,  # continual learning on/off (audited)
    ("POST", "/api/models/{model_id}/retrain"): P.TRAINING_WRITE,  # a snapshot + a fine-tuning job (audited)
    # every policy rollout with its outcome (read-only: written by the session and evaluation jobs)
    # managers' metrics: read-only, for managers, engineers and admins
    ("GET", "/api/metrics"): P.METRICS_READ,
    ("GET", "/api/metrics/{chart}"): P.METRICS_READ,
    ("GET", "/api/metrics/{chart}.csv"): P.METRICS_READ,
    ("GET", "/api/rollouts"): P.TRAINING_READ,
    ("GET", "/api/rollouts/{rollout_id}"): P.TRAINING_READ,
    ("GET", "/api/rollouts.csv"): P.TRAINING_READ,
    ("GET", "/api/rollouts.parquet"): P.TRAINING_READ,
    # training jobs: launched by engineers and admins (followed, cancelled, retried under /api/jobs)
    ("GET", "/api/training/presets"): P.TRAINING_READ,
    ("POST", "/api/training/jobs"): P.TRAINING_WRITE,
    # one's own account
    ("POST", "/api/auth/signin"): PUBLIC,
    ("POST", "/api/auth/signout"): P.ACCOUNT_SELF,
    ("GET", "/api/auth/me"): P.ACCOUNT_SELF,
    ("POST", "/api/auth/password"): P.ACCOUNT_SELF,
    ("GET", "/api/auth/tokens"): P.ACCOUNT_SELF,
    ("POST", "/api/auth/tokens"): P.ACCOUNT_SELF,
    ("DELETE", "/api/auth/tokens/{token_id}"): P.ACCOUNT_SELF,
    # administration
    ("GET", "/api/users"): P.USERS_ADMIN,
    ("POST", "/api/users"): P.USERS_ADMIN,
    ("PATCH", "/api/users/{name}"): P.USERS_ADMIN,
    ("POST", "/api/users/{name}/disable"): P.USERS_ADMIN,
    ("POST", "/api/users/{name}/enable"): P.USERS_ADMIN,
    ("POST", "/api/users/{name}/reset-password"): P.USERS_ADMIN,
    ("GET", "/api/audit"): P.AUDIT_READ,
    ("GET", "/api/audit.csv"): P.AUDIT_READ,
}

# The WebSocket: watching needs robot.read; driving (the lease) robot.control, and then only its holder commands.
WEBSOCKET_PERMISSIONS: dict[str, Permission] = {"/ws/teleop": P.ROBOT_READ}

# Robot commands that belong to the holder of the control lease (names from backend.services.roles).
ROBOT_COMMANDS: dict[tuple[str, str], str] = {
    ("POST", "/api/robot/reset"): "reset",
    ("POST", "/api/robot/source"): "source",
    ("POST", "/api/robot/recording/start"): "recording.start",
    ("POST", "/api/robot/recording/save"): "recording.save",
    ("POST", "/api/robot/recording/discard"): "recording.discard",
    ("POST", "/api/robot/recording/restart"): "recording.restart",
    ("POST", "/api/robot/recording/auto-stop"): "recording.auto_stop",
    ("POST", "/api/robot/policy/takeover"): "policy.takeover",
    ("POST", "/api/robot/policy/handback"): "policy.handback",
    ("POST", "/api/robot/policy/continue"): "policy.continue",
    ("POST", "/api/robot/policy/overlays"): "overlays",
}


def refuse_unless_allowed(user: UserInfo, permission: Permission) -> None:
    if not allowed(user.role, permission):
        raise HTTPException(403, f"{user.role} may not {permission}")


def refuse_unless_may_manage_job(user: UserInfo, *, kind: str, created_by: str | None) -> None:
    """403 unless `user` may cancel or retry this job (backend.services.roles.may_manage_job)."""
    if not may_manage_job(user.role, user.name, kind=kind, created_by=created_by):
        raise HTTPException(403, f"{user.role} may cancel or retry only the export jobs they started")


def refuse_unless_lease_holder(user: UserInfo, robot, command: str) -> None:
    """403 unless `user` holds the control lease (holders are known by user name: any of their tabs may command)."""
    holder = robot.status().get("controller")
    if not may_command(user.name, holder, command):
        who = f"{holder!r} holds it" if holder else "nobody holds it: take control in the Teleop tab first"
        raise HTTPException(403, f"only the holder of the control lease may {command}; {who}")


def authorize(request: Request, caller: Annotated[Caller, Depends(get_caller)]) -> None:
    """The guard on every /api route: the route's permission, CSRF for cookie-authenticated writes, the lease."""
    # The matched APIRoute's path is relative to the api router (its resource router's prefix included): every
    # resource router sits directly under API_PREFIX, so this is the full template ("/api/episodes/{episode_id}").
    # A router nested one level deeper would not be found in the table and be refused (fail closed).
    route = request.scope.get("route")
    key = (request.method, API_PREFIX + getattr(route, "path", "?"))
    permission = ROUTE_PERMISSIONS.get(key)
    if permission is None:
        raise HTTPException(500, f"{key[0]} {key[1]} has no entry in the permission table; refused")
    if permission == PUBLIC:
        return
    user = caller.user
    if user is None:
        raise HTTPException(401, "sign in first")
    if caller.via == "cookie" and request.method in STATE_CHANGING:
        csrf = request.headers.get(CSRF_HEADER)
        if not get_auth(request).sessions.check_csrf(caller.session, csrf):
            raise HTTPException(403, f"missing or wrong CSRF token: send the vla_csrf cookie's value as {CSRF_HEADER}")
    refuse_unless_allowed(user, Permission(permission))
    command = ROBOT_COMMANDS.get(key)
    if command is not None:
        refuse_unless_lease_holder(user, get_robot_session(request), command)


def check_every_route_mapped(api_routers: Iterable[APIRouter], ws_router: APIRouter) -> None:
    """Refuse to build an app with an /api route or a WebSocket that the table does not cover (fail closed)."""
    missing = [
        f"{method} {API_PREFIX}{route.path}"
        for router in api_routers
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in sorted(route.methods - {"HEAD", "OPTIONS"})
        if (method, API_PREFIX + route.path) not in ROUTE_PERMISSIONS
    ]
    missing += [
        f"WEBSOCKET {r.path}" for r in ws_router.routes if getattr(r, "path", None) not in WEBSOCKET_PERMISSIONS
    ]
    if missing:
        raise RuntimeError(f"routes without an entry in webapp.permissions: {', '.join(missing)}")
