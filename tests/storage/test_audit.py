"""The audit log on a real SQLite: record, filters, paging, CSV export, and rows the database refuses to change or
delete (the PostgreSQL case is in test_postgres.py)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from backend.services.audit import Action, AuditQuery, AuditService
from storage.db import alembic_config, upgrade_database
from storage.models import AuditEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def clock_now():
    state = {"t": T0}

    def now() -> datetime:
        state["t"] += timedelta(minutes=1)
        return state["t"]

    return now


@pytest.fixture
def audit(session_factory, clock_now) -> AuditService:
    return AuditService(session_factory, now=clock_now)


def fill(audit: AuditService) -> None:
    """Six events at T0 + 1..6 min."""
    audit.record("alice", Action.SIGN_IN, "user", "alice", address="10.0.0.1", detail={"via": "password"})
    audit.record("alice", Action.EPISODE_EDIT, "episode", 7, address="10.0.0.1", detail={"fields": ["notes"]})
    audit.record("bob", Action.EPISODE_EDIT, "episode", 8, address="10.0.0.2")
    audit.record(None, Action.SIGN_IN_FAILED, address="203.0.113.7", detail={"reason": "unknown_user"})
    audit.record("alice", Action.EPISODE_PURGE, "episode", 7, address="10.0.0.1", detail={"dataset": "café"})
    audit.record("admin", "user.add", "user", "carol", address="cli", detail={"role": "operator"})


def test_record_and_filter(audit):
    fill(audit)
    page, total = audit.query()
    assert total == 6 and [e.action for e in page][:2] == ["user.add", "episode.purge"]  # newest first
    assert page[1].detail == {"dataset": "café"} and page[1].at == T0 + timedelta(minutes=5)
    assert page[1].at.tzinfo is not None

    def ids(**filters) -> list[str | None]:
        return [e.object_id for e in audit.query(AuditQuery(**filters))[0]]

    assert ids(actor="alice") == ["7", "7", "alice"]
    assert ids(action="episode.edit") == ["8", "7"]
    assert ids(object_type="episode", object_id=7) == ["7", "7"]  # ids match as text
    assert ids(since=T0 + timedelta(minutes=3), until=T0 + timedelta(minutes=5)) == [None, "8"]
    assert ids(actor="alice", action="episode.purge") == ["7"]
    assert ids(actor="nobody") == []
    page, total = audit.query(AuditQuery(offset=2, limit=2))
    assert total == 6 and [e.action for e in page] == ["auth.sign_in_failed", "episode.edit"]


@pytest.mark.parametrize(
    "bad", [dict(limit=0), dict(limit=1001), dict(offset=-1), dict(offset=2**63), dict(since=datetime(2026, 1, 1))]
)
def test_bad_query_is_refused(audit, bad):
    with pytest.raises(ValueError):
        audit.query(AuditQuery(**bad))


def test_record_joins_the_callers_transaction(audit, session_factory):
    with pytest.raises(RuntimeError):
        with session_factory.begin() as s:
            audit.record("alice", Action.EPISODE_TRASH, "episode", 1, session=s)
            raise RuntimeError("the change failed")
    assert audit.query()[1] == 0  # rolled back with it
    with session_factory.begin() as s:
        audit.record("alice", Action.EPISODE_TRASH, "episode", 1, session=s)
    assert audit.query()[1] == 1


def test_csv_export(audit):
    fill(audit)
    audit.record("=cmd", Action.SNAPSHOT_CREATE, "snapshot", "-1+1", detail={})  # what a spreadsheet would run
    chunks = list(audit.iter_csv(AuditQuery(offset=3, limit=1), batch=2))  # the page is ignored; batches of 2
    assert len(chunks) == 1 + 4  # the header, then 7 rows in 4 batches
    rows = list(csv.DictReader(io.StringIO("".join(chunks))))
    assert len(rows) == 7 and [int(r["id"]) for r in rows] == list(range(7, 0, -1))
    assert rows[0]["actor"] == "'=cmd" and rows[0]["object_id"] == "'-1+1"
    purge = rows[2]
    assert purge["action"] == "episode.purge" and purge["detail"] == '{"dataset": "café"}'
    assert datetime.fromisoformat(purge["at"]) == T0 + timedelta(minutes=5)
    assert rows[3]["actor"] == "" and rows[3]["address"] == "203.0.113.7"
    only_bob = list(csv.DictReader(io.StringIO("".join(audit.iter_csv(AuditQuery(actor="bob"))))))
    assert [r["object_id"] for r in only_bob] == ["8"]


def test_rows_cannot_be_changed_or_deleted(audit, engine, session_factory):
    fill(audit)
    for statement in ("UPDATE audit_events SET actor = 'mallory'", "DELETE FROM audit_events WHERE id = 1"):
        with pytest.raises(DBAPIError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(text(statement))
    with pytest.raises(DBAPIError, match="append-only"):  # through the ORM as well
        with session_factory.begin() as s:
            s.execute(delete(AuditEvent))
    with pytest.raises(DBAPIError, match="append-only"):
        with session_factory.begin() as s:
            s.get(AuditEvent, 2).detail = {"forged": True}
    with pytest.raises(DBAPIError, match="append-only"):
        with session_factory.begin() as s:
            s.execute(update(AuditEvent).values(address=None))
    page, total = audit.query()
    assert total == 6 and {e.actor for e in page} == {"alice", "bob", None, "admin"}
    assert session_factory().get(AuditEvent, 2).detail == {"fields": ["notes"]}
    audit.record("alice", Action.EXPORT_START, "snapshot", "s1")  # appending still works
    assert audit.query()[1] == 7


def test_downgrade_drops_the_triggers_and_upgrade_restores_them(engine):
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0002")
    with engine.connect() as conn:
        names = conn.execute(text("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")).scalars()
        assert not {"users", "api_tokens", "audit_events", "audit_events_no_update"} & set(names)
    upgrade_database(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO audit_events (at, action, detail) VALUES ('2026-01-01', 'x', '{}')"))
    with pytest.raises(DBAPIError, match="append-only"):
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_events"))
    with engine.connect() as conn:
        assert conn.execute(select(AuditEvent.action)).scalars().all() == ["x"]


def test_values_longer_than_their_column_are_cut_not_refused(audit):
    audit.record("a" * 300, "x", "t" * 40, "9" * 200, address="f" * 100)
    (event,), _ = audit.query()
    assert len(event.actor) == 128 and event.actor.endswith("…") and len(event.object_type) == 32
    assert len(event.object_id) == 128 and len(event.address) == 64
