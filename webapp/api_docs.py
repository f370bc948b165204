"""/docs (Swagger UI) and /redoc served with no internet: FastAPI's own pages load their scripts, styles and
favicon from a CDN (and ReDoc Google Fonts), so offline they are blank. Here the same pages load the copies
shipped in the fastapi-offline package, mounted at /vendor/api-docs; create_app passes docs_url=None and
redoc_url=None and calls install_api_docs instead."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

# swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js, favicon.png
DOCS_ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
DOCS_ASSETS_URL = "/vendor/api-docs"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
# The pages may load nothing from another host: ReDoc's "API docs by Redocly" footer fetches its logo from the
# vendor's CDN (no option turns it off; offline it is just not drawn), and the browser blocks that request here.
# Inline scripts and styles: FastAPI's page templates and ReDoc's styled-components; blob: ReDoc's search worker.
SAME_ORIGIN_ONLY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:"
)


def install_api_docs(app: FastAPI) -> None:
    """Add /docs, /docs/oauth2-redirect, /redoc and their assets (before Gradio is mounted at "/")."""
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS_DIR), name="api-docs")

    def asset(request: Request, name: str) -> str:
        return request.scope.get("root_path", "") + f"{DOCS_ASSETS_URL}/{name}"

    def openapi_url(request: Request) -> str:
        return request.scope.get("root_path", "") + app.openapi_url

    def same_origin_only(page: HTMLResponse) -> HTMLResponse:
        page.headers["Content-Security-Policy"] = SAME_ORIGIN_ONLY
        return page

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url(request),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=asset(request, "swagger-ui-bundle.js"),
            swagger_css_url=asset(request, "swagger-ui.css"),
            swagger_favicon_url=asset(request, "favicon.png"),
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
            # No validator badge: Swagger UI would fetch it from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )
        return same_origin_only(page)

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    def swagger_ui_oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=openapi_url(request),
            title=f"{app.title} - ReDoc",
            redoc_js_url=asset(request, "redoc.standalone.js"),
            redoc_favicon_url=asset(request, "favicon.png"),
            with_google_fonts=False,
        )
        return same_origin_only(page)
