"""Every policy rollout in SQL (storage.models.Rollout): live ones from the robot session, evaluation ones from
evaluation jobs. One row per rollout, written once it ends (a live rollout's end is a reset, a saved take, the
policy unloaded or stopped, or an abort), read by the rollouts API, its CSV and Parquet exports and, later, the
managers' metrics.

Outcome: "success" or "failure" by the effective rule of storage.success (the operator's verdict when the take was
saved with one, else the task's automatic check, ever true during the rollout), or "aborted" (the session stopped
the policy: a non-finite action, a failing model).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from backend.services.audit import _FORMULA_START as FORMULA_START  # the audit CSV's rule
from storage.db import session_scope
from storage.errors import NotFoundError
from storage.models import RegisteredModel, Rollout, RolloutKind, utcnow

__all__ = ["OUTCOMES", "RolloutInfo", "RolloutLog", "RolloutQuery", "outcome_of"]

OUTCOMES = ("success", "failure", "aborted")
MAX_PAGE = 1000
# The columns of the CSV and Parquet exports, in order (RolloutInfo's fields but `extra`).
EXPORT_COLUMNS = (
    "id", "kind", "model_id", "model_name", "model_version", "snapshot_id", "job_id", "suite", "task", "colour",
    "instruction", "seed", "operator", "started_at", "ended_at", "duration_s", "steps", "outcome", "auto_success",
    "human_success", "failure_reason", "interventions", "intervention_frames", "help_prompts", "uncertainty_mean",
    "uncertainty_max", "episode_id",
)  # fmt: skip


def outcome_of(*, auto_success: bool | None, human_success: bool | None, aborted: bool = False) -> str:
    if aborted:
        return "aborted"
    effective = human_success if human_success is not None else auto_success
    return "success" if effective else "failure"


@dataclass(frozen=True)
class RolloutInfo:
    id: int
    kind: str
    model_id: int | None
    model_name: str | None
    model_version: int | None
    snapshot_id: int | None
    job_id: int | None
    suite: str | None
    task: str
    colour: str | None
    instruction: str
    seed: int | None
    operator: str | None
    started_at: datetime
    ended_at: datetime | None
    duration_s: float | None
    steps: int
    outcome: str
    auto_success: bool | None
    human_success: bool | None
    failure_reason: str | None
    interventions: int
    intervention_frames: int
    help_prompts: int
    uncertainty_mean: float | None
    uncertainty_max: float | None
    episode_id: int | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RolloutQuery:
    """Filters for list / count / export (all optional, combined with AND)."""

    model_id: int | None = None
    model_name: str | None = None
    task: str | None = None
    colour: str | None = None
    kind: str | None = None
    operator: str | None = None
    outcome: str | None = None
    suite: str | None = None
    job_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in {k.value for k in RolloutKind}:
            raise ValueError(f"kind must be one of {', '.join(k.value for k in RolloutKind)}, got {self.kind!r}")
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, got {self.outcome!r}")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                object.__setattr__(self, name, value.replace(tzinfo=UTC))

    def apply(self, stmt):
        for column, value in (
            (Rollout.model_id, self.model_id), (Rollout.model_name, self.model_name), (Rollout.task, self.task),
            (Rollout.colour, self.colour), (Rollout.operator, self.operator), (Rollout.outcome, self.outcome),
            (Rollout.suite, self.suite), (Rollout.job_id, self.job_id),
        ):  # fmt: skip
            if value is not None:
                stmt = stmt.where(column == value)
        if self.kind is not None:
            stmt = stmt.where(Rollout.kind == RolloutKind(self.kind))
        if self.since is not None:
            stmt = stmt.where(Rollout.started_at >= self.since)
        if self.until is not None:
            stmt = stmt.where(Rollout.started_at < self.until)
        return stmt


class RolloutLog:
    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._sf = session_factory

    # -- writing ----------------------------------------------------------------------------------------------------
    def record(self, rollout: Mapping[str, Any]) -> int:
        """Insert one finished rollout (the session's or an evaluation's record: Rollout's columns); returns its id.

        `outcome` may be left out (derived by outcome_of from the two success fields and `aborted`); a model_id
        fills in the model's name, version and snapshot when the record does not carry them."""
        with session_scope(self._sf) as s:
            row = _row(s, rollout)
            s.add(row)
            s.flush()
            return int(row.id)

    def replace_evaluation_group(self, job_id: int, task: str, colour: str, records: list[Mapping[str, Any]]) -> int:
        """An evaluation job's rollouts of one task and colour, replacing any the job wrote before (a resumed job
        rolls an unfinished group out again), in one transaction: the log never holds a group twice."""
        from sqlalchemy import delete

        with session_scope(self._sf) as s:
            s.execute(delete(Rollout).where(Rollout.job_id == job_id, Rollout.task == task, Rollout.colour == colour))
            s.add_all([_row(s, r) for r in records])
        return len(records)

    def set_verdict(self, rollout_id: int, *, human_success: bool, failure_reason: str | None = None) -> RolloutInfo:
        """The operator's verdict after the fact (the outcome follows it unless the rollout was aborted)."""
        with session_scope(self._sf) as s:
            row = s.get(Rollout, rollout_id)
            if row is None:
                raise NotFoundError(f"no rollout with id {rollout_id}")
            row.human_success = bool(human_success)
            row.failure_reason = None if human_success else failure_reason
            if row.outcome != "aborted":
                row.outcome = outcome_of(auto_success=row.auto_success, human_success=row.human_success)
            s.flush()
            return _info(row)

    # -- reading ----------------------------------------------------------------------------------------------------
    def get(self, rollout_id: int) -> RolloutInfo:
        with self._sf() as s:
            row = s.get(Rollout, rollout_id)
            if row is None:
                raise NotFoundError(f"no rollout with id {rollout_id}")
            return _info(row)

    def list(self, query: RolloutQuery | None = None, *, limit: int = 100, offset: int = 0) -> list[RolloutInfo]:
        """Newest first."""
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise ValueError(f"limit must be in 1..{MAX_PAGE} and offset >= 0")
        stmt = (query or RolloutQuery()).apply(select(Rollout))
        stmt = stmt.order_by(Rollout.started_at.desc(), Rollout.id.desc()).limit(limit).offset(offset)
        with self._sf() as s:
            return [_info(r) for r in s.scalars(stmt)]

    def count(self, query: RolloutQuery | None = None) -> int:
        stmt = (query or RolloutQuery()).apply(select(func.count()).select_from(Rollout))
        with self._sf() as s:
            return int(s.scalar(stmt) or 0)

    def _iter(self, query: RolloutQuery | None, batch: int = 1000) -> Iterator[RolloutInfo]:
        """Every matching rollout, oldest first, read in keyset pages (constant memory for a large log)."""
        last = 0
        while True:
            stmt = (query or RolloutQuery()).apply(select(Rollout)).where(Rollout.id > last)
            with self._sf() as s:
                rows = [_info(r) for r in s.scalars(stmt.order_by(Rollout.id).limit(batch))]
            if not rows:
                return
            yield from rows
            last = rows[-1].id

    def csv_lines(self, query: RolloutQuery | None = None) -> Iterator[str]:
        """The CSV export, a header line then one line per rollout (text cells that a spreadsheet would run as a
        formula are prefixed with a quote, as the audit CSV does)."""
        buf = io.StringIO()
        writer = csv.writer(buf)

        def flush() -> str:
            text = buf.getvalue()
            buf.seek(0)
            buf.truncate()
            return text

        writer.writerow(EXPORT_COLUMNS)
        yield flush()
        for info in self._iter(query):
            row = asdict(info)
            writer.writerow([_csv_cell(row[c]) for c in EXPORT_COLUMNS])
            yield flush()

    def parquet_bytes(self, query: RolloutQuery | None = None) -> bytes:
        rows = [asdict(i) for i in self._iter(query)]
        columns = {c: [r[c] for r in rows] for c in EXPORT_COLUMNS}
        table = pa.table({c: pa.array(v, type=_ARROW_TYPES.get(c)) for c, v in columns.items()})
        out = io.BytesIO()
        pq.write_table(table, out)
        return out.getvalue()


_ARROW_TYPES = {
    "id": pa.int64(), "model_id": pa.int64(), "model_version": pa.int64(), "snapshot_id": pa.int64(),
    "job_id": pa.int64(), "seed": pa.int64(), "started_at": pa.timestamp("us", tz="UTC"),
    "ended_at": pa.timestamp("us", tz="UTC"), "duration_s": pa.float64(), "steps": pa.int64(),
    "auto_success": pa.bool_(), "human_success": pa.bool_(), "interventions": pa.int64(),
    "intervention_frames": pa.int64(), "help_prompts": pa.int64(), "uncertainty_mean": pa.float64(),
    "uncertainty_max": pa.float64(), "episode_id": pa.int64(),
}  # fmt: skip


def _row(s: Session, rollout: Mapping[str, Any]) -> Rollout:
    values = dict(rollout)
    aborted = bool(values.pop("aborted", False))
    values.setdefault(
        "outcome",
        outcome_of(auto_success=values.get("auto_success"), human_success=values.get("human_success"), aborted=aborted),
    )
    if values["outcome"] not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, got {values['outcome']!r}")
    values["kind"] = RolloutKind(values.get("kind", RolloutKind.LIVE))
    started = values.get("started_at") or utcnow()
    values["started_at"] = started
    if values.get("ended_at") is None and values.get("duration_s") is not None:
        values["ended_at"] = started + timedelta(seconds=float(values["duration_s"]))
    unknown = sorted(set(values) - set(Rollout.__table__.columns.keys()))
    if unknown:
        raise ValueError(f"unknown rollout field(s): {', '.join(unknown)}")
    model_id = values.get("model_id")
    if model_id is not None:
        model = s.get(RegisteredModel, model_id)
        if model is None:
            values["model_id"] = None  # deleted since: keep the copied name and version
        else:
            values.setdefault("model_name", model.name)
            values.setdefault("model_version", model.version)
            values.setdefault("snapshot_id", model.snapshot_id)
    return Rollout(**values)


def _csv_cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _info(row: Rollout) -> RolloutInfo:
    return RolloutInfo(
        id=row.id, kind=RolloutKind(row.kind).value, model_id=row.model_id, model_name=row.model_name,
        model_version=row.model_version, snapshot_id=row.snapshot_id, job_id=row.job_id, suite=row.suite,
        task=row.task, colour=row.colour, instruction=row.instruction, seed=row.seed, operator=row.operator,
        started_at=row.started_at, ended_at=row.ended_at, duration_s=row.duration_s, steps=row.steps,
        outcome=row.outcome, auto_success=row.auto_success, human_success=row.human_success,
        failure_reason=row.failure_reason, interventions=row.interventions,
        intervention_frames=row.intervention_frames, help_prompts=row.help_prompts,
        uncertainty_mean=row.uncertainty_mean, uncertainty_max=row.uncertainty_max, episode_id=row.episode_id,
        extra=dict(row.extra or {}),
    )  # fmt: skip
