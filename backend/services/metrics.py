"""Managers' metrics: every chart's aggregation as one SQL query here, its statistics from vla_core.metrics.

    metrics = MetricsService(store.session_factory)
    rows = metrics.success_over_time(MetricsFilter(task="pick", since=...), bucket="week")

Each method returns plain rows (dicts) in the order of its CHART's columns, which is also its CSV. The GROUP BY runs
in the database (SQLite or PostgreSQL: `_period` and `_seconds` are the only dialect-specific pieces); Python only
adds intervals and ratios to the grouped rows, never scans the raw ones. The rollout charts read rollout_daily,
the rollouts summed per UTC day and group (storage.rollout_daily keeps it exact in every flush), so a million
rollouts cost a few tens of thousands of rows; that is why the filters take whole UTC days. With an operator
filter they read the rollouts instead (_RolloutSource: operators are not in the aggregate's groups).

How things are counted (the tab's legend says the same):
- A rollout's success is its `outcome` (the operator's verdict when given, else the automatic check; an aborted
  rollout is a failure). Rollouts of archived or deleted models stay counted under the name and version they ran.
- Episodes in the trash are left out of the data charts; a purged episode is gone from every count.
- Jobs count in every status, cancelled ones included, each under the week it was created; hours are from start to
  finish (a job still running counts up to now); GPU hours are jobs run with device "cuda".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any, Literal

from sqlalchemy import Date, DateTime, Float, Integer, and_, case, cast, distinct, false, func, select
from sqlalchemy.orm import Session, sessionmaker

from storage.models import (
    AuditEvent,
    Episode,
    EpisodeEvent,
    EpisodeQualityFlag,
    EpisodeSource,
    Job,
    ModelStage,
    RegisteredModel,
    Rollout,
    RolloutDaily,
    RolloutKind,
)
from vla_core.metrics import difference_interval, percentile, wilson_interval

D = RolloutDaily  # the rollout charts read the daily aggregate (storage.rollout_daily keeps it exact)
Bucket = Literal["day", "week", "month"]
BUCKETS = ("day", "week", "month")

# Each chart's columns, in order: its JSON rows' keys and its CSV header.
CHARTS: dict[str, tuple[str, ...]] = {
    "success": ("period", "task", "colour", "model_name", "model_version", "kind", "rollouts", "successes",
                "success_rate", "wilson_low", "wilson_high", "production"),
    "leaderboard": ("suite", "model_name", "model_version", "rollouts", "successes", "success_rate", "wilson_low",
                    "wilson_high", "mean_time_to_success_s", "production", "diff_vs_production", "diff_low",
                    "diff_high", "significant"),
    "interventions": ("period", "model_name", "model_version", "rollouts", "rollouts_with_intervention",
                      "intervention_rate", "interventions", "mean_time_between_interventions_s", "help_prompts",
                      "help_rate", "false_alarms", "false_alarm_share"),
    "demos": ("period", "operator", "episodes", "hours", "labelled", "labelled_share"),
    "labeling": ("period", "user", "events", "active_hours", "events_per_hour"),
    "quality": ("flag", "episodes"),
    "growth": ("period", "episodes", "total"),
    "jobs": ("period", "kind", "status", "jobs", "cpu_hours", "gpu_hours"),
    "time_to_model": ("models", "median_s", "p90_s"),
    "promotions": ("model_name", "model_version", "at", "by"),
}  # fmt: skip


@dataclass(frozen=True)
class MetricsFilter:
    """The filters every chart shares. `source` keeps rows whose source is that value: a rollout's kind ("live",
    "evaluation") or an episode's source ("teleop", "scripted", "intervention", ...), so a rollout kind empties the
    data charts and an episode source the rollout charts; jobs have no source. `operator` is a rollout's operator,
    an episode's operator, an annotator, a job's creator."""

    since: datetime | None = None  # inclusive, UTC
    until: datetime | None = None  # exclusive
    task: str | None = None
    model_name: str | None = None
    operator: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            t = getattr(self, name)
            if t is not None and _utc(t).time() != time(0):
                raise ValueError(f"{name} must be a whole UTC day (a date, or midnight UTC), got {t.isoformat()}")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")


class MetricsService:
    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._sf = session_factory

    # ------------------------------------------------------------------ rollouts
    def success_over_time(self, f: MetricsFilter, bucket: Bucket = "week") -> list[dict]:
        """Per period, task, colour, model version and kind: rollouts, successes and the Wilson 95% interval."""
        with self._sf() as s:
            r = _RolloutSource(f)
            keys = (r.period(s, bucket), r.task, r.colour, r.model_name, r.model_version, r.kind)
            q = select(*keys, r.rollouts, r.successes).where(*r.where).group_by(*keys).order_by(*keys)
            production = _production(s)
            rows = s.execute(q).all()
        out = []
        for p, task, colour, name, version, kind, n, k in rows:
            if not n:
                continue
            low, high = wilson_interval(int(k), int(n))
            out.append(dict(period=p, task=task, colour=colour, model_name=name, model_version=version,
                            kind=str(kind), rollouts=int(n), successes=int(k), success_rate=k / n, wilson_low=low,
                            wilson_high=high, production=(name, version) in production))  # fmt: skip
        return out

    def leaderboard(self, f: MetricsFilter) -> list[dict]:
        """Per evaluation suite and model version: success with interval, mean time to success, and the difference
        to the production model on the same suite (Newcombe interval; significant when it excludes 0)."""
        with self._sf() as s:
            r = _RolloutSource(f)
            keys = (r.suite, r.model_name, r.model_version)
            q = (select(*keys, r.rollouts, r.successes, r.success_duration_s)
                 .where(*r.where, r.suite.is_not(None), r.kind == "evaluation").group_by(*keys))  # fmt: skip
            production = _production(s)
            rows = s.execute(q).all()
        by_suite: dict[str, list[dict]] = {}
        for suite, name, version, n, k, success_s in rows:
            if not n:  # every rollout of the group was deleted
                continue
            low, high = wilson_interval(int(k), int(n))
            mean_s = success_s / k if k else None
            by_suite.setdefault(suite, []).append(dict(
                suite=suite, model_name=name, model_version=version, rollouts=int(n), successes=int(k),
                success_rate=k / n, wilson_low=low, wilson_high=high, mean_time_to_success_s=mean_s,
                production=(name, version) in production, diff_vs_production=None, diff_low=None, diff_high=None,
                significant=None))  # fmt: skip
        out = []
        for suite in sorted(by_suite):
            entries = sorted(
                by_suite[suite], key=lambda r: (-r["success_rate"], r["model_name"] or "", r["model_version"] or 0)
            )
            reference = next((r for r in entries if r["production"]), None)
            for r in entries:
                if reference is not None and r is not reference:
                    d, lo, hi = difference_interval(r["successes"], r["rollouts"], reference["successes"],
                                                    reference["rollouts"])  # fmt: skip
                    r.update(diff_vs_production=d, diff_low=lo, diff_high=hi, significant=lo > 0 or hi < 0)
                out.append(r)
        return out

    def interventions(self, f: MetricsFilter, bucket: Bucket = "week") -> list[dict]:
        """Per period and model version: how often people stepped in, how long the policy ran between takeovers,
        how often it asked for help and how often that was a false alarm (it asked, nobody took over, and the
        rollout succeeded)."""
        with self._sf() as s:
            r = _RolloutSource(f)
            keys = (r.period(s, bucket), r.model_name, r.model_version)
            q = (select(*keys, r.rollouts, r.with_intervention, r.interventions, r.duration_s, r.help_prompts,
                        r.false_alarm_prompts).where(*r.where).group_by(*keys).order_by(*keys))  # fmt: skip
            rows = s.execute(q).all()
        out = []
        for p, name, version, n, with_iv, iv, duration, prompts, false_alarms in rows:
            if not n:
                continue
            iv, prompts, false_alarms = int(iv or 0), int(prompts or 0), int(false_alarms or 0)
            out.append(dict(period=p, model_name=name, model_version=version, rollouts=int(n),
                            rollouts_with_intervention=int(with_iv), intervention_rate=with_iv / n, interventions=iv,
                            mean_time_between_interventions_s=(duration or 0.0) / iv if iv else None,
                            help_prompts=prompts, help_rate=prompts / n, false_alarms=false_alarms,
                            false_alarm_share=false_alarms / prompts if prompts else None))  # fmt: skip
        return out

    def promotions(self, f: MetricsFilter) -> list[dict]:
        """When each model version was promoted to production (from the audit log), oldest first."""
        with self._sf() as s:
            q = (select(AuditEvent.at, AuditEvent.actor, AuditEvent.object_id, RegisteredModel.name,
                        RegisteredModel.version)
                 .join(RegisteredModel, RegisteredModel.id == cast(AuditEvent.object_id, Integer))
                 .where(AuditEvent.action == "model.promote", *_time_where(AuditEvent.at, f))
                 .order_by(AuditEvent.at))  # fmt: skip
            if f.model_name is not None:
                q = q.where(RegisteredModel.name == f.model_name)
            rows = s.execute(q).all()
        return [
            dict(model_name=name, model_version=version, at=_iso(at), by=actor) for at, actor, _, name, version in rows
        ]

    # ------------------------------------------------------------------ data production
    def demos(self, f: MetricsFilter, bucket: Bucket = "day") -> list[dict]:
        """Per period and operator: episodes recorded, hours of them, and how many carry a human verdict."""
        with self._sf() as s:
            period = _period(s, Episode.created_at, bucket)
            hours = func.sum(cast(Episode.length, Float) / Episode.fps) / 3600.0
            q = (
                select(period, Episode.operator, func.count(), hours, _sum(Episode.human_success.is_not(None)))
                .where(*_episode_where(f))
                .group_by(period, Episode.operator)
                .order_by(period, Episode.operator)
            )
            rows = s.execute(q).all()
        return [dict(period=p, operator=op, episodes=int(n), hours=float(h or 0.0), labelled=int(k),
                     labelled_share=k / n) for p, op, n, h, k in rows]  # fmt: skip

    def labeling(self, f: MetricsFilter, bucket: Bucket = "day") -> list[dict]:
        """Per period and annotator: annotation events, the hours in which they made any, and events per such
        hour (throughput while labelling)."""
        with self._sf() as s:
            period = _period(s, EpisodeEvent.at, bucket)
            hour = _period(s, EpisodeEvent.at, "hour")
            q = (select(period, EpisodeEvent.user, func.count(), func.count(distinct(hour)))
                 .join(Episode, Episode.id == EpisodeEvent.episode_id)
                 .where(*_time_where(EpisodeEvent.at, f), *_episode_where(f, time=False, operator=False))
                 .group_by(period, EpisodeEvent.user).order_by(period, EpisodeEvent.user))  # fmt: skip
            if f.operator is not None:
                q = q.where(EpisodeEvent.user == f.operator)
            rows = s.execute(q).all()
        return [dict(period=p, user=u, events=int(n), active_hours=int(h), events_per_hour=n / h if h else None)
                for p, u, n, h in rows]  # fmt: skip

    def quality(self, f: MetricsFilter) -> list[dict]:
        """Quality flags raised on the episodes in the filter, per flag."""
        with self._sf() as s:
            q = (select(EpisodeQualityFlag.flag, func.count())
                 .join(Episode, Episode.id == EpisodeQualityFlag.episode_id).where(*_episode_where(f))
                 .group_by(EpisodeQualityFlag.flag).order_by(EpisodeQualityFlag.flag))  # fmt: skip
            rows = s.execute(q).all()
        return [dict(flag=str(flag), episodes=int(n)) for flag, n in rows]

    def growth(self, f: MetricsFilter, bucket: Bucket = "day") -> list[dict]:
        """Episodes added per period and the running total (counting the ones before `since`)."""
        with self._sf() as s:
            period = _period(s, Episode.created_at, bucket)
            q = select(period, func.count()).where(*_episode_where(f)).group_by(period).order_by(period)
            rows = s.execute(q).all()
            before = 0
            if f.since is not None:
                earlier = MetricsFilter(until=f.since, task=f.task, operator=f.operator, source=f.source)
                before = s.scalar(select(func.count()).select_from(Episode).where(*_episode_where(earlier))) or 0
        out, total = [], int(before)
        for p, n in rows:
            total += int(n)
            out.append(dict(period=p, episodes=int(n), total=total))
        return out

    # ------------------------------------------------------------------ training
    def jobs(self, f: MetricsFilter, bucket: Bucket = "week", now: datetime | None = None) -> list[dict]:
        """Per period (of creation), kind and status: jobs, and the CPU and GPU hours they ran."""
        now = now or datetime.now(UTC)
        with self._sf() as s:
            period = _period(s, Job.created_at, bucket)
            seconds = _seconds(s, Job.started_at, func.coalesce(Job.finished_at, now))
            gpu = Job.config["device"].as_string() == "cuda"
            q = (select(period, Job.kind, Job.status, func.count(),
                        func.sum(case((and_(Job.started_at.is_not(None), ~gpu), seconds), else_=0.0)),
                        func.sum(case((and_(Job.started_at.is_not(None), gpu), seconds), else_=0.0)))
                 .where(*_time_where(Job.created_at, f)).group_by(period, Job.kind, Job.status)
                 .order_by(period, Job.kind, Job.status))  # fmt: skip
            if f.operator is not None:
                q = q.where(Job.created_by == f.operator)
            rows = s.execute(q).all()
        return [dict(period=p, kind=kind, status=str(status), jobs=int(n), cpu_hours=float(cpu or 0) / 3600,
                     gpu_hours=float(g or 0) / 3600) for p, kind, status, n, cpu, g in rows]  # fmt: skip

    def time_to_model(self, f: MetricsFilter) -> list[dict]:
        """Time from launching a job to its registered model: count, median and 90th percentile (seconds)."""
        with self._sf() as s:
            q = (select(_seconds(s, Job.created_at, RegisteredModel.created_at))
                 .join(Job, Job.id == RegisteredModel.job_id).where(*_time_where(Job.created_at, f)))  # fmt: skip
            if f.model_name is not None:
                q = q.where(RegisteredModel.name == f.model_name)
            if f.operator is not None:
                q = q.where(Job.created_by == f.operator)
            seconds = [float(x) for x in s.scalars(q).all() if x is not None]
        if not seconds:
            return [dict(models=0, median_s=None, p90_s=None)]
        return [dict(models=len(seconds), median_s=percentile(seconds, 50), p90_s=percentile(seconds, 90))]

    def chart(self, name: str, f: MetricsFilter, bucket: Bucket | None = None) -> list[dict]:
        """Any chart by its name in CHARTS (the API and the report use this); `bucket` where the chart has periods."""
        if name not in CHARTS:
            raise ValueError(f"unknown chart {name!r}; charts: {', '.join(CHARTS)}")
        if bucket is not None and bucket not in BUCKETS:
            raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}, got {bucket!r}")
        method = getattr(self, "success_over_time" if name == "success" else name)
        periodic = "period" in CHARTS[name]
        return method(f, bucket) if periodic and bucket is not None else method(f)


# ---------------------------------------------------------------------------------------------------- SQL pieces
def _leader_order(row: dict) -> tuple:
    return -row["success_rate"], row["model_name"] or "", row["model_version"] or 0


def _sum(condition):
    """How many rows meet `condition` (portable: no FILTER clause, no boolean sum)."""
    return func.sum(case((condition, 1), else_=0))


def _period(s: Session, column, bucket: str):
    """The start of the bucket `column` (a UTC timestamp, or a date) falls in, as ISO text: "2026-12-01" (day,
    week from Monday, month) or "2026-12-01 14:00" (hour)."""
    if s.get_bind().dialect.name == "postgresql":
        fmt = "YYYY-MM-DD HH24:00" if bucket == "hour" else "YYYY-MM-DD"
        # timestamptz: truncate the UTC wall time, not the session time zone's; a date: as it is
        wall = cast(column, DateTime) if column.type.__class__ is Date else func.timezone("UTC", column)
        return func.to_char(func.date_trunc(bucket, wall), fmt)
    if bucket == "hour":
        return func.strftime("%Y-%m-%d %H:00", column)
    if bucket == "week":
        return func.date(column, "weekday 0", "-6 days")  # the Sunday on or after, less six days: that Monday
    if bucket == "month":
        return func.strftime("%Y-%m-01", column)
    return func.date(column)


def _seconds(s: Session, start, end):
    if s.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _time_where(column, f: MetricsFilter) -> list:
    where = []
    if f.since is not None:
        where.append(column >= _utc(f.since))
    if f.until is not None:
        where.append(column < _utc(f.until))
    return where


class _RolloutSource:
    """The rollout charts' columns and measures, from the daily aggregate (storage.models.RolloutDaily) or, with an
    operator filter (operators are not part of its groups: with them it would hold a row per rollout or two), from
    the rollouts themselves. Group columns are attributes (`task`, `kind`, ...), measures are aggregate
    expressions (`rollouts`, `successes`, ...), `where` the filter; both sources give the same numbers."""

    GROUP = ("task", "colour", "model_name", "model_version", "kind", "suite")

    def __init__(self, f: MetricsFilter) -> None:
        self.daily = f.operator is None
        t = D if self.daily else Rollout
        for name in self.GROUP:
            setattr(self, name, getattr(t, name))
        if self.daily:
            for m in ("rollouts", "successes", "with_intervention", "interventions", "help_prompts",
                      "false_alarm_prompts", "duration_s", "success_duration_s"):  # fmt: skip
                setattr(self, m, func.sum(getattr(D, m)))
            self._time, lower, upper = D.day, _day(f.since), _day(f.until)
        else:
            success = Rollout.outcome == "success"
            unaided = and_(success, Rollout.interventions == 0)
            self.rollouts, self.successes = func.count(), _sum(success)
            self.with_intervention, self.interventions = (
                _sum(Rollout.interventions > 0),
                func.sum(Rollout.interventions),
            )
            self.help_prompts = func.sum(Rollout.help_prompts)
            self.false_alarm_prompts = func.sum(case((unaided, Rollout.help_prompts), else_=0))
            self.duration_s = func.sum(Rollout.duration_s)
            self.success_duration_s = func.sum(case((success, Rollout.duration_s), else_=0.0))
            self._time, lower, upper = Rollout.started_at, _utc_or_none(f.since), _utc_or_none(f.until)
        where = [] if lower is None else [self._time >= lower]
        where += [] if upper is None else [self._time < upper]
        for column, value in ((self.task, f.task), (self.model_name, f.model_name)):
            if value is not None:
                where.append(column == value)
        if f.operator is not None:
            where.append(Rollout.operator == f.operator)
        if f.source is not None:
            where.append(self.kind == f.source if f.source in RolloutKind._value2member_map_ else false())
        self.where = where

    def period(self, s: Session, bucket: str):
        return _period(s, self._time, bucket)


def _day(t: datetime | None):
    return None if t is None else _utc(t).date()


def _utc_or_none(t: datetime | None):
    return None if t is None else _utc(t)


def _episode_where(f: MetricsFilter, *, time: bool = True, operator: bool = True) -> list:
    where = [Episode.deleted_at.is_(None)]  # the trash is not production
    if time:
        where += _time_where(Episode.created_at, f)
    if f.task is not None:
        where.append(Episode.task == f.task)
    if operator and f.operator is not None:
        where.append(Episode.operator == f.operator)
    if f.source is not None:
        where.append(Episode.source == f.source if f.source in EpisodeSource._value2member_map_ else false())
    return where


def _production(s: Session) -> set[tuple[str, int]]:
    q = select(RegisteredModel.name, RegisteredModel.version).where(RegisteredModel.stage == ModelStage.PRODUCTION)
    return {(name, version) for name, version in s.execute(q).all()}


def _utc(t: datetime) -> datetime:
    """Aware UTC, as storage.models.UTCDateTime binds it (a naive time is taken as UTC)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _iso(t: Any) -> str | None:
    return t.isoformat() if isinstance(t, datetime) else t
