"""The Label tab (static/label/) in a real headless Chromium against the real server: an operator labels an
episode with hotkeys and exports the dataset; the player's scrubber, keys and charts stay in step."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import pytest
from serve import record_episodes, signed_in_page

pytestmark = pytest.mark.e2e

DATASET = "label_demos"


@pytest.fixture(scope="module")
def episodes(server):
    """Three scripted-expert episodes recorded through the real recording endpoints."""
    return record_episodes(server, 3, seconds=1.2, operator="expert", dataset=DATASET)


def open_label_tab(browser, url: str, *, user: str):
    """A fresh context signed in as `user`, on the dashboard's Label tab."""
    page = signed_in_page(browser, url, user, viewport=(1500, 1100))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"{e}\n{e.stack}"))  # any uncaught error on the page fails
    page.get_by_role("tab", name="Label").click()
    page.wait_for_selector("#vla-label[data-ready]", timeout=30_000)
    page.errors = errors
    return page


def open_episode(page, episode_id: int) -> None:
    page.locator(f'#vla-label tr[data-episode-id="{episode_id}"] td:nth-child(3)').click()
    page.wait_for_function(f"window.vlaLabel.ep && window.vlaLabel.ep.id === {episode_id}", timeout=10_000)
    page.wait_for_function("window.vlaLabel.chartsReady === true", timeout=20_000)


def frame(page) -> int:
    return int(page.get_attribute("#vla-label-frame", "data-frame"))


def playheads(page) -> list[float]:
    """Where the vertical line is drawn on each chart (the x of the first layout shape)."""
    return page.evaluate(
        """() => ["state", "action"].map((k) =>
            document.getElementById(`vla-label-chart-${k}`).layout.shapes[0].x0)"""
    )


def wait_frame(page, k: int) -> None:
    page.wait_for_function(
        f"""() => document.getElementById("vla-label-frame").dataset.frame === "{k}" &&
            ["state", "action"].every((c) =>
                document.getElementById(`vla-label-chart-${{c}}`).layout.shapes[0].x0 === {k})""",
        timeout=5_000,
    )


def test_new_operator_labels_with_hotkeys_and_exports(server, browser, episodes):
    page = open_label_tab(browser, server.url, user="carol")
    # The tab names the signed-in operator: every change is recorded under the session's user.
    page.wait_for_function("document.getElementById('vla-label-user').textContent === 'carol (operator)'")

    # The browser lists the recorded episodes (newest first) with thumbnails, filtered to the dataset.
    page.select_option("#vla-label-f-dataset", DATASET)
    page.wait_for_function(f"document.getElementById('vla-label-count').dataset.count === '{len(episodes)}'")
    rows = page.locator("#vla-label-rows tr[data-episode-id]")
    assert [int(rows.nth(i).get_attribute("data-episode-id")) for i in range(rows.count())] == episodes[::-1]
    target = episodes[0]
    open_episode(page, target)
    assert page.locator("#vla-label-videos video").count() == 2  # one per camera
    length = page.evaluate("window.vlaLabel.ep.length")
    assert "expert" in page.inner_text(f'#vla-label tr[data-episode-id="{target}"]')

    # F labels a failure, 2 picks the second reason of the taxonomy (typed at once: the saves queue up).
    reasons = server.get("/api/labeling/vocabulary")["failure_reasons"]
    page.keyboard.press("f")
    page.keyboard.press("2")
    page.wait_for_function(f"window.vlaLabel.ep.failure_reason === {json.dumps(reasons[1])}")
    assert page.evaluate("window.vlaLabel.ep.human_success") is False
    assert page.is_hidden("#vla-label-conflict")
    assert "failure" in page.inner_text(f'#vla-label tr[data-episode-id="{target}"]')

    # Arrows step frames; [ and ] mark a segment at the playhead, then its text is typed and Enter saves it.
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    wait_frame(page, 3)
    page.keyboard.press("BracketLeft")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowLeft")
    wait_frame(page, 13)
    page.keyboard.press("BracketRight")
    page.wait_for_selector("#vla-label-segment-text:focus", timeout=5_000)
    page.keyboard.type("reach the cube")
    page.keyboard.press("Enter")
    page.wait_for_function("window.vlaLabel.ep.segments.length === 1")
    assert page.locator("#vla-label-timeline .vla-label-block").inner_text() == "reach the cube"
    page.wait_for_function("document.getElementById('vla-label-history').textContent.includes('carol')")

    # Export the dataset to LeRobot v3.0 from the UI and watch the progress bar reach the end.
    page.select_option("#vla-label-export-what", f"dataset:{DATASET}")
    page.click("#vla-label-export")
    page.wait_for_selector("#vla-label-export-status:is([data-state='done'], [data-state='failed'])", timeout=60_000)
    status = page.inner_text("#vla-label-export-status")
    assert page.get_attribute("#vla-label-export-status", "data-state") == "done", status
    assert page.evaluate("document.getElementById('vla-label-export-progress').position") == 1
    assert not page.errors, page.errors

    # Everything is stored: the annotation, the history by this operator, and the export on disk.
    ep = server.get(f"/api/episodes/{target}")
    assert ep["human_success"] is False and ep["failure_reason"] == reasons[1]
    assert ep["segments"] == [{"start": 3, "end": 13, "text": "reach the cube"}]
    assert ep["length"] == length and ep["version"] == 4
    history = server.get(f"/api/episodes/{target}/history")
    assert [e["user"] for e in history] == ["carol"] * 3
    assert {field for e in history for field in e["changes"]} >= {"human_success", "failure_reason", "segments"}
    job = max(server.get("/api/exports"), key=lambda j: j["id"])
    assert job["state"] == "done" and job["out_dir"] in status
    info = json.loads((Path(job["out_dir"]) / "meta" / "info.json").read_text())
    assert info["total_episodes"] == len(episodes)
    page.context.close()


