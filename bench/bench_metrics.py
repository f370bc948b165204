"""Metrics at scale: every chart's query on 1,000,000 rollouts, 100,000 episodes and 1,000,000 audit rows.

    .venv/bin/python -m bench.bench_metrics [--rollouts 1000000] [--episodes 100000] [--audit 1000000] [--runs 20]
        [--browser 5] [--postgres auto|URL]

Generates a year of rows (seeded) into a fresh SQLite file through the product's migrations (bulk inserts, then one
`rebuild_rollout_daily`, the aggregate the rollout charts read), then times each chart of backend.services.metrics
(`MetricsService.chart`, what GET /api/metrics runs) `--runs` times with the Metrics tab's default filters (the
last 90 days, weekly periods) and a few times over all time, and every chart together (GET /api/metrics, what the
tab waits for). Reports median and p95 per chart. Then (`--browser N`) the real server on that database and headless
Chromium open the Metrics tab N times: request to last chart drawn. `--postgres` does the same queries on
PostgreSQL ('auto': a throwaway local server). Goals: every chart at most 200 ms p95 on SQLite, the tab drawn in at
most 1.5 s. Writes bench/results/metrics.json with the machine it ran on.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import insert

from backend.services.metrics import CHARTS, MetricsFilter, MetricsService
from bench.machine import write_result
from storage.db import make_engine, make_session_factory, upgrade_database
from storage.models import AuditEvent, Dataset, Episode, Job, ModelStage, RegisteredModel, Rollout
from storage.rollout_daily import rebuild_rollout_daily
from vla_core.metrics import NEAREST_RANK, percentile

END = datetime(2026, 12, 1, tzinfo=UTC)
YEAR_S = 365 * 86400
CHUNK = 50_000
DEFAULT_DAYS = 90  # the tab's default range (static/metrics/main.js)


def generate(sf, n_rollouts: int, n_episodes: int, n_audit: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    with sf.begin() as s:
        s.add(Dataset(name="bench"))
        models = [
            RegisteredModel(
                name=name,
                version=v,
                policy_type="vla_tiny",
                path=f"m/{name}/{v}",
                stage=ModelStage.PRODUCTION if v == 3 else ModelStage.CANDIDATE,
            )
            for name in ("pick", "place")
            for v in range(1, 6)
        ]
        s.add_all(models)
        s.flush()
        model_rows = [(m.id, m.name, m.version) for m in models]
        dataset_id = s.query(Dataset.id).scalar()
        for i in range(200):
            start = END - timedelta(seconds=int(rng.integers(YEAR_S)))
            s.add(
                Job(
                    kind="train",
                    status=["succeeded", "failed", "cancelled"][i % 3],
                    created_by="erin",
                    created_at=start,
                    started_at=start + timedelta(seconds=5),
                    finished_at=start + timedelta(seconds=int(rng.integers(60, 7200))),
                    config={"device": "cpu"},
                )
            )
    kinds, colours, outcomes = (
        np.array(["live", "evaluation"]),
        np.array(["red", "green", "blue"]),
        np.array(["success", "failure", "aborted"]),
    )
    operators = np.array([f"op{i}" for i in range(20)])
    for lo in range(0, n_rollouts, CHUNK):
        n = min(CHUNK, n_rollouts - lo)
        m = rng.integers(len(model_rows), size=n)
        kind = kinds[rng.integers(2, size=n)]
        started = [END - timedelta(seconds=int(x)) for x in rng.integers(YEAR_S, size=n)]
        rows = [
            dict(
                kind=str(kind[j]),
                model_id=model_rows[m[j]][0],
                model_name=model_rows[m[j]][1],
                model_version=model_rows[m[j]][2],
                task=model_rows[m[j]][1],
                colour=str(colours[j % 3]),
                suite="heldout" if kind[j] == "evaluation" else None,
                operator=str(operators[j % 20]),
                started_at=started[j],
                duration_s=float(3 + j % 7),
                steps=100,
                outcome=str(outcomes[rng.choice(3, p=[0.6, 0.3, 0.1])]),
                interventions=int(j % 5 == 0),
                help_prompts=int(j % 4 == 0),
                instruction="",
                extra={},
            )
            for j in range(n)
        ]
        with sf.begin() as s:
            s.execute(insert(Rollout), rows)
    t_rebuild = time.perf_counter()
    with sf.begin() as s:  # a bulk insert bypasses the ORM listener: sum the aggregate once, as the migration does
        groups = rebuild_rollout_daily(s)
    rebuild_s = time.perf_counter() - t_rebuild
    sources = np.array(["teleop", "scripted", "intervention"])
    for lo in range(0, n_episodes, CHUNK):
        n = min(CHUNK, n_episodes - lo)
        rows = [
            dict(
                uid=f"{lo + j:032x}",
                dataset_id=dataset_id,
                task=["pick", "place"][j % 2],
                instruction="x",
                source=str(sources[j % 3]),
                operator=str(operators[j % 20]),
                fps=30,
                length=int(50 + j % 300),
                created_at=END - timedelta(seconds=int(rng.integers(YEAR_S))),
                path=f"episodes/{lo + j}",
                checksums={},
                cameras=[],
                state_names=[],
                action_names=[],
                extra={},
                paraphrases=[],
                segments=[],
                human_success=[None, True, False][j % 3],
                version=1,
                notes="",
            )
            for j in range(n)
        ]
        with sf.begin() as s:
            s.execute(insert(Episode), rows)
    for lo in range(0, n_audit, CHUNK):
        n = min(CHUNK, n_audit - lo)
        rows = [
            dict(
                at=END - timedelta(seconds=int(x)),
                actor="erin",
                action="episode.edit",
                object_type="episode",
                object_id=str(x % 1000),
                address="cli",
                detail={},
            )
            for x in rng.integers(YEAR_S, size=n)
        ]
        with sf.begin() as s:
            s.execute(insert(AuditEvent), rows)
    return {
        "rollouts": n_rollouts,
        "episodes": n_episodes,
        "audit_rows": n_audit,
        "rollout_daily_groups": groups,
        "rebuild_rollout_daily_s": round(rebuild_s, 1),
        "generate_s": round(time.perf_counter() - t0, 1),
    }


def time_charts(metrics: MetricsService, f: MetricsFilter, runs: int) -> dict:
    out = {}
    for name in CHARTS:
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            metrics.chart(name, f, "week")
            times.append((time.perf_counter() - t) * 1000)
        out[name] = {
            "median_ms": round(float(np.median(times)), 1),
            "p95_ms": round(percentile(times, 95, method=NEAREST_RANK), 1),
        }
    whole = []
    for _ in range(max(3, runs // 4)):
        t = time.perf_counter()
        for name in CHARTS:
            metrics.chart(name, f, "week")
        whole.append((time.perf_counter() - t) * 1000)
    out["all charts (GET /api/metrics)"] = {
        "median_ms": round(float(np.median(whole)), 1),
        "p95_ms": round(percentile(whole, 95, method=NEAREST_RANK), 1),
    }
    return out


def time_tab_in_browser(data_dir: Path, runs: int) -> dict:
    """The real server on the generated database and headless Chromium: the Metrics tab clicked `runs` times in a
    fresh browser context each, from the request to the last chart drawn, as the tab measures it
    (window.vlaMetrics.drawMs). "cold": clicked as soon as the page is up, so plotly.js may still be loading;
    "warm": clicked once the page has sat idle long enough to have parsed it (what a manager who signs in and
    then reads the tab sees)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
    from serve import chromium, run_server, signed_in_page

    out = {}
    with run_server(data_dir, image_size=96) as server, chromium() as browser:
        for case, idle_s in (("cold", 0.0), ("warm", 4.0)):
            times, parts = [], []
            for _ in range(runs):
                page = signed_in_page(browser, server.url, "admin")
                time.sleep(idle_s)
                page.get_by_role("tab", name="Metrics").click()
                page.wait_for_function("window.vlaMetrics && window.vlaMetrics.drawMs != null", timeout=120_000)
                times.append(page.evaluate("window.vlaMetrics.drawMs"))
                parts.append(page.evaluate("[window.vlaMetrics.fetchMs, window.vlaMetrics.plotlyMs]"))
                page.context.close()
            out[case] = {"runs": runs, "median_ms": float(np.median(times)), "max_ms": float(max(times)),
                         "times_ms": times, "request_ms_and_plotly_ready_ms": parts}  # fmt: skip
    return out


