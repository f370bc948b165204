"""The rollout log on a real SQLite database: outcomes, filters, the model's copied name, CSV and Parquet."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest
from helpers import save_tiny_policy

from backend.services.models import ModelRegistry
from backend.services.rollout_log import EXPORT_COLUMNS, RolloutLog, RolloutQuery, outcome_of
from storage.errors import NotFoundError

T0 = datetime(2026, 11, 30, 12, tzinfo=UTC)


@pytest.fixture
def log(store):
    return RolloutLog(store.session_factory)


def row(**kw):
    base = dict(kind="live", task="pick", colour="red", instruction="=pick the red cube", seed=1, operator="olga",
                started_at=T0, duration_s=3.5, steps=90, auto_success=True)  # fmt: skip
    return base | kw


def test_outcome_follows_the_verdict_then_the_automatic_check():
    assert outcome_of(auto_success=True, human_success=None) == "success"
    assert outcome_of(auto_success=True, human_success=False) == "failure"
    assert outcome_of(auto_success=False, human_success=True) == "success"
    assert outcome_of(auto_success=None, human_success=None) == "failure"
    assert outcome_of(auto_success=True, human_success=True, aborted=True) == "aborted"


def test_rows_filters_and_verdicts(log, store, tmp_path):
    registry = ModelRegistry(store.session_factory, tmp_path / "models")
    model = registry.register(save_tiny_policy(tmp_path / "m"), name="pick", created_by="erin")
    a = log.record(row(model_id=model.id))
    b = log.record(row(kind="evaluation", auto_success=False, colour="blue", started_at=T0 + timedelta(hours=1),
                       suite="held-out", seed=100_000))  # fmt: skip
    c = log.record(row(aborted=True, operator="erin", started_at=T0 + timedelta(hours=2)))
    got = log.get(a)
    assert (got.model_name, got.model_version, got.outcome) == ("pick", 1, "success")
    assert got.ended_at == T0 + timedelta(seconds=3.5)
    assert [r.id for r in log.list()] == [c, b, a]  # newest first
    assert log.count(RolloutQuery(kind="evaluation")) == 1 and log.get(b).outcome == "failure"
    assert [r.id for r in log.list(RolloutQuery(outcome="aborted"))] == [c]
    window = RolloutQuery(since=T0 + timedelta(minutes=30), until=T0 + timedelta(hours=2))
    assert [r.id for r in log.list(window)] == [b]
    assert [r.id for r in log.list(RolloutQuery(model_id=model.id))] == [a]
    assert log.set_verdict(a, human_success=False, failure_reason="dropped").outcome == "failure"
    assert log.set_verdict(c, human_success=True).outcome == "aborted"  # an abort stays an abort
    with pytest.raises(NotFoundError):
        log.get(999)
    with pytest.raises(ValueError, match="kind"):
        RolloutQuery(kind="dream")
    with pytest.raises(ValueError, match="unknown rollout field"):
        log.record(row(colour_of_sky="blue"))
    with pytest.raises(ValueError, match="limit"):
        log.list(limit=0)


def test_csv_and_parquet_exports_carry_every_column(log):
    for i in range(3):
        log.record(row(seed=i, auto_success=i != 1))
    lines = list(csv.reader(io.StringIO("".join(log.csv_lines()))))
    assert tuple(lines[0]) == EXPORT_COLUMNS and len(lines) == 4
    instruction = lines[1][EXPORT_COLUMNS.index("instruction")]
    assert instruction == "'=pick the red cube"  # a formula-looking cell is defused for spreadsheets
    table = pq.read_table(io.BytesIO(log.parquet_bytes(RolloutQuery(outcome="success"))))
    assert table.column_names == list(EXPORT_COLUMNS) and table.num_rows == 2
    assert table.column("seed").to_pylist() == [0, 2]
    assert str(table.schema.field("started_at").type).startswith("timestamp")