@pytest.mark.slow  # ~15 s, and timing-sensitive on a loaded machine
def test_scrubber_keys_and_chart_clicks_move_the_playhead(server, browser, episodes):
    page = open_label_tab(browser, server.url, user="dave")
    target = episodes[1]
    page.wait_for_selector(f'#vla-label tr[data-episode-id="{target}"]', timeout=10_000)
    open_episode(page, target)
    length = page.evaluate("window.vlaLabel.ep.length")
    assert page.inner_text("#vla-label-frame").startswith(f"frame 0 / {length}")
    assert playheads(page) == [0, 0]

    page.fill("#vla-label-scrubber", "20")  # dragging the scrubber
    wait_frame(page, 20)
    assert page.inner_text("#vla-label-frame").startswith(f"frame 20 / {length}")
    page.focus("#vla-label-scrubber")  # arrow keys step frames even with the scrubber focused
    page.keyboard.press("ArrowRight")
    wait_frame(page, 21)
    page.keyboard.press("Shift+ArrowLeft")
    wait_frame(page, 11)
    assert page.input_value("#vla-label-scrubber") == "11"
    # The video shows the same frame (inside frame 11's time slot).
    fps = page.evaluate("window.vlaLabel.ep.fps")
    t = page.evaluate("document.querySelector('#vla-label-videos video').currentTime")
    assert 11 / fps <= t < 12 / fps, t

    # Clicking the chart seeks there.
    box = page.evaluate(
        """() => { const gd = document.getElementById("vla-label-chart-action"), fl = gd._fullLayout;
                   return [fl._size.l + fl.xaxis.l2p(30), fl._size.t + fl._size.h / 2]; }"""
    )
    page.locator("#vla-label-chart-action").click(position={"x": box[0], "y": box[1]})
    wait_frame(page, 30)

    # Space plays (the playhead follows the video) and pauses.
    page.keyboard.press("Home")
    wait_frame(page, 0)
    page.keyboard.press("Space")
    page.wait_for_function("window.vlaLabel.playing && window.vlaLabel.frame >= 5", timeout=10_000)
    page.keyboard.press("Space")
    page.wait_for_function("!window.vlaLabel.playing")
    stopped = frame(page)
    assert stopped >= 5
    wait_frame(page, stopped)

    # Someone else edits the episode meanwhile: the next save is refused with a banner, and reload recovers.
    version = page.evaluate("window.vlaLabel.ep.version")
    erin = server.client("erin")
    erin.patch(f"/api/episodes/{target}/annotation", {"version": version, "notes": "checked"})
    page.keyboard.press("f")
    page.wait_for_selector("#vla-label-conflict:not([hidden])", timeout=5_000)
    assert "NOT saved" in page.inner_text("#vla-label-conflict")
    assert server.get(f"/api/episodes/{target}")["human_success"] is True  # recorded as a success; unchanged
    page.click("#vla-label-reload")
    page.wait_for_function(f"window.vlaLabel.ep.version === {version + 1}")
    assert page.is_hidden("#vla-label-conflict") and page.input_value("#vla-label-notes") == "checked"
    page.keyboard.press("f")
    page.wait_for_function("window.vlaLabel.ep.human_success === false")
    page.keyboard.press("Control+z")  # undo
    page.wait_for_function("window.vlaLabel.ep.human_success === true")
    assert server.get(f"/api/episodes/{target}")["human_success"] is True
    page.wait_for_selector("#vla-label-history li.vla-undone", timeout=5_000)  # the history is reloaded
    assert page.locator("#vla-label-history li.vla-undone").count() == 1
    with pytest.raises(urllib.error.HTTPError):
        erin.patch(f"/api/episodes/{target}/annotation", {"version": version, "notes": "x"})
    assert not page.errors, page.errors
    page.context.close()