def run_on(url: str, args) -> dict:
    engine = make_engine(url)
    upgrade_database(engine)
    sf = make_session_factory(engine)
    sizes = generate(sf, args.rollouts, args.episodes, args.audit)
    print(f"{url.split(':')[0]}: generated {sizes}", flush=True)
    metrics = MetricsService(sf)
    default = MetricsFilter(since=END - timedelta(days=DEFAULT_DAYS), until=END)
    result = {
        "sizes": sizes,
        "default_filters (last 90 days)": time_charts(metrics, default, args.runs),
        "all time": time_charts(metrics, MetricsFilter(), max(3, args.runs // 4)),
    }
    print(result, flush=True)
    engine.dispose()
    return result


@contextlib.contextmanager
def throwaway_postgres():
    """The test suite's throwaway PostgreSQL server (initdb in /tmp, fsync off) with an empty database "bench"."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from helpers import load_postgres_fixtures
    from sqlalchemy import text

    module = load_postgres_fixtures("_pg_bench_metrics")
    server_cm = contextlib.contextmanager(module.pg_server._get_wrapped_function())  # the fixture's body
    with server_cm() as server:
        admin = make_engine(server.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text('CREATE DATABASE "bench"'))
        admin.dispose()
        yield server.url_for("bench").render_as_string(hide_password=False)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rollouts", type=int, default=1_000_000)
    p.add_argument("--episodes", type=int, default=100_000)
    p.add_argument("--audit", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument(
        "--browser", type=int, default=5, help="times to open the tab in Chromium on the SQLite data (0: skip)"
    )
    p.add_argument(
        "--postgres",
        help="a PostgreSQL URL to run the same on (an empty database), or 'auto': a "
        "throwaway local server, as the tests start one (tests/storage/test_postgres.py)",
    )
    args = p.parse_args(argv)
    result = {"config": vars(args), "goal": {"chart_p95_ms_sqlite": 200, "tab_drawn_ms": 1500}, "databases": {}}
    with tempfile.TemporaryDirectory(prefix="bench_metrics_") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        result["databases"]["sqlite"] = run_on(f"sqlite:///{data_dir / 'vla.db'}", args)
        if args.browser:
            result["databases"]["sqlite"]["metrics_tab_in_chromium"] = time_tab_in_browser(data_dir, args.browser)
            print(result["databases"]["sqlite"]["metrics_tab_in_chromium"], flush=True)
    if args.postgres == "auto":
        with throwaway_postgres() as url:
            result["databases"]["postgresql"] = run_on(url, args)
    elif args.postgres:
        result["databases"]["postgresql"] = run_on(args.postgres, args)
    print(f"wrote {write_result('metrics', result)}")
    return result


if __name__ == "__main__":
    main()
