"""Guards against attacks that come through the operator's own browser: DNS rebinding (the Host check),
cross-origin reads and writes (no CORS for any other origin, the WebSocket's Origin check) and cross-site form
posts (state changes under /api need a JSON body, which no HTML form can send without a CORS preflight).

Sign-in comes later; until then a request without an Origin header (scripts, the tests' TestClient) is trusted
as a non-browser client. Once sessions exist such a client must carry a token instead.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.settings import Settings

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
ANY_ADDRESS = ("0.0.0.0", "::")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
# Writes whose body is a file, not JSON, and the media types each takes. No page on another site can send these
# types without a CORS preflight, which no other origin passes, so they keep JsonOnlyWrites' guarantee (and the
# CSRF rule still applies); their body limit (BodyLimit) is Settings.max_model_upload_bytes, not max_body_bytes.
UPLOAD_ROUTES: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/api/models/import"): frozenset({"application/gzip", "application/x-gzip"}),
}


def trusted_hosts(settings: Settings) -> list[str]:
    """The Host names the dashboard answers to: loopback, VLA_HOST when it is one address, VLA_ALLOWED_HOSTS.

    Starlette compares the Host header's name with its brackets on ("[::1]"), so IPv6 literals get them here."""
    names = [*LOOPBACK_HOSTS, *([settings.host] if settings.host not in ANY_ADDRESS else []), *settings.allowed_hosts]
    bracketed = [f"[{n}]" if ":" in n and not n.startswith("[") else n for n in names]
    return list(dict.fromkeys(n.lower() for n in bracketed))


def _origin_key(scheme: str, netloc: str) -> tuple[str, str, int | None] | None:
    """(http|https, host name, port) of a URL's parts, ws/wss counted as http/https; None when unparsable."""
    try:
        parts = urlsplit(f"//{netloc}")
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port out of range or not a number
        return None
    if not parts.hostname:
        return None
    return ({"ws": "http", "wss": "https"}.get(scheme, scheme), parts.hostname.lower(), port)


def is_own_origin(scope: Scope) -> bool:
    """True when the request's Origin is the dashboard itself (same scheme, host and port as the request), or when
    there is no Origin at all (not a browser: see the module docstring). "null" and any other origin are foreign.

    Behind a TLS proxy the request's scheme is https/wss only if uvicorn trusts the proxy's X-Forwarded-Proto
    (--forwarded-allow-ips); otherwise the dashboard's own https pages look foreign and the socket is refused."""
    headers = Headers(scope=scope)
    origin = headers.get("origin")
    if origin is None:
        return True
    claimed = urlsplit(origin)
    own = _origin_key(scope["scheme"], headers.get("host", ""))
    return own is not None and _origin_key(claimed.scheme, claimed.netloc) == own


class JsonOnlyWrites:
    """415 for a POST/PUT/PATCH/DELETE under /api whose Content-Type is not application/json (or, on an upload
    route, one of the file types it takes).

    An HTML form can only send urlencoded, multipart or text/plain bodies, and a cross-site fetch with a JSON
    type needs a CORS preflight, which no other origin passes. Clients send {} for actions without a body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in STATE_CHANGING and _under_api(scope["path"]):
            media_type = Headers(scope=scope).get("content-type", "").split(";")[0].strip().lower()
            if media_type != "application/json" and media_type not in upload_types(scope):
                detail = f"{scope['method']} needs a JSON body (Content-Type: application/json); send {{}} for none"
                await JSONResponse({"detail": detail}, status_code=415)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _under_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def upload_types(scope: Scope) -> frozenset[str]:
    """The file media types the request's route takes (empty for every route but the uploads)."""
    return UPLOAD_ROUTES.get((scope.get("method", ""), scope["path"]), frozenset())


class BodyLimit:
    """The request body limit: Settings.max_body_bytes, or max_model_upload_bytes on the upload routes.

    Starlette's RequestBodyLimitMiddleware (what FastAPI's own max_body_size installs), its limit chosen per route:
    a Content-Length over it is refused before the body is read (413 in plain text), a chunked body is cut off as
    it passes it (413 {"detail": "Content Too Large"}). It replaces FastAPI's app-wide max_body_size because that
    one also wraps every route with the same limit, which a route cannot raise from a Settings value."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_upload_bytes: int) -> None:
        self.default = RequestBodyLimitMiddleware(app, max_body_size=max_body_bytes)
        self.upload = RequestBodyLimitMiddleware(app, max_body_size=max_upload_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and upload_types(scope):
            await self.upload(scope, receive, send)
        else:
            await self.default(scope, receive, send)


def install_browser_guards(app: FastAPI, settings: Settings) -> None:
    """The Host check (outermost: 400 before anything else runs), no CORS, JSON-only writes under /api, and the
    body limit (innermost of the four; the upload routes have their own).

    The CORS middleware allows no origin at all: the dashboard's own pages are same-origin and need none. Its
    presence also switches off Gradio's own CORS layer (gradio.route_utils.CustomCORSMiddleware steps aside when
    the parent app has a CORSMiddleware), which otherwise echoes any localhost origin with credentials allowed,
    /api preflights included (they fall through to the Gradio app mounted at /)."""
    app.add_middleware(
        BodyLimit, max_body_bytes=settings.max_body_bytes, max_upload_bytes=settings.max_model_upload_bytes
    )
    app.add_middleware(JsonOnlyWrites)
    app.add_middleware(CORSMiddleware, allow_origins=[], allow_credentials=False)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=trusted_hosts(settings), www_redirect=False)
