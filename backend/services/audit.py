"""The audit log: every state-changing action appended as one row (who, when, what, on which object, from where),
read back with filters and exported as CSV. Rows are never changed or deleted: this module has no such method and
the database refuses both (triggers from migration 0003).

    audit = AuditService(store.session_factory)
    audit.record(user.name, Action.EPISODE_PURGE, "episode", 42, address="10.0.0.5", detail={"dataset": "d"})
    page, total = audit.query(AuditQuery(actor="alice", since=monday, limit=50))
"""

from __future__ import annotations

import csv
import enum
import io
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from storage.models import AuditEvent


class Action(enum.StrEnum):
    """The actions the application records (the column is plain text: a new action needs no migration)."""

    SIGN_IN = "auth.sign_in"
    SIGN_IN_FAILED = "auth.sign_in_failed"
    SIGN_OUT = "auth.sign_out"
    CONTROL_TAKE = "control.take"
    CONTROL_RELEASE = "control.release"
    CONTROL_BREAK = "control.break"
    ESTOP_ENGAGE = "estop.engage"
    ESTOP_RELEASE = "estop.release"
    RECORDING_SAVE = "recording.save"
    RECORDING_DISCARD = "recording.discard"
    EPISODE_EDIT = "episode.edit"
    EPISODES_BULK = "episodes.bulk"
    EPISODE_TRASH = "episode.trash"
    EPISODE_PURGE = "episode.purge"
    SNAPSHOT_CREATE = "snapshot.create"
    EXPORT_START = "export.start"
    JOB_CANCEL = "job.cancel"
    JOB_RETRY = "job.retry"
    TRAINING_LAUNCH = "training.launch"
    EVALUATION_LAUNCH = "evaluation.launch"
    MODEL_REGISTER = "model.register"
    MODEL_IMPORT = "model.import"
    MODEL_PROMOTE = "model.promote"
    MODEL_ARCHIVE = "model.archive"
    MODEL_NOTES = "model.notes"
    POLICY_LOAD = "policy.load"
    POLICY_UNLOAD = "policy.unload"
    POLICY_TAKEOVER = "policy.takeover"
    LEARNING_RULE_SET = "learning_rule.set"
    USER_ADD = "user.add"
    USER_DISABLE = "user.disable"
    USER_ENABLE = "user.enable"
    USER_RESET_PASSWORD = "user.reset_password"
    USER_SET_ROLE = "user.set_role"
    TOKEN_CREATE = "token.create"
    TOKEN_REVOKE = "token.revoke"


@dataclass(frozen=True)
class AuditEventInfo:
    id: int
    at: datetime
    actor: str | None
    action: str
    object_type: str | None
    object_id: str | None
    address: str | None
    detail: dict[str, Any]

    @classmethod
    def of(cls, row: AuditEvent) -> AuditEventInfo:
        return cls(row.id, row.at, row.actor, row.action, row.object_type, row.object_id, row.address, dict(row.detail))


MAX_PAGE = 1000


@dataclass(frozen=True)
class AuditQuery:
    """Filters (all optional, combined with AND) and a page; results come newest first."""

    actor: str | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | int | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    offset: int = 0
    limit: int = 100

    def validate(self) -> None:
        if not 0 <= self.offset < 2**63:
            raise ValueError(f"offset must be between 0 and 2^63-1, got {self.offset}")
        if not 1 <= self.limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {self.limit}")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware (UTC), got {value.isoformat()}")


CSV_COLUMNS = ("id", "at", "actor", "action", "object_type", "object_id", "address", "detail")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would run such a cell as a formula


def _csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _cut(text: str | None, length: int) -> str | None:
    """Fit a column (PostgreSQL refuses a longer string, and an audit row must never fail its action)."""
    return text if text is None or len(text) <= length else text[: length - 1] + "…"


class AuditService:
    def __init__(self, session_factory: sessionmaker[Session], *, now: Callable[[], datetime] | None = None) -> None:
        self._sf = session_factory
        self._now = now or (lambda: datetime.now(UTC))

    def record(
        self,
        actor: str | None,
        action: Action | str,
        object_type: str | None = None,
        object_id: str | int | None = None,
        *,
        address: str | None = None,
        detail: Mapping[str, Any] | None = None,
        session: Session | None = None,
    ) -> None:
        """Append one event. With `session`, it joins that transaction (commits or rolls back with the change it
        describes); without, it commits on its own. Never put a password or token in `detail`."""
        row = AuditEvent(
            at=self._now(),
            actor=_cut(actor, 128),
            action=str(action),
            object_type=_cut(object_type, 32),
            object_id=_cut(None if object_id is None else str(object_id), 128),
            address=_cut(address, 64),
            detail=dict(detail or {}),
        )
        if session is not None:
            session.add(row)
            return
        with self._sf.begin() as own:
            own.add(row)

    def _filtered(self, q: AuditQuery):
        stmt = select(AuditEvent)
        if q.actor is not None:
            stmt = stmt.where(AuditEvent.actor == q.actor)
        if q.action is not None:
            stmt = stmt.where(AuditEvent.action == q.action)
        if q.object_type is not None:
            stmt = stmt.where(AuditEvent.object_type == q.object_type)
        if q.object_id is not None:
            stmt = stmt.where(AuditEvent.object_id == str(q.object_id))
        if q.since is not None:
            stmt = stmt.where(AuditEvent.at >= q.since)
        if q.until is not None:
            stmt = stmt.where(AuditEvent.at < q.until)
        return stmt

    def query(self, q: AuditQuery = AuditQuery()) -> tuple[list[AuditEventInfo], int]:
        """One page of matching events, newest first, and how many match in all."""
        q.validate()
        stmt = self._filtered(q)
        with self._sf() as s:
            total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
            rows = s.scalars(stmt.order_by(AuditEvent.id.desc()).offset(q.offset).limit(q.limit)).all()
            return [AuditEventInfo.of(r) for r in rows], total

    def iter_csv(self, q: AuditQuery = AuditQuery(), *, batch: int = 500) -> Iterator[str]:
        """Every event matching q's filters (its page is ignored) as CSV text: a header line, then one line per
        event, newest first, read in batches so a long log is streamed, not held in memory. Cells that a
        spreadsheet would run as a formula get a leading apostrophe."""
        q.validate()
        buf = io.StringIO()
        writer = csv.writer(buf)

        def take() -> str:
            text = buf.getvalue()
            buf.seek(0)
            buf.truncate()
            return text

        writer.writerow(CSV_COLUMNS)
        yield take()
        before: int | None = None  # keyset paging on id: stable while new events are appended
        while True:
            stmt = self._filtered(q).order_by(AuditEvent.id.desc()).limit(batch)
            if before is not None:
                stmt = stmt.where(AuditEvent.id < before)
            with self._sf() as s:
                rows = [AuditEventInfo.of(r) for r in s.scalars(stmt)]
            if not rows:
                return
            for e in rows:
                detail = json.dumps(e.detail, ensure_ascii=False, sort_keys=True)
                cells = (e.id, e.at.isoformat(), e.actor, e.action, e.object_type, e.object_id, e.address, detail)
                writer.writerow([_csv_cell(c) for c in cells])
            yield take()
            before = rows[-1].id
