"""Sign-in and roles in a real headless Chromium against a server started with no users: the newcomer's one-time
link, an admin adding an operator and a manager on the Users page, and what each role can and cannot do."""

from __future__ import annotations

import pytest
from serve import run_server, sign_in, sign_in_link

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """`run.py serve` on an empty data dir: no users, so it creates `admin` and prints a one-time link."""
    with run_server(tmp_path_factory.mktemp("signin") / "data", image_size=96, users={}) as srv:
        yield srv


def new_page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(f"{e}\n{e.stack}"))
    return page


def add_user(page, name: str, role: str) -> str:
    """Add a user on the Users page; the generated password it shows once."""
    page.fill("#vla-users-name", name)
    page.select_option("#vla-users-role", role)
    page.click("#vla-users-add")
    page.wait_for_selector(f'#vla-users-rows tr[data-user="{name}"]', timeout=10_000)
    assert name in page.inner_text("#vla-users-password")
    return page.inner_text("#vla-users-new-password").strip()


FETCH_STATUS = """async ([method, path, body]) => {
    const csrf = (document.cookie.split("; ").find((c) => c.startsWith("vla_csrf=")) || "").slice(9);
    const init = { method, headers: { "X-CSRF-Token": decodeURIComponent(csrf) } };
    if (body) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
    return (await fetch(path, init)).status;
}"""


def test_newcomer_admin_operator_and_manager(fresh, browser):
    # The newcomer clicks the link the console printed and lands in the dashboard signed in as admin.
    admin = new_page(browser)
    admin.goto(sign_in_link(fresh))
    admin.wait_for_selector('#vla-whoami[data-name="admin"][data-role="admin"]', timeout=30_000)
    assert "Signed in as admin (admin)" in admin.inner_text("#vla-header")

    # Signed in by the link, the admin has no password yet: the header offers to set one (two prompts, an alert).
    admin.on("dialog", lambda d: d.accept("the admin's own password") if d.type == "prompt" else d.accept())
    admin.click("#vla-set-password")
    admin.wait_for_selector("#vla-set-password", state="detached", timeout=10_000)
    assert admin.evaluate("fetch('/api/auth/me').then((r) => r.json())")["has_password"] is True

    # On the Users page the admin adds an operator and a manager; each password is shown once.
    admin.get_by_role("tab", name="Users").click()
    admin.wait_for_selector('#vla-users-rows tr[data-user="admin"]', timeout=10_000)
    passwords = {name: add_user(admin, name, role) for name, role in (("olga", "operator"), ("max", "manager"))}
    assert all(len(p) >= 8 for p in passwords.values()), passwords
    roles = {u["name"]: u["role"] for u in admin.evaluate("window.vlaUsers.users")}
    assert roles == {"admin": "admin", "olga": "operator", "max": "manager"}
    admin.get_by_role("tab", name="Audit").click()
    admin.wait_for_selector("#vla-audit-rows tr", timeout=10_000)
    assert "user.add" in admin.inner_text("#vla-audit-rows")

    # The operator records an episode and labels it, sees no Users or Audit tab, and is refused user admin.
    olga = new_page(browser)
    olga.goto(fresh.url + "/")  # anonymous: sent to the sign-in page, which shows the server's refusal
    olga.fill("#vla-signin-name", "olga")
    olga.fill("#vla-signin-password", "not her password")
    olga.click("#vla-signin-submit")
    olga.wait_for_function("document.getElementById('vla-signin-error').textContent.includes('wrong name or password')")
    assert olga.url.startswith(fresh.url + "/signin?next=")
    sign_in(olga, fresh.url, "olga", passwords["olga"])
    olga.wait_for_function("window.vlaTeleop && window.vlaTeleop.tick > 0", timeout=30_000)
    olga.wait_for_timeout(500)  # the header has hidden the admin tabs
    assert olga.get_by_role("tab", name="Users").is_hidden() and olga.get_by_role("tab", name="Audit").is_hidden()
    assert olga.evaluate(FETCH_STATUS, ["GET", "/api/users", None]) == 403
    assert olga.evaluate(FETCH_STATUS, ["POST", "/api/users", {"name": "mallory", "role": "admin"}]) == 403
    olga.click("#vla-control")
    olga.wait_for_function("window.vlaTeleop.lease === true", timeout=10_000)
    olga.click("#vla-cam-front")
    olga.keyboard.press("Enter")
    olga.wait_for_function("window.vlaTeleop.status.recording.active === true", timeout=10_000)
    olga.wait_for_timeout(800)
    olga.keyboard.press("KeyY")
    olga.wait_for_function("window.vlaTeleop.episodes === 1", timeout=20_000)
    olga.click("#vla-control")  # release: the lease is free again
    olga.wait_for_function("window.vlaTeleop.lease === false", timeout=10_000)
    olga.get_by_role("tab", name="Label").click()
    row = olga.locator("#vla-label tr[data-episode-id] td:nth-child(3)").first
    row.wait_for(timeout=15_000)
    row.click()
    olga.wait_for_function("window.vlaLabel.ep && window.vlaLabel.ep.operator === 'olga'", timeout=10_000)
    olga.keyboard.press("f")
    olga.wait_for_function("window.vlaLabel.ep.human_success === false", timeout=10_000)
    olga.wait_for_function("window.vlaLabel.history.length > 0", timeout=10_000)
    assert {e["user"] for e in olga.evaluate("window.vlaLabel.history")} == {"olga"}  # from the session
    assert not olga.errors, olga.errors

    # The manager cannot take control: the button is disabled with the reason, and the socket refuses the lease.
    manager = new_page(browser)
    sign_in(manager, fresh.url, "max", passwords["max"])
    manager.wait_for_function("window.vlaTeleop && window.vlaTeleop.tick > 0", timeout=30_000)
    control = manager.locator("#vla-control")
    control.wait_for(timeout=10_000)
    manager.wait_for_function("document.getElementById('vla-control').disabled === true", timeout=10_000)
    assert control.get_attribute("title") == "managers read; they cannot drive the robot"
    replies = manager.evaluate(
        """async () => {
            const ws = new WebSocket(`ws://${location.host}/ws/teleop`);
            const replies = [];
            ws.onmessage = (ev) => { if (typeof ev.data === "string") replies.push(JSON.parse(ev.data)); };
            await new Promise((ok) => (ws.onopen = ok));
            ws.send(JSON.stringify({ type: "hello", control: false }));
            ws.send(JSON.stringify({ type: "acquire" }));
            await new Promise((ok) => setTimeout(ok, 1000));
            ws.close();
            return replies.filter((m) => m.type === "lease" || m.type === "error");
        }"""
    )
    assert replies and not any(m.get("granted") for m in replies), replies
    assert manager.evaluate("window.vlaTeleop.status.controller") is None
    manager.get_by_role("tab", name="Label").click()
    success = manager.locator("#vla-label[data-ready] #vla-label-success")
    success.wait_for(state="attached", timeout=15_000)
    assert success.is_disabled() and "cannot edit labels" in success.get_attribute("title")  # label edits too
    assert not manager.errors, manager.errors
    for page in (admin, olga, manager):
        page.context.close()
