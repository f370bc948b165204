"""The weekly report: its numbers are the metrics service's for that ISO week, the PDF renders (two pages), and
`run.py report` refuses a bad week before writing anything."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backend.services.metrics import MetricsService
from backend.services.metrics_report import render_weekly_report, week_range
from storage.models import Rollout

MONDAY = datetime(2026, 11, 23, tzinfo=UTC)  # ISO week 2026-W48


def test_week_range_is_the_iso_week_and_bad_weeks_are_refused():
    assert week_range("2026-W48") == (MONDAY, MONDAY + timedelta(days=7))
    for bad in ("2026-48", "last week", "2026-W60"):
        with pytest.raises(ValueError, match="ISO week"):
            week_range(bad)


def test_the_report_counts_the_weeks_rollouts_and_renders_a_pdf(store, tmp_path):
    with store.session_factory.begin() as s:
        for i, day in enumerate([-1, 0, 2, 6, 7]):  # the first and the last fall outside the week
            s.add(Rollout(kind="live", model_name="pick", model_version=1, task="pick",
                          started_at=MONDAY + timedelta(days=day, hours=12), duration_s=2.0,
                          outcome="success" if i % 2 else "failure", interventions=i % 2))  # fmt: skip
    out = tmp_path / "report.pdf"
    summary = render_weekly_report(MetricsService(store.session_factory), "2026-W48", out)
    # In the week: days 0 (success), 2 (failure), 6 (success); the successes are the ones with an intervention.
    assert (summary["rollouts"], summary["successes"], summary["rollouts_with_intervention"]) == (3, 2, 2)
    assert summary["wilson_95"][0] < 2 / 3 < summary["wilson_95"][1]
    data = out.read_bytes()
    assert data.startswith(b"%PDF") and b"/Count 2" in data  # two pages


def test_run_report_refuses_a_bad_week_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import run

    monkeypatch.setenv("VLA_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "r.pdf"
    assert run.main(["report", "--week", "48", "--out", str(out)]) == run.EXIT_BAD_INPUT
    assert "ISO week" in capsys.readouterr().err and not out.exists()
    assert run.main(["report", "--week", "2026-W48", "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"%PDF")
