"""The Metrics tab (static/metrics/) in a real headless Chromium against the real server: a manager signs in, opens
Metrics, sees the success chart drawn with its Wilson error bars, filters it to one task and downloads its CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from helpers import open_store
from serve import PASSWORD, signed_in_page

from storage.models import Rollout

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def rollouts(server):
    """Rollouts of two tasks over three weeks, written straight into the server's database (the rollout log's rows)."""
    server.post("/api/users", {"name": "mona", "role": "manager", "password": PASSWORD})
    store = open_store(server.data_dir, recover=False)
    start = datetime.now(UTC) - timedelta(days=20)
    with store.session_factory.begin() as s:
        for i in range(24):
            s.add(Rollout(kind="live", model_name="pick", model_version=1 + i // 12, task="pick" if i % 3 else "place",
                          colour="red", started_at=start + timedelta(days=i * 0.8), duration_s=4.0,
                          outcome="success" if i % 2 else "failure"))  # fmt: skip


def success_traces(page) -> list[dict]:
    return page.evaluate("""(document.getElementById('vla-metrics-success').data || [])
                            .map((t) => ({name: t.name, n: t.x.length, bars: !!(t.error_y && t.error_y.array)}))""")


def test_a_manager_reads_the_success_chart_filters_it_and_downloads_csv(server, browser, rollouts):
    page = signed_in_page(browser, server.url, "mona")
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.get_by_role("tab", name="Metrics").click()
    page.wait_for_selector("#vla-metrics-success[data-drawn]", timeout=30_000)
    traces = success_traces(page)
    assert {t["name"].split(" · ")[0] for t in traces} == {"pick/red", "place/red"}
    assert all(t["bars"] for t in traces)  # every point with its interval
    page.fill('#vla-metrics input[name="task"]', "pick")
    page.click("#vla-metrics-apply")
    page.wait_for_function("""(document.getElementById('vla-metrics-success').data || [])
                              .every((t) => t.name.startsWith('pick/'))""", timeout=15_000)  # fmt: skip
    with page.expect_download() as info:
        page.click('#vla-metrics section[data-chart="success"] a.vla-metrics-csv')
    rows = list(csv.DictReader(io.StringIO(open(info.value.path()).read())))
    assert rows and {r["task"] for r in rows} == {"pick"}
    assert sum(int(r["rollouts"]) for r in rows) == 16
    assert errors == []
