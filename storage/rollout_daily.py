"""The rollout_daily aggregate (storage.models.RolloutDaily), kept exact in the same transaction as the rollouts.

A `before_flush` listener on every ORM Session turns each new, changed or deleted Rollout into a delta on its
(day, task, colour, model version, kind, suite) row: minus what the row counted before, plus what it
counts now, applied as one INSERT ... ON CONFLICT DO UPDATE per group (SQLite and PostgreSQL alike). So the
managers' rollout charts (backend.services.metrics) read a few thousand grouped rows instead of millions of
rollouts, and a verdict given after the fact moves the numbers the way it moves the rollout's outcome.

Writes that bypass the ORM (a bulk `insert(Rollout)`, a migration) call `rebuild_rollout_daily(session)` after.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime

from sqlalchemy import delete, event, insert, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.models import Rollout, RolloutDaily

# No operator: with it the groups are nearly as many as the rollouts (the charts filtered by operator read those).
GROUP = ("task", "colour", "model_name", "model_version", "kind", "suite")
MEASURES = ("rollouts", "successes", "with_intervention", "interventions", "help_prompts", "false_alarm_prompts",
            "duration_s", "success_duration_s")  # fmt: skip
FIELDS = ("started_at", *GROUP, "outcome", "interventions", "help_prompts", "duration_s")
# Fields whose change moves a rollout in the aggregate (a changed operator, notes or uncertainty does not).


def _contribution(v: dict) -> tuple[tuple, dict]:
    """(group key, measures) one rollout with these field values adds to the aggregate."""
    started = v["started_at"]
    day = (started if started.tzinfo is not None else started.replace(tzinfo=UTC)).astimezone(UTC).date()
    kind = v["kind"].value if hasattr(v["kind"], "value") else v["kind"]
    group = (day, *[kind if g == "kind" else v[g] for g in GROUP])
    success = v["outcome"] == "success"
    interventions, prompts, duration = int(v["interventions"] or 0), int(v["help_prompts"] or 0), v["duration_s"] or 0.0
    return group, {
        "rollouts": 1, "successes": int(success), "with_intervention": int(interventions > 0),
        "interventions": interventions, "help_prompts": prompts,
        "false_alarm_prompts": prompts if success and interventions == 0 else 0,
        "duration_s": float(duration), "success_duration_s": float(duration) if success else 0.0,
    }  # fmt: skip


def _now_values(r: Rollout) -> dict:
    return {f: getattr(r, f) for f in FIELDS}


def _old_values(r: Rollout) -> dict:
    """The field values as the database has them (before this flush's changes)."""
    state = inspect(r)
    out = {}
    for f in FIELDS:
        history = state.attrs[f].history
        out[f] = (
            history.deleted[0] if history.deleted else (history.unchanged[0] if history.unchanged else getattr(r, f))
        )
    return out


def _sums() -> dict[tuple, dict]:
    return defaultdict(lambda: dict.fromkeys(MEASURES, 0))


def _add(sums: dict[tuple, dict], values: dict, sign: int = 1) -> None:
    """Add (sign +1) or take away (-1) one rollout's contribution to its group's measures."""
    group, measures = _contribution(values)
    row = sums[group]
    for k, v in measures.items():
        row[k] += sign * v


@event.listens_for(Session, "before_flush")
def _track_rollouts(session: Session, flush_context, instances) -> None:
    deltas = _sums()
    add = lambda values, sign: _add(deltas, values, sign)  # noqa: E731

    for obj in session.new:
        if isinstance(obj, Rollout):
            if obj.started_at is None:
                obj.started_at = datetime.now(UTC)  # the column default, taken now so the day is known
            add(_now_values(obj), +1)
    for obj in session.dirty:
        if isinstance(obj, Rollout) and any(inspect(obj).attrs[f].history.has_changes() for f in FIELDS):
            add(_old_values(obj), -1)
            add(_now_values(obj), +1)
    for obj in session.deleted:
        if isinstance(obj, Rollout):
            add(_old_values(obj), -1)
    if deltas:
        _apply(session, deltas)


def _apply(session: Session, deltas: dict[tuple, dict]) -> None:
    conn = session.connection()
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    for group, measures in deltas.items():
        if not any(measures.values()):
            continue
        stmt = dialect.insert(RolloutDaily).values(**_row(group, measures))
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"], set_={m: getattr(RolloutDaily, m) + stmt.excluded[m] for m in MEASURES}
        )
        conn.execute(stmt)


def rebuild_rollout_daily(session: Session) -> int:
    """Recompute the whole aggregate from the rollouts (after a bulk load); returns the number of groups."""
    session.execute(delete(RolloutDaily))
    sums = _sums()
    q = select(*[getattr(Rollout, f) for f in FIELDS]).execution_options(yield_per=50_000)
    for values in session.execute(q):
        _add(sums, dict(zip(FIELDS, values, strict=True)))
    rows = [_row(group, measures) for group, measures in sums.items()]
    for lo in range(0, len(rows), 10_000):  # the table is empty: plain inserts, many rows per statement
        session.execute(insert(RolloutDaily), rows[lo : lo + 10_000])
    return len(rows)


def _row(group: tuple, measures: dict) -> dict:
    day, *rest = group
    return {"key": json.dumps([day.isoformat(), *rest]), "day": day, **dict(zip(GROUP, rest, strict=True)), **measures}
