"""/api/auth: sign-in and sign-out (the session and CSRF cookies), who am I, one's own password and API tokens."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response

from backend.services.audit import Action
from backend.services.auth import AuthService, InvalidCredentials, UserInfo
from webapp.auth_schemas import MeOut, PasswordIn, SignInIn, SignInOut, TokenCreatedOut, TokenIn, TokenOut
from webapp.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    AddressDep,
    AuditDep,
    AuthDep,
    CallerDep,
    CurrentUserDep,
)
from webapp.errors import error_responses
from webapp.schemas import IdPath

router = APIRouter(prefix="/auth", tags=["auth"])


def start_session(response: Response, request: Request, auth: AuthService, user: UserInfo) -> SignInOut:
    """Issue a session for `user` and set both cookies (contract: HttpOnly session, script-readable CSRF token)."""
    session = auth.sessions.issue(user)
    csrf = auth.sessions.csrf_token(session)
    secure = request.url.scheme == "https"
    common = {"samesite": "strict", "path": "/", "secure": secure}
    response.set_cookie(SESSION_COOKIE, session, httponly=True, max_age=int(auth.sessions.ttl_s), **common)
    response.set_cookie(CSRF_COOKIE, csrf, httponly=False, max_age=int(auth.sessions.ttl_s), **common)
    return SignInOut(user=MeOut.of(user), csrf_token=csrf)


@router.post(
    "/signin",
    responses=error_responses(401, 429, described={401: "wrong name or password (or a disabled user)"}),
)
def sign_in(body: SignInIn, request: Request, response: Response, auth: AuthDep, address: AddressDep) -> SignInOut:
    """Sign in with name and password; throttled (429 with Retry-After) after repeated failures."""
    user = auth.users.authenticate(body.name, body.password, address=address)  # audited by the service
    return start_session(response, request, auth, user)


@router.post("/signout")
def sign_out(response: Response, user: CurrentUserDep, audit: AuditDep) -> dict:
    """Clear both cookies (an API token stays valid: revoke it with DELETE /api/auth/tokens/{id})."""
    response.delete_cookie(SESSION_COOKIE, path="/", samesite="strict", httponly=True)
    response.delete_cookie(CSRF_COOKIE, path="/", samesite="strict")
    audit(Action.SIGN_OUT, "user", user.name)
    return {}


@router.get("/me")
def me(user: CurrentUserDep) -> MeOut:
    return MeOut.of(user)


@router.post("/password", responses=error_responses(403, described={403: "the current password is wrong"}))
def change_password(
    body: PasswordIn,
    request: Request,
    response: Response,
    user: CurrentUserDep,
    caller: CallerDep,
    auth: AuthDep,
    address: AddressDep,
) -> SignInOut:
    """Change one's own password: every other session ends; this one gets a fresh session (and CSRF token).

    A user without a password yet (the first-start admin, signed in by the one-time link) sets one without
    `current`; everyone else proves the current one."""
    if user.has_password:
        if body.current is None:
            raise HTTPException(403, "give your current password as 'current'")
        try:  # checked (and throttled) like a sign-in; the audit log shows it as one
            auth.users.authenticate(user.name, body.current, address=address)
        except InvalidCredentials:
            raise HTTPException(403, "the current password is wrong") from None
    updated = auth.users.reset_password(user.name, body.new, actor=user.name, address=address)
    if caller.via == "cookie":
        return start_session(response, request, auth, updated)
    return SignInOut(user=MeOut.of(updated), csrf_token="")


@router.get("/tokens")
def list_tokens(user: CurrentUserDep, auth: AuthDep) -> list[TokenOut]:
    """One's own API tokens, revoked ones included (never their secrets)."""
    return [TokenOut.model_validate(t) for t in auth.tokens.list(user.name)]


@router.post("/tokens", status_code=201)
def create_token(body: TokenIn, user: CurrentUserDep, auth: AuthDep, address: AddressDep) -> TokenCreatedOut:
    """A personal API token for scripts; the secret is in this answer only (only its hash is stored)."""
    secret, info = auth.tokens.create(user.name, body.name, actor=user.name, address=address)  # audited
    return TokenCreatedOut(id=info.id, name=info.name, token=secret)


@router.delete("/tokens/{token_id}", responses=error_responses(404))
def revoke_token(token_id: IdPath, user: CurrentUserDep, auth: AuthDep, address: AddressDep) -> TokenOut:
    info = auth.tokens.revoke(token_id, actor=user.name, address=address, owner=user.name)  # audited
    return TokenOut.model_validate(info)
