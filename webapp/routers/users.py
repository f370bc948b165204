"""/api/users: user administration (admins only; every change is audited by backend.services.auth)."""

from __future__ import annotations

from fastapi import APIRouter

from backend.services.auth import generate_password
from webapp.auth_schemas import UserAdminOut, UserCreateIn, UserOut, UserPatchIn, UsersOut
from webapp.deps import AddressDep, AuthDep, CurrentUserDep
from webapp.errors import error_responses
from webapp.schemas import NamePath

router = APIRouter(prefix="/users", tags=["users"])
CHANGE_ERRORS = error_responses(404, 409, described={409: "the last active admin cannot be disabled or demoted"})


@router.get("")
def list_users(auth: AuthDep) -> UsersOut:
    users = [UserOut.of(u) for u in auth.users.list()]
    return UsersOut(data=users, count=len(users))


@router.post("", status_code=201, responses=error_responses(409, described={409: "the name is taken"}))
def add_user(body: UserCreateIn, admin: CurrentUserDep, auth: AuthDep, address: AddressDep) -> UserAdminOut:
    """A new active user; without a password one is generated and shown in this answer only."""
    password = body.password if body.password is not None else generate_password()
    user = auth.users.add(body.name, body.role, password, actor=admin.name, address=address)
    return UserAdminOut(user=UserOut.of(user), password=None if body.password is not None else password)


@router.patch("/{name}", responses=CHANGE_ERRORS)
def set_role(
    name: NamePath, body: UserPatchIn, admin: CurrentUserDep, auth: AuthDep, address: AddressDep
) -> UserAdminOut:
    user = auth.users.set_role(name, body.role, actor=admin.name, address=address)
    return UserAdminOut(user=UserOut.of(user))


@router.post("/{name}/disable", responses=CHANGE_ERRORS)
def disable(name: NamePath, admin: CurrentUserDep, auth: AuthDep, address: AddressDep) -> UserAdminOut:
    """Lock the user out: their sessions and API tokens stop working on their next request."""
    return UserAdminOut(user=UserOut.of(auth.users.disable(name, actor=admin.name, address=address)))


@router.post("/{name}/enable", responses=error_responses(404))
def enable(name: NamePath, admin: CurrentUserDep, auth: AuthDep, address: AddressDep) -> UserAdminOut:
    return UserAdminOut(user=UserOut.of(auth.users.enable(name, actor=admin.name, address=address)))


@router.post("/{name}/reset-password", responses=error_responses(404))
def reset_password(name: NamePath, admin: CurrentUserDep, auth: AuthDep, address: AddressDep) -> UserAdminOut:
    """A new generated password (shown once); the user's sessions end at once."""
    password = generate_password()
    user = auth.users.reset_password(name, password, actor=admin.name, address=address)
    return UserAdminOut(user=UserOut.of(user), password=password)
