"""FastAPI app, routers, WebSockets and the Gradio UI: `create_app(settings, session=..., store=...)`."""

from webapp.app import create_app

__all__ = ["create_app"]
