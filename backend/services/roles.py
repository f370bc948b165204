"""THE role matrix: what each role may do, as one table of permissions. Every REST route and WebSocket message maps
to exactly one permission (the web layer holds that route -> permission map); nothing else decides access.

    Operators  teleop, recording, labeling and curation (snapshots, exports, trash and purge included)
    Engineers  all of that, plus training, models, rollouts and evaluation
    Managers   read everything, metrics; change nothing (beyond their own password and API tokens)
    Admins     users, the audit log, breaking a control lease, and everything else

The control lease (backend.control): on top of `robot.control`, a command that moves the robot or changes its
recording belongs to the signed-in holder of the lease (`LEASE_HOLDER_COMMANDS`, checked with `may_command`).
Taking a free lease needs `robot.control`; an admin may break someone else's lease (`control.break`, audited as
"control.break"); engaging the e-stop is open to every signed-in user (`estop.engage`), releasing it is a lease
holder's command. Anonymous callers have no role and no permission at all: the web layer refuses them before this
table is asked.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from storage.models import Role


class Permission(enum.StrEnum):
    ROBOT_READ = "robot.read"  # status, task list, camera frames, the console's HUD
    ROBOT_CONTROL = "robot.control"  # take the lease, drive, reset, source, recording (lease holder only)
    ESTOP_ENGAGE = "estop.engage"  # stop the robot, whoever holds the lease
    CONTROL_BREAK = "control.break"  # take the lease from its holder
    EPISODES_READ = "episodes.read"  # episodes, videos, history, signals, datasets, snapshots, jobs (their log too)
    EPISODES_EDIT = "episodes.edit"  # annotation edits, undo, trim, split, quality recompute
    CURATION_WRITE = "curation.write"  # bulk operations, trash, restore, purge, merge, snapshots
    EXPORTS_WRITE = "exports.write"  # start an export job; cancel or retry one's own
    JOBS_MANAGE = "jobs.manage"  # cancel, retry or resume any job (see may_manage_job)
    TRAINING_READ = "training.read"  # jobs, curves, models (and their download), rollouts, evaluation reports
    TRAINING_WRITE = "training.write"  # start/stop training and evaluation jobs, model stages/notes/import, rollouts
    METRICS_READ = "metrics.read"
    ACCOUNT_SELF = "account.self"  # one's own password, API tokens and sign-out
    USERS_ADMIN = "users.admin"  # add, disable, enable, reset, change role
    AUDIT_READ = "audit.read"  # the audit page and its CSV export


P = Permission
_OPERATOR = {
    P.ROBOT_READ,
    P.ROBOT_CONTROL,
    P.ESTOP_ENGAGE,
    P.EPISODES_READ,
    P.EPISODES_EDIT,
    P.CURATION_WRITE,
    P.EXPORTS_WRITE,
    P.ACCOUNT_SELF,
}
_ENGINEER = _OPERATOR | {P.TRAINING_READ, P.TRAINING_WRITE, P.METRICS_READ, P.JOBS_MANAGE}
_MANAGER = {P.ROBOT_READ, P.ESTOP_ENGAGE, P.EPISODES_READ, P.TRAINING_READ, P.METRICS_READ, P.ACCOUNT_SELF}

# The table. A manager may engage the e-stop: stopping a robot is safety, not a change to anything.
ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.OPERATOR: frozenset(_OPERATOR),
    Role.ENGINEER: frozenset(_ENGINEER),
    Role.MANAGER: frozenset(_MANAGER),
    Role.ADMIN: frozenset(Permission),
}

# Robot commands that belong to the lease holder (besides needing robot.control). Names as the web layer's
# routes and WebSocket messages call them.
LEASE_HOLDER_COMMANDS: frozenset[str] = frozenset(
    {
        "drive",  # joint/gripper commands over /ws/teleop
        "reset",
        "source",
        "recording.start",
        "recording.save",
        "recording.discard",
        "recording.restart",
        "recording.auto_stop",
        "estop.release",
        "policy.takeover",  # the operator drives instead of the policy
        "policy.handback",
        "policy.continue",  # answer the policy's request for help
        "overlays",
    }
)


def allowed(role: Role | str | None, permission: Permission | str) -> bool:
    """Whether `role` has `permission`; None (anonymous) and unknown roles have none. An unknown permission is a
    bug in the caller's route map, so it raises ValueError instead of quietly answering False."""
    permission = Permission(permission)
    try:
        return role is not None and permission in ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return False


def permissions_of(role: Role | str) -> list[str]:
    """The role's permissions, sorted (the UI hides what is not there; the server enforces regardless)."""
    return sorted(ROLE_PERMISSIONS[Role(role)])


def may_manage_job(role: Role | str | None, user_name: str, *, kind: str, created_by: str | None) -> bool:
    """Whether a user may cancel or retry a job: with jobs.manage any job; with exports.write the export jobs
    they started themselves (an operator stops their own export, not someone's training)."""
    if allowed(role, P.JOBS_MANAGE):
        return True
    return kind == "export" and created_by == user_name and allowed(role, P.EXPORTS_WRITE)


def may_command(user_name: str, lease_holder: str | None, command: str) -> bool:
    """Whether a user (who has robot.control) may send `command` now: lease-bound commands need the lease."""
    if command not in LEASE_HOLDER_COMMANDS:
        raise ValueError(f"unknown robot command {command!r}; one of {sorted(LEASE_HOLDER_COMMANDS)}")
    return lease_holder is not None and lease_holder == user_name