@pytest.mark.slow  # ~18 s; the bulk API is tested in tests/webapp
def test_bulk_edits_trim_split_trash_and_snapshot(server, browser, episodes):
    page = open_label_tab(browser, server.url, user="frank")
    page.select_option("#vla-label-f-dataset", DATASET)
    page.wait_for_selector(f'#vla-label tr[data-episode-id="{episodes[2]}"]', timeout=10_000)
    # Select the page, then give every episode the same instruction and a failure label with a reason.
    page.check("#vla-label-select-page")
    assert page.inner_text("#vla-label-bulk-count").startswith(f"{len(episodes)} episode")
    page.fill("#vla-label-bulk-instruction", "stack the red cube")
    page.click("#vla-label-bulk-set-instruction")
    page.wait_for_function(  # the list is reloaded with the new instruction
        """() => [...document.querySelectorAll("#vla-label-rows .vla-label-instr")]
            .every((e) => e.textContent === "stack the red cube")"""
    )
    assert page.evaluate("window.vlaLabel.selected.size") == 0
    page.check(f'#vla-label tr[data-episode-id="{episodes[2]}"] input')
    page.select_option("#vla-label-bulk-reason", "collision")
    page.click("#vla-label-bulk-failure")
    page.wait_for_function("window.vlaLabel.selected.size === 0")
    assert all(server.get(f"/api/episodes/{i}")["instruction"] == "stack the red cube" for i in episodes)
    ep = server.get(f"/api/episodes/{episodes[2]}")
    assert (ep["human_success"], ep["failure_reason"]) == (False, "collision")
    assert server.get(f"/api/episodes/{episodes[2]}/history")[0]["user"] == "frank"

    # Trim to the marks ([ at frame 2, ] at frame 12 fills the trim fields), then split the new episode.
    open_episode(page, episodes[2])
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("BracketLeft")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("BracketRight")
    page.keyboard.press("Escape")  # no segment: just the marks
    assert (page.input_value("#vla-label-trim-start"), page.input_value("#vla-label-trim-end")) == ("2", "12")
    page.click("#vla-label-trim")
    page.wait_for_function(f"window.vlaLabel.ep.id > {max(episodes)}", timeout=20_000)
    trimmed = page.evaluate("window.vlaLabel.ep")
    assert trimmed["length"] == 11 and trimmed["instruction"] == "stack the red cube"
    page.keyboard.press("Shift+ArrowRight")
    page.click("#vla-label-split")
    page.wait_for_function(f"window.vlaLabel.ep.id > {trimmed['id']}", timeout=20_000)
    first = page.evaluate("window.vlaLabel.ep")
    assert first["length"] == 10

    # The trash view holds the trimmed original and the split one; restore the original from there.
    page.check("#vla-label-f-trashed")
    page.wait_for_selector(f'#vla-label tr[data-episode-id="{episodes[2]}"]', timeout=10_000)
    assert page.locator("#vla-label-rows tr").count() == 2
    assert page.is_visible("#vla-label-bulk-restore") is False  # nothing selected yet
    page.check(f'#vla-label tr[data-episode-id="{episodes[2]}"] input')
    page.click("#vla-label-bulk-restore")
    page.wait_for_function("window.vlaLabel.selected.size === 0")
    assert server.get(f"/api/episodes/{episodes[2]}")["deleted_at"] is None

    # A snapshot of the successes only.
    page.fill("#vla-label-snap-name", "label-e2e-ok")
    page.select_option("#vla-label-snap-dataset", DATASET)
    page.check("#vla-label-snap-success")
    page.click("#vla-label-snap-create")
    page.wait_for_selector('#vla-label tr[data-snapshot="label-e2e-ok"]', timeout=10_000)
    snap = next(s for s in server.get("/api/snapshots") if s["name"] == "label-e2e-ok")
    successes = server.get(f"/api/episodes?dataset={DATASET}&success=success")["count"]
    assert snap["created_by"] == "frank" and snap["num_episodes"] == successes < len(episodes)
    assert page.input_value("#vla-label-export-what") == "snapshot:label-e2e-ok"
    assert not page.errors, page.errors
    page.context.close()
