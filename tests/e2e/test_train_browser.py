"""The Train tab and the Models page (static/train/, static/models/) in a real headless Chromium against the real
server and its embedded worker: an engineer freezes a snapshot of scripted demos, launches a tiny training job,
watches its curve grow, cancels and resumes it, finds the finished model in the registry with its lineage, imports
a second model from a file and compares the two. A manager sees both pages but cannot launch."""

from __future__ import annotations

import json
import tarfile

import pytest
from helpers import TINY_POLICY_KWARGS, save_tiny_policy
from serve import PASSWORD, record_episodes, signed_in_page

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DATASET = "train_demos"
# The smallest policy the data allows (cameras and sizes come from the snapshot): seconds per hundred steps.
TINY = {k: v for k, v in TINY_POLICY_KWARGS.items() if k not in ("cameras", "state_dim", "action_dim")}
# Long enough to be cancelled mid-run (it is, as soon as its second record is drawn, at step 40), short enough to
# finish soon after the resume: about 8 steps/s on two busy cores (the frames' augmentation and the batch building
# weigh more than the tiny policy).
STEPS = 300


@pytest.fixture(scope="module")
def episodes(server):
    """Three short scripted-expert episodes, and an engineer and a manager to use them."""
    for name, role in (("erika", "engineer"), ("manny", "manager")):
        server.post("/api/users", {"name": name, "role": role, "password": PASSWORD})
    return record_episodes(server, 3, seconds=1.0, operator="expert", dataset=DATASET)


def open_tab(browser, url: str, user: str, tab: str, root: str):
    page = signed_in_page(browser, url, user, viewport=(1500, 1100))
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(f"{e}\n{e.stack}"))  # any uncaught error fails the test
    page.get_by_role("tab", name=tab).click()
    page.wait_for_selector(f"#{root}[data-ready]", timeout=30_000)
    return page


def job_row(page, job_id: int, status: str, timeout: float = 60_000) -> None:
    page.wait_for_selector(f'#vla-train-jobs tr[data-job-id="{job_id}"][data-status="{status}"]', timeout=timeout)


def loss_points(page) -> int:
    return page.evaluate("document.getElementById('vla-train-chart-loss').data?.[0]?.x.length ?? 0")


def model_archive(tmp_path) -> str:
    """A save_pretrained folder of an untrained tiny policy (with a few curve records), packed as a .tar.gz."""
    folder = save_tiny_policy(tmp_path / "tiny", metrics_lines=5)
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.iterdir()):
            if path.name != "checkpoints":
                tar.add(path, arcname=path.name)
    return str(archive)


