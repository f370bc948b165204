"""The dashboard's own browser code (static/: ES modules and CSS) and the URL it is served under.

Not /static nor /assets: Gradio, mounted at "/", serves its own files from those two, and a mount there shadows
them (every page load logged a 404 for Gradio's /static/js/iframeResizer.contentWindow.min.js).
"""

from __future__ import annotations

from pathlib import Path

from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

ASSETS_DIR = Path(__file__).resolve().parent.parent / "static"
ASSETS_URL = "/client"


class RevalidatedFiles(StaticFiles):
    """StaticFiles that the browser revalidates on every use (a 304 when unchanged, from the ETag).

    The modules import each other by plain URLs, so there is no version query to bump: without this, a module
    edited on the server could stay cached under its old text while the modules around it are new.
    """

    def file_response(self, *args, **kwargs) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response
