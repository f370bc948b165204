"""/api/metrics over HTTP: a manager reads every chart with the shared filters and downloads one as CSV with the
chart's columns; operators are refused; bad filters get a clear 422."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from backend.services.metrics import CHARTS
from storage.models import Rollout

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def rollouts(store):
    with store.session_factory.begin() as s:
        for i in range(12):
            s.add(
                Rollout(
                    kind="evaluation" if i % 2 else "live",
                    model_name="pick",
                    model_version=1 + i % 2,
                    task="pick" if i < 8 else "place",
                    colour="red",
                    suite="heldout" if i % 2 else None,
                    started_at=T0 + timedelta(days=i),
                    duration_s=3.0,
                    outcome="success" if i % 3 else "failure",
                )
            )


def test_a_manager_reads_every_chart_filters_them_and_downloads_a_csv(client_as, rollouts):
    manager = client_as("mia", "manager")
    page = manager.get("/api/metrics", params={"bucket": "week"})
    assert page.status_code == 200, page.text
    charts = page.json()["charts"]
    assert set(charts) == set(CHARTS)
    assert sum(r["rollouts"] for r in charts["success"]["rows"]) == 12
    only_pick = manager.get("/api/metrics/success", params={"task": "pick", "bucket": "month"}).json()
    assert {r["task"] for r in only_pick["rows"]} == {"pick"} and sum(r["rollouts"] for r in only_pick["rows"]) == 8
    assert only_pick["columns"] == list(CHARTS["success"])
    since = manager.get("/api/metrics/success", params={"since": (T0 + timedelta(days=6)).date().isoformat()}).json()
    assert sum(r["rollouts"] for r in since["rows"]) == 6  # a date: from that day's midnight UTC
    download = manager.get("/api/metrics/success.csv", params={"task": "pick"})
    assert download.headers["content-type"].startswith("text/csv")
    assert 'filename="metrics-success.csv"' in download.headers["content-disposition"]
    lines = list(csv.DictReader(io.StringIO(download.text)))
    assert list(lines[0]) == list(CHARTS["success"]) and sum(int(r["rollouts"]) for r in lines) == 8


def test_operators_are_refused_and_bad_filters_get_422(client_as, client):
    assert client_as("otto", "operator").get("/api/metrics").status_code == 403
    assert client.get("/api/metrics/revenue").status_code == 422
    assert client.get("/api/metrics", params={"bucket": "year"}).status_code == 422
    bad = client.get("/api/metrics", params={"since": "2026-12-02T00:00:00", "until": "2026-12-01T00:00:00"})
    assert bad.status_code == 422 and "before" in bad.json()["detail"]
    assert client.get("/api/metrics", params={"task": "x" * 129}).status_code == 422
    noon = client.get("/api/metrics", params={"since": "2026-12-01T12:00:00Z"})
    assert noon.status_code == 422 and "whole UTC day" in noon.json()["detail"]
