"""The teleop console in a real headless Chromium against the real server (sim robot, real store)."""

from __future__ import annotations

import json

import pytest
from serve import open_console, sign_in

pytestmark = pytest.mark.e2e


def state(page) -> list[float]:
    return page.evaluate("window.vlaTeleop.state")


def status(page) -> dict:
    return page.evaluate("window.vlaTeleop.status")


def take_control(page) -> None:
    page.click("#vla-control")
    page.wait_for_function("window.vlaTeleop.lease === true", timeout=10_000)
    page.click("#vla-cam-front")  # focus leaves the button: keys now drive the arm


def moved(a: list[float], b: list[float], tol: float = 1e-3) -> bool:
    return max(abs(x - y) for x, y in zip(a[:6], b[:6], strict=True)) > tol


def test_dashboard_loads_every_file_and_throws_nothing(server, browser):
    """Each request the page makes is answered (the app's /client mount leaves Gradio its own /static and /assets),
    and no script throws, through both consoles and the Label tab's first load (vocabulary, list, plotly.js), signed
    in as an admin (the Train, Models, Users and Audit tabs load too)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    sign_in(page, server.url, "admin")
    refused: list[str] = []
    errors: list[str] = []
    page.on("response", lambda r: r.status >= 400 and refused.append(f"{r.status} {r.url}"))
    page.on("pageerror", lambda e: errors.append(f"{e}\n{e.stack}"))
    page.goto(server.url + "/")
    page.wait_for_function("window.vlaTeleop && window.vlaTeleop.tick > 0", timeout=30_000)
    page.wait_for_selector("#vla-teleop[data-ready] #vla-keymap", timeout=30_000)
    page.get_by_role("tab", name="Label").click()
    page.wait_for_selector("#vla-label[data-ready] #vla-label-user", timeout=30_000)
    page.wait_for_function(  # the vocabulary has filled the filters, and plotly.js has loaded
        "window.Plotly && document.querySelectorAll('#vla-label-f-quality_flag option').length > 1", timeout=30_000
    )
    page.get_by_role("tab", name="Episodes").click()
    page.get_by_role("tab", name="Train").click()  # snapshots, datasets, models, presets, jobs
    page.wait_for_function("document.querySelectorAll('#vla-train-preset option').length > 0", timeout=10_000)
    page.get_by_role("tab", name="Models").click()
    page.wait_for_function("document.getElementById('vla-models-count')?.dataset.count !== undefined", timeout=10_000)
    page.get_by_role("tab", name="Users").click()
    page.wait_for_selector("#vla-users-rows tr[data-user='admin']", timeout=10_000)
    page.get_by_role("tab", name="Audit").click()
    page.wait_for_function(  # the page may not be built yet when the tab opens: wait for it, then for its rows
        "(document.getElementById('vla-audit-page')?.dataset.count ?? 0) > 0", timeout=10_000
    )
    page.wait_for_timeout(1000)  # late requests (thumbnails, Gradio's own) still count
    assert not refused, refused
    assert not errors, errors
    context.close()


def test_keys_move_the_arm_and_an_episode_is_recorded(server, browser):
    page = open_console(browser, server.url, user="alice")
    take_control(page)
    assert "W" in page.inner_text("#vla-keymap")  # the keymap is on the page
    # Both cameras are drawn (a rendered scene, not a blank canvas).
    for camera in ("front", "wrist"):
        spread = page.evaluate(
            f"""() => {{ const c = document.getElementById("vla-cam-{camera}");
                const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
                let lo = 255, hi = 0;
                for (let i = 0; i < d.length; i += 4) {{ lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }}
                return [c.width, hi - lo]; }}"""
        )
        assert spread[0] == 96 and spread[1] > 50, (camera, spread)
    before = state(page)
    page.keyboard.down("KeyW")
    page.wait_for_timeout(600)
    page.keyboard.up("KeyW")
    assert moved(before, state(page)), "holding W did not move the arm"
    assert page.evaluate("window.vlaTeleop.stats().n") > 5  # round trips measured

    # Record (Enter), move, save as success (Y).
    page.keyboard.press("Enter")
    page.wait_for_function("window.vlaTeleop.status.recording.active === true", timeout=10_000)
    page.keyboard.down("KeyD")
    page.wait_for_timeout(700)
    page.keyboard.up("KeyD")
    assert "REC" in page.inner_text("#vla-recinfo")
    page.keyboard.press("KeyY")
    page.wait_for_function("window.vlaTeleop.episodes === 1", timeout=20_000)
    assert "saved episode" in page.inner_text("#vla-msg")

    episodes = server.get("/api/episodes")
    assert episodes["count"] == 1
    ep = episodes["data"][0]
    assert (ep["source"], ep["operator"], ep["human_success"], ep["dataset"]) == ("teleop", "alice", True, "teleop")
    assert ep["length"] >= 15 and ep["cameras"] == ["front", "wrist"]
    for camera, url in ep["video_urls"].items():
        with server.client().open(url) as r:
            assert r.headers["Content-Type"] == "video/mp4" and len(r.read()) > 1000, camera
        assert (server.data_dir / "episodes" / "teleop" / ep["uid"] / "videos" / f"{camera}.mp4").is_file()

    # A discarded take leaves nothing.
    page.keyboard.press("Enter")
    page.wait_for_function("window.vlaTeleop.status.recording.active === true", timeout=10_000)
    page.keyboard.press("KeyX")
    page.wait_for_function("window.vlaTeleop.status.recording.active === false", timeout=10_000)
    assert server.get("/api/episodes")["count"] == 1

    # The Episodes tab lists it with a thumbnail and a playable video.
    page.get_by_role("tab", name="Episodes").click()
    row = page.locator(f'tr[data-episode-id="{ep["id"]}"]')
    row.wait_for(timeout=15_000)
    page.wait_for_function(
        f"document.querySelector('tr[data-episode-id=\"{ep['id']}\"] img').naturalWidth > 0", timeout=10_000
    )
    assert "alice" in row.inner_text()
    can_play = page.evaluate(
        f"""async () => {{
            const v = document.querySelector('tr[data-episode-id="{ep["id"]}"] video');
            v.preload = "auto"; v.load();
            await new Promise((ok, bad) => {{ v.onloadeddata = ok; v.onerror = () => bad(v.error.code); }});
            return v.duration;
        }}"""
    )
    assert can_play > 0.3
    page.context.close()


@pytest.mark.slow  # ~23 s; the deadman hold is also tested on the real loop in tests/backend
def test_closing_the_socket_holds_the_arm(server, browser):
    viewer = open_console(browser, server.url)
    page = open_console(browser, server.url, user="alice")
    take_control(page)
    page.keyboard.down("KeyA")
    page.wait_for_timeout(400)
    assert server.get("/api/robot/status")["controller"] == "alice"
    page.evaluate("window.vlaTeleop.ws.onclose = null; window.vlaTeleop.ws.close()")  # key still held
    page.wait_for_timeout(400)  # > 200 ms command timeout
    held = state(viewer)
    page.wait_for_timeout(800)
    assert not moved(held, state(viewer)), "the arm kept moving after the controller's socket closed"
    assert server.get("/api/robot/status")["controller"] is None
    page.keyboard.up("KeyA")
    page.context.close()
    viewer.context.close()


@pytest.mark.slow  # ~27 s; the lease is also tested over the WebSocket in tests/webapp
def test_second_browser_cannot_take_control(server, browser):
    first = open_console(browser, server.url, user="alice")
    take_control(first)
    second = open_console(browser, server.url, user="bob")
    second.click("#vla-control")
    second.wait_for_function("window.vlaTeleop.holder === 'alice'", timeout=10_000)
    assert second.evaluate("window.vlaTeleop.lease") is False
    assert "alice controls" in second.inner_text("#vla-lease")
    second.click("#vla-cam-front")
    before = state(second)
    second.keyboard.down("KeyR")  # bob's keys do nothing
    second.wait_for_timeout(500)
    second.keyboard.up("KeyR")
    assert not moved(before, state(second))
    first.click("#vla-control")  # alice releases: now bob may take it
    first.wait_for_function("window.vlaTeleop.lease === false", timeout=10_000)
    take_control(second)
    assert server.get("/api/robot/status")["controller"] == "bob"
    first.context.close()
    second.context.close()


HOSTILE = [
    "not json",
    '{"type": "cmd", "seq": 1, "vx": NaN, "vy": 0, "vz": 0, "yaw": 0, "gripper": 0}',
    '{"type": "cmd", "seq": 2, "vx": 0.1, "evil": true}',
    '{"type": "cmd", "seq": "3"}',
    '{"type": "hello", "operator": "x", "control": "yes"}',
    "[" * 5000,
    "x" * 200_000,
]


def test_hostile_messages_are_rejected_without_disturbing_the_loop(server, browser):
    page = open_console(browser, server.url, user="alice")
    take_control(page)
    tick0 = page.evaluate("window.vlaTeleop.tick")
    replies = page.evaluate(
        """async (messages) => {
            const ws = new WebSocket(`ws://${location.host}/ws/teleop`);
            const errors = [];
            ws.onmessage = (ev) => { if (typeof ev.data === "string") {
                const m = JSON.parse(ev.data); if (m.type === "error") errors.push(m.detail); } };
            await new Promise((ok) => (ws.onopen = ok));
            for (const m of messages) ws.send(m);
            await new Promise((ok) => setTimeout(ok, 1000));
            const open = ws.readyState === WebSocket.OPEN;
            ws.close();
            return { errors, open };
        }""",
        HOSTILE,
    )
    assert len(replies["errors"]) == len(HOSTILE), replies
    assert replies["open"], "a few bad messages must not close the socket"
    # The controller's stream and control carry on.
    page.wait_for_timeout(300)
    assert page.evaluate("window.vlaTeleop.tick") > tick0 + 20
    assert page.evaluate("window.vlaTeleop.lease") is True
    st = server.get("/api/robot/status")
    assert st["controller"] == "alice" and st["counters"]["tick_errors"] == 0
    page.context.close()
    print(json.dumps(st["counters"]))
