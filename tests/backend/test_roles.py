"""The role matrix against the issue's words: operators teleop, record, label and curate; engineers add training;
managers read and change nothing; admins do everything. The expected table is written out here, not derived."""

from __future__ import annotations

import pytest

from backend.services.roles import (
    LEASE_HOLDER_COMMANDS,
    ROLE_PERMISSIONS,
    Permission,
    allowed,
    may_command,
    permissions_of,
)
from storage.models import Role

P = Permission
OPERATOR = {
    "robot.read", "robot.control", "estop.engage", "episodes.read", "episodes.edit", "curation.write",
    "exports.write", "account.self",
}  # fmt: skip
ENGINEER = OPERATOR | {"training.read", "training.write", "metrics.read", "jobs.manage"}
MANAGER = {"robot.read", "estop.engage", "episodes.read", "training.read", "metrics.read", "account.self"}
EXPECTED = {Role.OPERATOR: OPERATOR, Role.ENGINEER: ENGINEER, Role.MANAGER: MANAGER, Role.ADMIN: set(Permission)}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("permission", list(Permission))
def test_matrix(role, permission):
    assert allowed(role, permission) == (permission in EXPECTED[role])
    assert allowed(role.value, permission.value) == allowed(role, permission)  # plain strings work the same


def test_every_role_is_in_the_table():
    assert set(ROLE_PERMISSIONS) == set(Role)
    assert permissions_of("manager") == sorted(MANAGER)


def test_managers_change_nothing():
    writes = {p for p in Permission if not p.endswith(".read")} - {P.ESTOP_ENGAGE, P.ACCOUNT_SELF}
    assert writes and not any(allowed(Role.MANAGER, p) for p in writes)


def test_only_admins_administer_users_read_the_audit_and_break_leases():
    admin_only = {p for p in Permission if not any(allowed(r, p) for r in Role if r is not Role.ADMIN)}
    assert admin_only == {P.USERS_ADMIN, P.AUDIT_READ, P.CONTROL_BREAK}


def test_anonymous_and_unknown_roles_have_nothing():
    for permission in Permission:
        assert not allowed(None, permission)
        assert not allowed("superuser", permission)


def test_unknown_permission_is_a_bug_not_a_no():
    with pytest.raises(ValueError):
        allowed(Role.ADMIN, "robot.fly")


def test_lease_holder_commands():
    assert {"reset", "source", "recording.save", "recording.discard", "estop.release"} <= LEASE_HOLDER_COMMANDS
    assert "estop.engage" not in LEASE_HOLDER_COMMANDS  # open to every signed-in user
    assert may_command("alice", "alice", "reset")
    assert not may_command("bob", "alice", "recording.discard")  # a second operator cannot discard alice's take
    assert not may_command("bob", None, "estop.release")  # a free lease must be taken first
    with pytest.raises(ValueError):
        may_command("alice", "alice", "estop.engage")
