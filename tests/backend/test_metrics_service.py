"""backend.services.metrics: every chart's numbers equal a plain-Python reference computed over the same generated
rows (rollouts, episodes, annotation events, quality flags, jobs, models, promotions), with and without filters."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from helpers import load_postgres_fixtures, open_store, postgres_available

from backend.services.metrics import CHARTS, MetricsFilter, MetricsService
from storage.models import (
    AuditEvent,
    Dataset,
    Episode,
    EpisodeEvent,
    EpisodeQualityFlag,
    Job,
    ModelStage,
    RegisteredModel,
    Rollout,
)
from vla_core.metrics import difference_interval, wilson_interval

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday, 08:00: the generated rows start here
DAY0 = datetime(2026, 11, 2, tzinfo=UTC)  # filters take whole UTC days
DAYS = 21


def monday(t: datetime) -> str:
    return (t.date() - timedelta(days=t.weekday())).isoformat()


_pg = load_postgres_fixtures("_pg_fixtures_metrics_service")
pg_server, pg_url = _pg.pg_server, _pg.pg_url  # fixtures, found by pytest under these names


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_store(request, tmp_path):
    """Every chart on both engines: `_period` and `_seconds` are the dialect-specific SQL."""
    if request.param == "sqlite":
        return open_store(tmp_path / "data", recover=False)
    if not postgres_available():
        pytest.skip("PostgreSQL server binaries or the psycopg driver are not installed")
    return open_store(tmp_path / "data", request.getfixturevalue("pg_url"), recover=False)


@pytest.fixture
def world(db_store):
    """Rows generated with a seeded RNG, kept as plain dicts too for the reference."""
    store = db_store
    rng = np.random.default_rng(7)
    w = defaultdict(list)
    with store.session_factory.begin() as s:
        ds = Dataset(name="d")
        s.add(ds)
        models = [
            RegisteredModel(name="pick", version=1, policy_type="vla_tiny", path="m/1", stage=ModelStage.ARCHIVED),
            RegisteredModel(name="pick", version=2, policy_type="vla_tiny", path="m/2", stage=ModelStage.PRODUCTION),
            RegisteredModel(name="place", version=1, policy_type="vla_tiny", path="m/3"),
        ]
        s.add_all(models)
        s.flush()
        s.add(
            AuditEvent(
                at=T0 + timedelta(days=8),
                actor="erin",
                action="model.promote",
                object_type="model",
                object_id=str(models[1].id),
            )
        )
        for i in range(400):
            m = models[int(rng.integers(3))]
            r = dict(
                kind=["live", "evaluation"][int(rng.integers(2))],
                model_id=m.id,
                model_name=m.name,
                model_version=m.version,
                task=m.name,
                colour=["red", "green", "blue"][int(rng.integers(3))],
                operator=["olga", "erin", None][int(rng.integers(3))],
                started_at=T0 + timedelta(minutes=int(rng.integers(DAYS * 24 * 60))),
                duration_s=float(rng.uniform(2, 9)),
                outcome=["success", "failure", "aborted"][int(rng.choice(3, p=[0.55, 0.35, 0.10]))],
                interventions=int(rng.choice(3, p=[0.7, 0.2, 0.1])),
                help_prompts=int(rng.choice(3, p=[0.6, 0.3, 0.1])),
            )
            r["suite"] = ("heldout" if i % 3 else "paraphrase") if r["kind"] == "evaluation" else None
            s.add(Rollout(**r))
            w["rollouts"].append(r)
        for _ in range(150):
            e = dict(
                task=["pick", "place"][int(rng.integers(2))],
                operator=["olga", "omar"][int(rng.integers(2))],
                source=["teleop", "scripted", "intervention"][int(rng.integers(3))],
                fps=30,
                length=int(rng.integers(30, 400)),
                created_at=T0 + timedelta(minutes=int(rng.integers(DAYS * 1440))),
                human_success=[None, True, False][int(rng.integers(3))],
                deleted_at=T0 + timedelta(days=30) if rng.random() < 0.1 else None,
            )
            uid = uuid.uuid4().hex
            row = Episode(uid=uid, dataset_id=ds.id, instruction="x", path=f"episodes/{uid}", **e)
            s.add(row)
            s.flush()
            e["id"] = row.id
            w["episodes"].append(e)
            for _ in range(int(rng.integers(0, 4))):
                ev = dict(
                    episode_id=row.id,
                    version=1,
                    user=["lena", "olga"][int(rng.integers(2))],
                    at=e["created_at"] + timedelta(minutes=int(rng.integers(1, 600))),
                    action="edit",
                    changes={},
                )
                s.add(EpisodeEvent(**ev))
                w["events"].append(ev | {"episode": e})
            if rng.random() < 0.3:
                flag = ["idle", "too_short"][int(rng.integers(2))]
                s.add(EpisodeQualityFlag(episode_id=row.id, flag=flag))
                w["flags"].append((flag, e))
        for i in range(30):
            created = T0 + timedelta(hours=int(rng.integers(DAYS * 24)))
            started = created + timedelta(seconds=int(rng.integers(1, 60))) if i % 7 else None
            finished = started + timedelta(seconds=int(rng.integers(60, 3600))) if started else None
            j = dict(
                kind=["train", "evaluate"][i % 2],
                status=["succeeded", "failed", "cancelled"][i % 3],
                created_by=["erin", "ed"][i % 2],
                created_at=created,
                started_at=started,
                finished_at=finished,
                config={"device": "cuda" if i % 5 == 0 else "cpu"},
            )
            job = Job(**j)
            s.add(job)
            s.flush()
            w["jobs"].append(j)
            if finished is not None and j["kind"] == "train" and j["status"] == "succeeded":
                s.add(
                    RegisteredModel(
                        name="pick",
                        version=10 + i,
                        policy_type="vla_tiny",
                        path=f"m/j{i}",
                        job_id=job.id,
                        created_at=finished + timedelta(seconds=5),
                    )
                )
                w["job_models"].append((finished + timedelta(seconds=5) - created).total_seconds())
    return MetricsService(store.session_factory), w


def success(r):
    return r["outcome"] == "success"


@pytest.mark.parametrize(
    "f",
    [
        MetricsFilter(),
        MetricsFilter(task="pick"),
        MetricsFilter(source="live"),
        MetricsFilter(since=DAY0 + timedelta(days=7), until=DAY0 + timedelta(days=14), operator="olga"),
    ],
    ids=["all", "task", "source", "week-operator"],
)
def test_success_over_time_matches_the_reference(world, f):
    metrics, w = world
    groups = defaultdict(list)
    for r in w["rollouts"]:
        if _keep_rollout(r, f):
            key = (monday(r["started_at"]), r["task"], r["colour"], r["model_name"], r["model_version"], r["kind"])
            groups[key].append(success(r))
    rows = metrics.success_over_time(f, "week")
    got = {(x["period"], x["task"], x["colour"], x["model_name"], x["model_version"], x["kind"]): x for x in rows}
    assert set(got) == set(groups)
    for key, outcomes in groups.items():
        x = got[key]
        assert (x["rollouts"], x["successes"]) == (len(outcomes), sum(outcomes))
        assert (x["wilson_low"], x["wilson_high"]) == pytest.approx(wilson_interval(sum(outcomes), len(outcomes)))
        assert x["production"] == ((x["model_name"], x["model_version"]) == ("pick", 2))
    assert list(rows[0]) == list(CHARTS["success"])


def test_the_leaderboard_compares_each_model_with_production_on_the_same_suite(world):
    metrics, w = world
    rows = metrics.leaderboard(MetricsFilter())
    for x in rows:
        mine = [
            r
            for r in w["rollouts"]
            if r["suite"] == x["suite"]
            and (r["model_name"], r["model_version"]) == (x["model_name"], x["model_version"])
        ]
        wins = [r for r in mine if success(r)]
        assert (x["rollouts"], x["successes"]) == (len(mine), len(wins))
        assert x["mean_time_to_success_s"] == pytest.approx(np.mean([r["duration_s"] for r in wins]))
        prod = [
            r
            for r in w["rollouts"]
            if r["suite"] == x["suite"] and r["model_name"] == "pick" and r["model_version"] == 2
        ]
        if x["production"]:
            assert x["diff_vs_production"] is None
        else:
            d, lo, hi = difference_interval(len(wins), len(mine), sum(map(success, prod)), len(prod))
            assert (x["diff_vs_production"], x["diff_low"], x["diff_high"]) == pytest.approx((d, lo, hi))
            assert x["significant"] == (lo > 0 or hi < 0)
    assert {x["suite"] for x in rows} == {"heldout", "paraphrase"}
    rates = [x["success_rate"] for x in rows if x["suite"] == "heldout"]
    assert rates == sorted(rates, reverse=True)


def test_interventions_match_the_reference(world):
    metrics, w = world
    f = MetricsFilter(task="pick")
    groups = defaultdict(list)
    for r in w["rollouts"]:
        if _keep_rollout(r, f):
            groups[(monday(r["started_at"]), r["model_name"], r["model_version"])].append(r)
    rows = metrics.interventions(f, "week")
    assert len(rows) == len(groups)
    for x in rows:
        rs = groups[(x["period"], x["model_name"], x["model_version"])]
        iv = sum(r["interventions"] for r in rs)
        prompts = sum(r["help_prompts"] for r in rs)
        false_alarms = sum(r["help_prompts"] for r in rs if r["help_prompts"] and not r["interventions"] and success(r))
        assert x["rollouts_with_intervention"] == sum(r["interventions"] > 0 for r in rs)
        assert x["interventions"] == iv and x["help_prompts"] == prompts and x["false_alarms"] == false_alarms
        if iv:
            want = sum(r["duration_s"] for r in rs) / iv
            assert x["mean_time_between_interventions_s"] == pytest.approx(want)


def test_data_production_leaves_the_trash_out(world):
    metrics, w = world
    f = MetricsFilter(source="teleop")
    live = [e for e in w["episodes"] if e["deleted_at"] is None and e["source"] == "teleop"]
    demos = metrics.demos(f, "day")
    per = Counter((e["created_at"].date().isoformat(), e["operator"]) for e in live)
    assert {(x["period"], x["operator"]): x["episodes"] for x in demos} == dict(per)
    assert sum(x["hours"] for x in demos) == pytest.approx(sum(e["length"] / 30 for e in live) / 3600)
    assert sum(x["labelled"] for x in demos) == sum(e["human_success"] is not None for e in live)
    growth = metrics.growth(f, "day")
    assert growth[-1]["total"] == len(live)
    flags = Counter(flag for flag, e in w["flags"] if e["deleted_at"] is None and e["source"] == "teleop")
    assert {x["flag"]: x["episodes"] for x in metrics.quality(f)} == dict(flags)
    events = [ev for ev in w["events"] if ev["episode"]["deleted_at"] is None and ev["episode"]["source"] == "teleop"]
    labeling = metrics.labeling(f, "day")
    assert sum(x["events"] for x in labeling) == len(events)
    by_user_day = defaultdict(set)
    for ev in events:
        by_user_day[(ev["at"].date().isoformat(), ev["user"])].add(ev["at"].strftime("%Y-%m-%d %H"))
    assert {(x["period"], x["user"]): x["active_hours"] for x in labeling} == {
        k: len(v) for k, v in by_user_day.items()
    }
    assert metrics.demos(MetricsFilter(source="live"), "day") == []  # a rollout kind: no episode has it


def test_growth_counts_the_episodes_before_the_window(world):
    metrics, w = world
    since = DAY0 + timedelta(days=10)
    rows = metrics.growth(MetricsFilter(since=since), "week")
    assert rows[-1]["total"] == sum(e["deleted_at"] is None for e in w["episodes"])
    assert rows[0]["total"] - rows[0]["episodes"] == sum(
        e["deleted_at"] is None and e["created_at"] < since for e in w["episodes"]
    )


def test_training_jobs_hours_and_time_to_model(world):
    metrics, w = world
    now = T0 + timedelta(days=40)
    rows = metrics.jobs(MetricsFilter(), "week", now=now)
    assert sum(x["jobs"] for x in rows) == len(w["jobs"])  # cancelled and failed ones too
    cpu = sum(
        (j["finished_at"] - j["started_at"]).total_seconds()
        for j in w["jobs"]
        if j["started_at"] and j["config"]["device"] == "cpu"
    )
    gpu = sum(
        (j["finished_at"] - j["started_at"]).total_seconds()
        for j in w["jobs"]
        if j["started_at"] and j["config"]["device"] == "cuda"
    )
    assert sum(x["cpu_hours"] for x in rows) == pytest.approx(cpu / 3600)
    assert sum(x["gpu_hours"] for x in rows) == pytest.approx(gpu / 3600)
    (ttm,) = metrics.time_to_model(MetricsFilter())
    assert ttm["models"] == len(w["job_models"])
    assert ttm["median_s"] == pytest.approx(float(np.percentile(w["job_models"], 50)))
    (promo,) = metrics.promotions(MetricsFilter())
    assert (promo["model_name"], promo["model_version"], promo["by"]) == ("pick", 2, "erin")


def test_every_chart_answers_by_name_and_bad_filters_are_refused(world):
    metrics, _ = world
    for name in CHARTS:
        rows = metrics.chart(name, MetricsFilter(), "month")
        assert all(list(r) == list(CHARTS[name]) for r in rows)
    with pytest.raises(ValueError, match="unknown chart"):
        metrics.chart("revenue", MetricsFilter())
    with pytest.raises(ValueError, match="bucket"):
        metrics.chart("success", MetricsFilter(), "year")
    with pytest.raises(ValueError, match="before"):
        MetricsFilter(since=DAY0, until=DAY0)
    with pytest.raises(ValueError, match="whole UTC day"):
        MetricsFilter(since=T0)  # 08:00: the rollout charts count whole days


def _keep_rollout(r, f: MetricsFilter) -> bool:
    return (
        (f.since is None or r["started_at"] >= f.since)
        and (f.until is None or r["started_at"] < f.until)
        and (f.task is None or r["task"] == f.task)
        and (f.operator is None or r["operator"] == f.operator)
        and (f.source is None or r["kind"] == f.source)
        and (f.model_name is None or r["model_name"] == f.model_name)
    )


def test_the_daily_aggregate_follows_verdicts_and_deletes_and_a_rebuild_agrees(world, db_store):
    """storage.rollout_daily: a verdict given later moves the success chart as it moves the rollout's outcome; a
    deleted rollout leaves every count; rebuilding from the rollouts gives the same aggregate as the listener."""
    from sqlalchemy import select

    from backend.services.rollout_log import RolloutLog
    from storage.models import RolloutDaily
    from storage.rollout_daily import MEASURES, rebuild_rollout_daily

    metrics, w = world
    total = lambda: sum(x["successes"] for x in metrics.success_over_time(MetricsFilter(), "month"))  # noqa: E731
    before = total()
    with db_store.session_factory() as s:
        failed = s.scalars(select(Rollout).where(Rollout.outcome == "failure").limit(1)).one()
    RolloutLog(db_store.session_factory).set_verdict(failed.id, human_success=True)
    assert total() == before + 1
    with db_store.session_factory.begin() as s:
        s.delete(s.get(Rollout, failed.id))
    assert total() == before
    rows = sum(x["rollouts"] for x in metrics.success_over_time(MetricsFilter(), "month"))
    assert rows == len(w["rollouts"]) - 1

    def snapshot():
        with db_store.session_factory() as s:
            got = {r.key: tuple(getattr(r, m) for m in MEASURES) for r in s.scalars(select(RolloutDaily))}
        return {k: v for k, v in got.items() if any(v)}

    incremental = snapshot()
    with db_store.session_factory.begin() as s:
        rebuild_rollout_daily(s)
    rebuilt = snapshot()
    assert rebuilt.keys() == incremental.keys()
    for key, values in rebuilt.items():
        assert values == pytest.approx(incremental[key])
