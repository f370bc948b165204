"""The app factory: REST API under /api (OpenAPI at /docs), /ws/teleop, the browser code under /client, and the
Gradio UI at /."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import plotly
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from backend.jobs import JobQueue, load_plugins
from backend.services.auth import AuthService
from backend.services.continual import on_rollout
from backend.services.curation import CurationService
from backend.services.metrics import MetricsService
from backend.services.models import ModelRegistry
from backend.services.rollout_log import RolloutLog
from backend.settings import Settings
from webapp.api_docs import install_api_docs
from webapp.assets import ASSETS_DIR, ASSETS_URL, RevalidatedFiles
from webapp.errors import install_error_handlers
from webapp.pages import SignInRedirect, gradio_auth
from webapp.pages import router as pages_router
from webapp.permissions import check_every_route_mapped
from webapp.routers import RESOURCE_ROUTERS, api_router
from webapp.security import install_browser_guards
from webapp.ws import router as ws_router

log = logging.getLogger(__name__)
PLOTLY_JS_DIR = Path(plotly.__file__).resolve().parent / "package_data"  # holds plotly.min.js


def create_app(settings: Settings, *, session, store, ui: bool = True, auth: AuthService | None = None) -> FastAPI:
    """Build the app around one robot session and one episode store.

    The session's loop runs for the app's lifetime (started and stopped by the lifespan). `ui=False` leaves out
    the Gradio UI (API tests). Routes are registered before Gradio is mounted at "/", which would shadow them.
    `auth`: the sign-in services (tests pass one with a fake clock and a cheap hasher); by default built on the
    store's database and Settings.session_secret().
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Continual learning acts on ended rollouts on a thread of its own, one at a time in order: a retrain builds
        # a snapshot (copies of the corrected stretches), which must not hold up the request that ended the take.
        # Lifespans may nest (two test clients of one app): each has its own runner and puts the outer one back.
        outer = app.state.rules_runner
        runner = app.state.rules_runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="continual-learning")
        session.start()
        try:
            yield
        finally:
            session.stop()  # ends a live rollout: its rule check is queued before the runner stops
            runner.shutdown(wait=True)
            app.state.rules_runner = outer

    # /docs and /redoc come from install_api_docs: FastAPI's own pages fetch Swagger UI and ReDoc from a CDN.
    # The body limit (a bigger body gets 413 before it is read) is webapp.security.BodyLimit, not FastAPI's
    # max_body_size: uploads have a limit of their own (Settings.max_model_upload_bytes).
    app = FastAPI(title="VLA Dashboard", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings, app.state.session, app.state.store = settings, session, store
    app.state.curation = CurationService(store)
    load_plugins(settings.job_plugins)  # job kinds beyond the built-in ones: submit refuses unknown kinds
    app.state.jobs = JobQueue(store.session_factory, data_dir=settings.data_dir)  # run by workers, never here
    app.state.auth = auth or AuthService(
        store.session_factory,
        secret=settings.session_secret(),
        session_ttl_s=settings.session_ttl_s,
        link_ttl_s=settings.sign_in_link_ttl_s,
    )
    app.state.models = ModelRegistry(store.session_factory, settings.models_dir, audit=app.state.auth.audit)
    app.state.rollouts = RolloutLog(store.session_factory)
    app.state.metrics = MetricsService(store.session_factory)

    app.state.rules_runner = None  # the lifespan's (see above)

    def apply_rules(record: dict) -> None:
        try:
            on_rollout(record, curation=app.state.curation, registry=app.state.models, queue=app.state.jobs)
        except Exception:  # the rollout is logged; a failing rule must not look like a lost rollout
            log.exception("continual learning could not act on rollout of model %s", record.get("model_id"))

    def log_rollout(record: dict) -> None:
        """Every live policy rollout the session ends lands in SQL now; a correction may then trigger continual
        learning (apply_rules, on the rules runner)."""
        app.state.rollouts.record(record)
        if not record.get("interventions"):  # only corrections count toward a rule
            return
        runner = app.state.rules_runner
        if runner is None:  # the app is not serving (a session driven directly): act here
            apply_rules(record)
            return
        try:
            runner.submit(apply_rules, record)
        except RuntimeError:  # shutting down: the next correction's check counts this one too
            log.warning("continual learning is stopped; rollout of model %s not checked", record.get("model_id"))

    app.state.log_rollout = log_rollout
    if hasattr(session, "set_rollout_sink"):
        session.set_rollout_sink(log_rollout)
    install_error_handlers(app)
    if ui:
        # Anonymous "/" -> /signin; Gradio refuses the rest itself (auth_dependency below).
        app.add_middleware(SignInRedirect, auth=app.state.auth)
    install_browser_guards(app, settings)  # Host check, no CORS, JSON-only writes (added after: outside)
    app.include_router(api_router)
    app.include_router(ws_router)
    app.include_router(pages_router)  # /signin and the one-time link
    check_every_route_mapped(RESOURCE_ROUTERS, ws_router)  # fail closed: a route the permission table misses
    install_api_docs(app)
    app.mount(ASSETS_URL, RevalidatedFiles(directory=ASSETS_DIR), name="client")  # static/: see webapp.assets
    # plotly.js from the plotly Python package: the player's charts work offline, with no npm step.
    app.mount("/vendor/plotly", StaticFiles(directory=PLOTLY_JS_DIR), name="plotly")
    if ui:
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: the dashboard runs offline
        import gradio as gr

        from webapp.ui import build_ui, head_html, theme

        gr.mount_gradio_app(
            app,
            build_ui(store=store),
            path="/",
            head=head_html(),
            theme=theme(),
            footer_links=["api"],
            auth_dependency=gradio_auth(app.state.auth),
        )
    return app