def test_engineer_trains_follows_and_compares(server, browser, episodes, tmp_path):
    page = open_tab(browser, server.url, "erika", "Train", "vla-train")
    page.wait_for_function(  # the pickers are filled (datasets, presets) and the role may launch
        f"""[...document.querySelectorAll('#vla-train-snap-dataset option')].some((o) => o.value === '{DATASET}')
            && !document.getElementById('vla-train-launch').disabled""",
        timeout=15_000,
    )

    # Freeze the dataset as a snapshot from the tab; it becomes the chosen one.
    page.select_option("#vla-train-snap-dataset", DATASET)
    page.fill("#vla-train-snap-name", "demos-v1")
    page.click("#vla-train-snap-make")
    page.wait_for_function("document.getElementById('vla-train-snapshot').value === 'demos-v1'", timeout=10_000)
    assert "3 episodes" in page.inner_text("#vla-train-snapshot")

    # A tiny job: a step count, no rollouts, the policy's size through the advanced JSON.
    page.fill("#vla-train-opt-steps", str(STEPS))
    page.fill("#vla-train-opt-batch_size", "4")
    page.uncheck("#vla-train-select")
    page.fill("#vla-train-model-name", "e2e-policy")
    page.click("#vla-train-advanced-box summary")
    page.fill("#vla-train-advanced", json.dumps({"policy_overrides": TINY, "augment": False}))
    page.click("#vla-train-launch")
    page.wait_for_function(
        "window.vlaTrain.selected !== null || document.getElementById('vla-train-msg').classList.contains('vla-error')",
        timeout=30_000,
    )
    assert page.evaluate("window.vlaTrain.selected") is not None, page.inner_text("#vla-train-msg")
    job_id = page.evaluate("window.vlaTrain.selected")
    job = server.get(f"/api/jobs/{job_id}")
    assert (job["kind"], job["created_by"], job["config"]["options"]["steps"]) == ("train", "erika", STEPS)

    # The curve grows while it runs (records appended, poll after poll), with a progress bar and an ETA.
    page.wait_for_function("document.getElementById('vla-train-chart-loss').data?.[0]?.x.length >= 1", timeout=60_000)
    first = loss_points(page)
    page.wait_for_function(f"document.getElementById('vla-train-chart-loss').data[0].x.length > {first}",
                           timeout=30_000)  # fmt: skip
    row = f'#vla-train-jobs tr[data-job-id="{job_id}"]'
    assert "%" in page.inner_text(f"{row} .vla-train-bar")
    page.wait_for_function(f"/\\d/.test(document.querySelector('{row} .vla-train-eta').textContent)", timeout=10_000)
    steps = page.evaluate("document.getElementById('vla-train-chart-loss').data[0].x")
    assert steps == sorted(set(steps)), steps  # appended once each, in order

    # Cancel: it stops within seconds; Resume: it continues from its checkpoint and finishes.
    page.click(f"{row} .vla-train-cancel")
    job_row(page, job_id, "cancelled", timeout=30_000)
    stopped_at = server.get(f"/api/jobs/{job_id}")
    assert stopped_at["status"] == "cancelled" and stopped_at["progress"] < 0.99, stopped_at
    page.click(f"{row} .vla-train-resume")
    job_row(page, job_id, "succeeded", timeout=120_000)
    page.wait_for_function("document.getElementById('vla-train-follow-title').dataset.status === 'succeeded'",
                           timeout=10_000)  # fmt: skip
    done = server.get(f"/api/jobs/{job_id}")
    assert done["attempts"] == 2, done
    metrics = server.get(f"/api/jobs/{job_id}/metrics")["records"]
    last_step = max(r["step"] for r in metrics if "loss" in r)
    drawn = page.evaluate("document.getElementById('vla-train-chart-loss').data[0].x")
    assert drawn[-1] == last_step == STEPS and drawn == sorted(set(drawn)), drawn[-5:]
    assert "registered" in page.inner_text("#vla-train-log")

    # The finished job links to its model: the Models page opens on it, with its lineage down to the episodes.
    model_id = done["result"]["model_id"]
    page.click(f'{row} a.vla-train-model-link[data-model-id="{model_id}"]')
    page.wait_for_selector(f'#vla-models-title[data-model-id="{model_id}"]', timeout=15_000)
    assert "e2e-policy v1" in page.inner_text("#vla-models-title")
    assert "files intact" in page.inner_text("#vla-models-problems")
    assert "demos-v1" in page.inner_text("#vla-models-lineage")
    links = "#vla-models-lineage a.vla-models-episode"
    linked = page.eval_on_selector_all(links, "as => as.map((a) => +a.textContent)")
    assert sorted(linked) == sorted(episodes)
    page.wait_for_function("document.getElementById('vla-models-chart-loss').data?.[0]?.x.length > 0", timeout=15_000)

    # Import a second model from a file, then compare the two side by side.
    page.set_input_files("#vla-models-import-file", model_archive(tmp_path))
    page.fill("#vla-models-import-name", "imported-tiny")
    page.click("#vla-models-import")
    page.wait_for_selector('#vla-models-rows tr[data-stage="candidate"] >> text=imported-tiny', timeout=15_000)
    imported = next(m for m in page.evaluate("window.vlaModels.models") if m["name"] == "imported-tiny")
    page.select_option("#vla-models-compare-a", str(model_id))
    page.select_option("#vla-models-compare-b", str(imported["id"]))
    page.click("#vla-models-compare-go")
    page.wait_for_selector("#vla-models-config-diff tbody tr", timeout=15_000)
    assert "cameras" in page.inner_text("#vla-models-config-diff")  # front+wrist from the data vs front only
    assert "no closed-loop success recorded" in page.inner_text("#vla-models-compare-loop")
    page.wait_for_function(
        """() => { const names = (document.getElementById('vla-models-compare-chart-loss').data || [])
                    .filter((t) => t.x.length).map((t) => t.name);
                   return names.some((n) => n.startsWith('A:')) && names.some((n) => n.startsWith('B:')); }""",
        timeout=15_000,
    )

    # Promote the trained model: the default for rollouts.
    page.click(f"#vla-models-rows tr[data-model-id='{model_id}']")
    page.wait_for_selector(f'#vla-models-title[data-model-id="{model_id}"]', timeout=10_000)
    page.click("#vla-models-promote")
    page.wait_for_selector(f'#vla-models-title[data-model-id="{model_id}"][data-stage="production"]', timeout=10_000)
    assert server.get(f"/api/models/{model_id}")["stage"] == "production"

    # Evaluate it (one rollout per colour on the test seeds): the embedded worker runs the job, the table fills.
    page.fill("#vla-models-eval-episodes", "1")
    page.click("#vla-models-evaluate")
    page.wait_for_selector("#vla-models-eval-table tbody tr", timeout=120_000)
    (evaluation,) = server.get(f"/api/models/{model_id}/evaluations")["data"]
    assert evaluation["overall"]["episodes"] == 3 and set(evaluation["per_group"]) == {
        "pick/red",
        "pick/green",
        "pick/blue",
    }
    # Where the model looks (issue 15): the table shows the grounding, other-cube, occlusion and wrong-object cells.
    head = page.inner_text("#vla-models-eval-table thead")
    assert all(t in head for t in ("grounding", "on other cubes", "occlusion", "wrong object")), head
    row = page.inner_text("#vla-models-eval-table tbody tr")
    wrong = evaluation["overall"]["wrong_object_rate"]
    assert f"{round(100 * wrong)}%" in row and evaluation["overall"]["occlusion"]["frames"] > 0
    # Each failed rollout is one click from its video, with the attention overlay (Chromium decodes the MP4).
    videos = evaluation["failure_videos"]
    assert len(videos) == 3 - evaluation["overall"]["successes"]
    if videos:
        page.click(".vla-models-eval-video-button")
        page.wait_for_function("document.querySelector('#vla-models-eval-player video')?.readyState >= 1",
                               timeout=15_000)  # fmt: skip
        assert f"seed {videos[0]['seed']}" in page.inner_text("#vla-models-eval-player")
    else:
        assert "none failed" in page.inner_text("#vla-models-eval-table .vla-models-eval-videos")
    assert not page.errors, page.errors


def test_manager_reads_but_cannot_launch_and_operator_sees_neither(server, browser, episodes):
    page = open_tab(browser, server.url, "manny", "Train", "vla-train")
    page.wait_for_function("document.getElementById('vla-train-launch').title.includes('cannot launch training')",
                           timeout=10_000)  # fmt: skip
    assert page.is_disabled("#vla-train-launch") and page.is_disabled("#vla-train-snap-make")
    page.get_by_role("tab", name="Models").click()
    page.wait_for_selector("#vla-models[data-ready]", timeout=10_000)
    assert page.is_disabled("#vla-models-import")
    assert not page.errors, page.errors

    operator = signed_in_page(browser, server.url, "viewer")
    operator.wait_for_timeout(600)  # the header has hidden the tabs the role may not use
    assert operator.get_by_role("tab", name="Train").is_hidden()
    assert operator.get_by_role("tab", name="Models").is_hidden()
