"""Request and response schemas of sign-in, one's own account, user administration and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from backend.services.auth import MAX_PASSWORD_LEN, UserInfo
from backend.services.roles import permissions_of
from storage.models import NAME_MAX_LEN, Role
from webapp.schemas import _In, _Out

UserName = Field(min_length=1, max_length=NAME_MAX_LEN)
Password = Field(min_length=1, max_length=MAX_PASSWORD_LEN)


class SignInIn(_In):
    name: str = Field(max_length=NAME_MAX_LEN + 1)  # a longer name is simply unknown: the same 401 as a wrong one
    password: str = Field(max_length=MAX_PASSWORD_LEN)


class MeOut(BaseModel):
    """Who is signed in and what they may do (the UI hides what is not there; the server enforces regardless)."""

    name: str
    role: Role
    permissions: list[str]
    has_password: bool = Field(description="false after a one-time sign-in link: set one with POST /api/auth/password")

    @classmethod
    def of(cls, user: UserInfo) -> MeOut:
        return cls(
            name=user.name, role=user.role, permissions=permissions_of(user.role), has_password=user.has_password
        )


class SignInOut(BaseModel):
    user: MeOut
    csrf_token: str = Field(description="send it as the X-CSRF-Token header with every write (also in vla_csrf)")


class PasswordIn(_In):
    current: str | None = Field(
        None, min_length=1, max_length=MAX_PASSWORD_LEN, description="required once the user has a password"
    )
    new: str = Password


class TokenIn(_In):
    name: str = UserName


class TokenOut(_Out):
    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreatedOut(BaseModel):
    id: int
    name: str
    token: str = Field(description="the secret, shown this once: send it as `Authorization: Bearer <token>`")


class UserOut(MeOut):
    active: bool
    created_at: datetime
    last_sign_in_at: datetime | None

    @classmethod
    def of(cls, user: UserInfo) -> UserOut:
        return cls(
            **MeOut.of(user).model_dump(),
            active=user.active,
            created_at=user.created_at,
            last_sign_in_at=user.last_sign_in_at,
        )


class UsersOut(BaseModel):
    data: list[UserOut]
    count: int


class UserCreateIn(_In):
    name: str = UserName
    role: Role
    password: str | None = Field(None, max_length=MAX_PASSWORD_LEN, description="none: one is generated")


class UserPatchIn(_In):
    role: Role


class UserAdminOut(BaseModel):
    user: UserOut
    password: str | None = Field(None, description="a generated password, shown this once")


class AuditEventOut(_Out):
    id: int
    at: datetime
    actor: str | None
    action: str
    object_type: str | None
    object_id: str | None
    address: str | None
    detail: dict[str, Any]


class AuditPageOut(BaseModel):
    data: list[AuditEventOut]
    count: int
