"""/docs (Swagger UI) and /redoc in a real headless Chromium with the internet cut off: both render the API's
operations from the copies the server ships, and no request leaves the machine."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.e2e

LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def offline_page(browser):
    """A page whose requests to any other host are aborted (as on a machine without internet) and noted."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    left: list[str] = []

    def route(r):
        url = r.request.url
        if urlsplit(url).scheme in ("http", "https", "ws", "wss") and urlsplit(url).hostname not in LOCAL_HOSTS:
            left.append(url)
            r.abort()
        else:
            r.continue_()

    context.route("**/*", route)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # Console errors count too (a script or style the page's CSP blocked), bar blocked images: ReDoc's footer logo
    # from its vendor's CDN is refused by the CSP on purpose (webapp/api_docs.py), and an image cannot break a page.
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "the image" not in m.text else None)
    return page, left, errors


def test_swagger_ui_renders_the_operations_offline(server, browser):
    page, left, errors = offline_page(browser)
    page.goto(server.url + "/docs")
    get_episodes = page.locator('.opblock-get .opblock-summary-path[data-path="/api/episodes"]')
    get_episodes.wait_for(timeout=20_000)
    assert page.locator(".opblock").count() > 20  # every route, not just the first
    get_episodes.click()  # expands: the parameters come from /openapi.json
    page.locator(".opblock-get.is-open .parameters-container").wait_for(timeout=10_000)
    assert "quality_flag" in page.inner_text(".opblock-get.is-open .parameters-container")
    assert left == [] and errors == [], (left, errors)


@pytest.mark.slow  # ~6 s; /docs (Swagger UI) stays in make test
def test_redoc_renders_the_operations_offline(server, browser):
    page, left, errors = offline_page(browser)
    page.goto(server.url + "/redoc")
    operation = page.locator('[id="tag/episodes/operation/list_episodes_api_episodes_get"]')
    operation.wait_for(timeout=20_000)
    assert "List Episodes" in operation.inner_text()
    assert left == [] and errors == [], (left, errors)
