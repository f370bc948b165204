"""The teleop console's live policy in a real headless Chromium against the real server (sim robot, real store):
an admin loads a registered model in the Policy panel and starts it, its attention is drawn over the cameras and its
uncertainty on the strip chart, it asks for help, the operator takes over with the hotkey, drives, hands back, and
the take is saved as an intervention episode with one takeover."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from serve import import_model, open_console, signed_in_page

from vla_core.policies import make_policy

pytestmark = pytest.mark.e2e

# A tiny vla_tiny that fits the e2e sim (96 px, both cameras, 7-D state and action); threshold 0 makes every
# prediction "uncertain", so it asks for help after k of them.
SIM_FIT = dict(cameras=("front", "wrist"), image_size=96, state_dim=7, action_dim=7, chunk_size=4, d_model=32,
               n_heads=2, n_layers=1, intermediate_size=64, vision_channels=(8, 16, 32), n_text_layers=1,
               uncertainty_samples=2, head_hidden=32, uncertainty_threshold=0.0)  # fmt: skip

OPAQUE_PIXELS = """(id) => { const c = document.getElementById(id);
    if (!c) return 0;
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n += 1;
    return n; }"""


def status(page) -> dict:
    return page.evaluate("window.vlaTeleop.status")


def wait_status(page, condition: str, timeout: int = 30_000) -> None:
    """Wait until `condition` (JS over `s`, the newest frame's status) holds."""
    page.wait_for_function(f"(() => {{ const s = window.vlaTeleop.status || {{}}; return {condition}; }})()",
                           timeout=timeout)  # fmt: skip


def wait_text(page, element_id: str, text: str, timeout: int = 10_000) -> None:
    """Wait until the element's text holds `text` (the console redraws its read-outs ten times a second)."""
    page.wait_for_function("([id, t]) => (document.getElementById(id)?.textContent || '').includes(t)",
                           arg=[element_id, text], timeout=timeout)  # fmt: skip


def drive_until_moved(page) -> None:
    """Hold movement keys until the arm moves (the policy may have left it at a workspace limit on one side)."""
    for key in ("KeyW", "KeyS", "KeyR", "KeyF"):
        before = page.evaluate("window.vlaTeleop.state")
        page.keyboard.down(key)
        try:
            page.wait_for_function(
                """(b) => window.vlaTeleop.state.slice(0, 6).some((x, i) => Math.abs(x - b[i]) > 1e-3)""",
                arg=before, timeout=5_000)  # fmt: skip
            return
        except PlaywrightTimeout:
            continue
        finally:
            page.keyboard.up(key)
    raise AssertionError("no movement key moved the arm after the takeover")


def opaque(page, canvas_id: str) -> int:
    return page.evaluate(OPAQUE_PIXELS, canvas_id)


@pytest.fixture(scope="module")
def model(server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("policy") / "tiny"
    make_policy("vla_tiny", **SIM_FIT).save_pretrained(folder)
    return import_model(server, folder, "pick-tiny")


def test_policy_drives_asks_for_help_and_the_correction_is_recorded(server, browser, model):
    page = open_console(browser, server.url, user="admin")
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"{e}\n{e.stack}"))
    try:
        page.click("#vla-control")
        page.wait_for_function("window.vlaTeleop.lease === true", timeout=10_000)
        page.click("#vla-cam-front")  # focus leaves the button: the hotkeys act
        row = page.locator("#vla-keymap tr", has_text="take over from the policy")
        assert row.locator("kbd").inner_text() == "O"  # the takeover hotkey is in the keymap

        page.fill("#vla-dataset", "corrections")
        page.click("#vla-cam-front")
        page.keyboard.press("Enter")  # record from before the policy starts
        wait_status(page, "s.recording && s.recording.active === true", 10_000)

        # The Policy panel: the picker lists the registered model; load and start it.
        page.wait_for_selector(f'#vla-policy-model option[value="{model["id"]}"]', state="attached", timeout=15_000)
        page.select_option("#vla-policy-model", str(model["id"]))
        page.fill("#vla-policy-k", "10")
        page.click("#vla-policy-load")
        wait_status(page, f"s.policy && s.policy.model.id === {model['id']}", 60_000)
        wait_text(page, "vla-policy-info", "pick-tiny v1")
        page.click("#vla-policy-start")
        wait_status(page, "s.source === 'policy'", 10_000)

        # Overlays: a heatmap over each camera, the words, the uncertainty chart; the HUD shows the policy.
        page.wait_for_function("window.vlaTeleop.overlay && window.vlaTeleop.overlayPainted > 0", timeout=60_000)
        for camera in ("front", "wrist"):
            page.wait_for_function(f"({OPAQUE_PIXELS})('vla-overlay-{camera}') > 0", timeout=10_000)
        page.wait_for_function("window.vlaTeleop.uncertaintyPoints > 0", timeout=10_000)
        page.wait_for_function("window.vlaTeleop.pathPainted > 0", timeout=10_000)  # the planned path, front camera
        overlay = page.evaluate("window.vlaTeleop.overlay")
        assert set(overlay["maps"]["attention"]) == {"front", "wrist"} and overlay["words"], overlay.keys()
        wait_text(page, "vla-hud", "chunk age")
        hud = page.inner_text("#vla-hud")
        assert "pick-tiny v1" in hud and "p95" in hud, hud
        page.select_option("#vla-overlay-map", "attention_rollout")
        assert page.evaluate("window.vlaTeleop.overlayMap") == "attention_rollout"
        page.fill("#vla-overlay-opacity", "0.8")
        assert page.evaluate("getComputedStyle(document.getElementById('vla-overlay-front')).opacity") == "0.8"

        # A word of the instruction shows its own map; a second click goes back.
        page.click("#vla-word-0")
        assert page.evaluate("window.vlaTeleop.overlayWord") == 0
        assert "vla-word-on" in (page.get_attribute("#vla-word-0", "class") or "")
        painted = page.evaluate("window.vlaTeleop.overlayPainted")
        page.wait_for_function(f"window.vlaTeleop.overlayPainted > {painted} + 2", timeout=10_000)
        assert opaque(page, "vla-overlay-front") > 0  # the word's map is drawn
        page.click("#vla-word-0")
        assert page.evaluate("window.vlaTeleop.overlayWord") is None

        # Every score is above threshold 0: after k predictions it asks for help and the arm holds.
        page.wait_for_selector("#vla-help", state="visible", timeout=60_000)
        assert status(page)["policy"]["help"]["asking"] is True
        for button in ("#vla-takeover", "#vla-continue", "#vla-stop-policy"):
            assert page.is_visible(button), button

        # Take over with the hotkey, drive with the keyboard, hand back.
        page.click("#vla-cam-front")
        page.keyboard.press("KeyO")
        wait_status(page, "s.source === 'teleop'", 10_000)
        page.wait_for_selector("#vla-handback", state="visible", timeout=10_000)
        page.wait_for_selector("#vla-help", state="hidden", timeout=10_000)
        drive_until_moved(page)
        wait_status(page, "s.recording.interventions === 1 && s.recording.intervention_frames > 0", 10_000)
        wait_text(page, "vla-hud", "interventions 1 ")
        page.click("#vla-handback")
        wait_status(page, "s.source === 'policy'", 10_000)
        page.wait_for_selector("#vla-handback", state="hidden", timeout=10_000)

        # It asks again (a second prompt); Continue lets it go on, and it asks a third time.
        wait_status(page, "s.policy.help.asking && s.policy.help.prompts === 2", 60_000)
        page.wait_for_selector("#vla-help", state="visible", timeout=10_000)
        page.click("#vla-continue")
        wait_status(page, "s.policy.help.prompts === 3", 60_000)

        # Save the take (Y): an intervention episode with one takeover.
        page.click("#vla-cam-front")
        page.keyboard.press("KeyY")
        page.wait_for_function("document.getElementById('vla-msg').textContent.includes('saved episode')",
                               timeout=30_000)  # fmt: skip
        wait_status(page, "s.recording.active === false && s.recording.last_episode_id != null", 10_000)
        episode_id = status(page)["recording"]["last_episode_id"]

        # Stop (from the banner): the policy no longer drives.
        page.click("#vla-stop-policy")
        wait_status(page, "s.source !== 'policy'", 10_000)
        page.wait_for_selector("#vla-help", state="hidden", timeout=10_000)
        assert not errors, errors
    except BaseException:  # what the console showed, for the failure report
        print("status:", json.dumps(status(page)), "\nmessage:", page.inner_text("#vla-msg"), "\nerrors:", errors)
        raise
    finally:
        page.context.close()

    ep = server.get(f"/api/episodes/{episode_id}")
    assert (ep["source"], ep["dataset"], ep["operator"], ep["human_success"]) == (
        "intervention", "corrections", "admin", True)  # fmt: skip
    manifest = json.loads((server.data_dir / "episodes" / "corrections" / ep["uid"] / "episode.json").read_text())
    extra = manifest["extra"]
    assert extra["interventions"] == 1 and extra["intervention_frames"] > 0, extra
    assert extra["model"]["name"] == "pick-tiny"

    # The take replays in the Label tab's player with the policy's uncertainty as one more synced chart, the
    # operator's stretch shaded on it.
    sig = server.get(f"/api/episodes/{episode_id}/signals")
    assert sig["intervention"].count(True) == extra["intervention_frames"]
    assert any(u is not None for u in sig["uncertainty"]) and "teleop" in sig["actor"]
    label = signed_in_page(browser, server.url, "admin", viewport=(1500, 1100))
    try:
        label.get_by_role("tab", name="Label").click()
        label.wait_for_selector("#vla-label[data-ready]", timeout=30_000)
        label.locator(f'#vla-label tr[data-episode-id="{episode_id}"] td:nth-child(3)').click()
        label.wait_for_function(f"window.vlaLabel.ep && window.vlaLabel.ep.id === {episode_id} && "
                                "window.vlaLabel.chartsReady === true", timeout=20_000)  # fmt: skip
        label.wait_for_function(
            """() => { const gd = document.getElementById("vla-label-chart-uncertainty");
                       return !gd.hidden && gd.data && gd.data[0].y.some((v) => v !== null) &&
                              gd.layout.shapes.length >= 2; }""",
            timeout=10_000,
        )
    finally:
        label.context.close()

    # An operator watching sees the loaded policy but no model picker (loading is an engineer's), and the console
    # asks the server for nothing an operator may not read.
    watcher = open_console(browser, server.url, user="viewer")
    try:
        refused: list[str] = []
        watcher.on("response", lambda r: r.status >= 400 and refused.append(f"{r.status} {r.url}"))
        watcher.reload()
        watcher.wait_for_function("window.vlaTeleop && window.vlaTeleop.tick > 0", timeout=30_000)
        wait_text(watcher, "vla-policy-info", "pick-tiny v1")
        assert watcher.is_hidden("#vla-policy-loader") and watcher.is_disabled("#vla-policy-start")
        assert not refused, refused
    finally:
        watcher.context.close()
    server.client().request("DELETE", "/api/robot/policy")
    assert server.get("/api/robot/status")["policy"] is None
