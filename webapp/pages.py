"""The pages outside Gradio: the sign-in page (a shell that static/signin/ fills), the one-time sign-in link, and
what keeps anonymous visitors out of the Gradio UI (a redirect of "/" to the sign-in page; Gradio's own
auth_dependency answers 401 for everything else it serves)."""

from __future__ import annotations

import html
from collections.abc import Callable

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.services.auth import AuthService, InvalidCredentials
from webapp.assets import ASSETS_URL
from webapp.deps import client_address, get_auth, identify
from webapp.routers.auth import start_session

router = APIRouter(include_in_schema=False)
SIGN_IN_PATH = "/signin"


def sign_in_html(next_url: str = "/", error: str = "") -> str:
    """The sign-in form; static/signin/main.js posts it to /api/auth/signin and goes to `next` (data-next)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · VLA Dashboard</title>
<link rel="stylesheet" href="{ASSETS_URL}/signin/signin.css">
<script type="module" src="{ASSETS_URL}/signin/main.js"></script></head>
<body><main id="vla-signin" data-next="{html.escape(next_url)}">
<h1>VLA Dashboard</h1>
<form id="vla-signin-form" method="post" action="/api/auth/signin" autocomplete="on">
<label for="vla-signin-name">Name</label>
<input id="vla-signin-name" name="name" autocomplete="username" required autofocus>
<label for="vla-signin-password">Password</label>
<input id="vla-signin-password" name="password" type="password" autocomplete="current-password" required>
<button id="vla-signin-submit" type="submit">Sign in</button>
<p id="vla-signin-error" role="alert">{html.escape(error)}</p>
</form></main></body></html>"""


def _safe_next(next_url: str) -> str:
    """Only a path on this server (no "//evil.example", no scheme): an open redirect would help phishing."""
    return next_url if next_url.startswith("/") and not next_url.startswith(("//", "/\\")) else "/"


@router.get(SIGN_IN_PATH, response_class=HTMLResponse)
def sign_in_page(next: str = Query("/", max_length=500)) -> HTMLResponse:
    return HTMLResponse(sign_in_html(_safe_next(next)), headers={"Cache-Control": "no-store"})


@router.get(f"{SIGN_IN_PATH}/link", response_model=None)
def redeem_link(request: Request, token: str = Query("", max_length=200)) -> HTMLResponse | RedirectResponse:
    """A one-time sign-in link (the first start prints one for `admin`): sign in and go to the dashboard."""
    auth = get_auth(request)
    try:
        user = auth.users.redeem_sign_in_link(token, address=client_address(request))  # audited by the service
    except InvalidCredentials:
        page = sign_in_html(error="This sign-in link is used up or has expired; sign in with your password.")
        return HTMLResponse(page, status_code=401, headers={"Cache-Control": "no-store"})
    response = RedirectResponse("/", status_code=303)
    start_session(response, request, auth, user)
    return response


def gradio_auth(auth: AuthService) -> Callable[[Request], str | None]:
    """Gradio's auth_dependency: the signed-in user's name, None (Gradio answers 401) when anonymous."""

    def user_name(request: Request) -> str | None:
        user = identify(request, auth).user
        return user.name if user is not None else None

    return user_name


class SignInRedirect:
    """An anonymous GET of the dashboard page "/" gets 303 to /signin?next=/ (Gradio itself would answer 401)."""

    def __init__(self, app: ASGIApp, auth: AuthService) -> None:
        self.app, self.auth = app, auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and scope["path"] == "/":
            if identify(HTTPConnection(scope), self.auth).user is None:
                await RedirectResponse(f"{SIGN_IN_PATH}?next=/", status_code=303)(scope, receive, send)
                return
        await self.app(scope, receive, send)
