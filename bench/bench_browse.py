"""Episode browser speed with 10,000 episodes: GET /api/episodes pages (filter + sort + count in SQL) against
the in-memory listing the browser used before issue 5 (every row loaded, filtered and sorted in Python).

Rows are inserted straight into a fresh SQLite database (no video files: the listing never opens them), with
realistic spread: 5 datasets, 3 tasks, 8 operators, 4 sources, labels, 90 days of timestamps, ~20 % with a
quality flag, 2 % in the trash. Each query runs REPEATS times through FastAPI's TestClient (the full HTTP stack
without a socket); medians and p95 in ms. Writes bench/results/browse.json.

    python -m bench.bench_browse [--episodes 10000] [--repeats 30]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from backend.settings import Settings
from bench.machine import write_result
from storage.db import make_engine, make_session_factory, upgrade_database
from storage.episode_query import EpisodeQuery
from storage.episode_store import EpisodeStore
from storage.models import Dataset, Episode, EpisodeQualityFlag, QualityFlagName
from webapp import create_app

QUERIES = {
    "newest page": "",
    "dataset": "dataset=ds_2",
    "instruction substring": "instruction=green",
    "failures": "success=failure",
    "quality flag": "quality_flag=high_jerk",
    "operator + 30 days": "operator=op_3&created_from=2026-09-01T00:00:00Z&created_to=2026-10-01T00:00:00Z",
    "sorted by length": "sort=length&order=asc",
    "deep page (offset 9000)": "offset=9000",
    "trash": "trashed=true",
    "five filters": "dataset=ds_1&task=pick&source=teleop&success=success&instruction=red",
}


class _NoRobot:
    """create_app wants a robot session; browsing needs none."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def populate(store: EpisodeStore, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    start = datetime(2026, 8, 1, tzinfo=UTC)
    cams = [{"name": "front", "height": 224, "width": 224}, {"name": "wrist", "height": 224, "width": 224}]
    with store.session_factory.begin() as session:
        datasets = [Dataset(name=f"ds_{i}", created_at=start) for i in range(5)]
        session.add_all(datasets)
        session.flush()
        episodes, flags = [], []
        for i in range(n):
            uid = uuid.UUID(int=rng.getrandbits(128)).hex
            ds = rng.choice(datasets)
            colour, task = rng.choice(["red", "green", "blue"]), rng.choice(["pick", "place", "stack"])
            verdict = rng.choice([True, False, None])
            episodes.append(
                Episode(
                    id=i + 1, uid=uid, dataset_id=ds.id, task=task, instruction=f"{task} the {colour} cube",
                    source=rng.choice(["teleop", "scripted", "policy", "intervention"]),
                    operator=f"op_{rng.randrange(8)}", seed=i, fps=30, length=rng.randrange(60, 600),
                    auto_success=rng.random() < 0.7, human_success=verdict,
                    failure_reason="dropped" if verdict is False else None,
                    created_at=start + timedelta(seconds=rng.randrange(90 * 86400)),
                    path=f"episodes/{ds.name}/{uid}", checksums={}, cameras=cams,
                    state_names=[f"j{k}" for k in range(7)], action_names=[f"j{k}" for k in range(7)],
                    extra={"colour": colour}, deleted_at=start if rng.random() < 0.02 else None,
                )
            )  # fmt: skip
            if rng.random() < 0.2:
                flag = rng.choice(list(QualityFlagName))
                flags.append(EpisodeQualityFlag(episode_id=i + 1, flag=flag, detail="synthetic"))
        session.add_all(episodes)
        session.flush()
        session.add_all(flags)


def in_memory_page(store: EpisodeStore, q: EpisodeQuery) -> tuple[list, int]:
    """What the browser did before: load every episode, filter and sort in Python, slice a page."""
    rows = [e for e in store.list_episodes(q.dataset) if q.task is None or e.task == q.task]
    rows.sort(key=lambda e: (e.created_at, e.id), reverse=True)
    return rows[q.offset : q.offset + q.limit], len(rows)


def timed(fn, repeats: int) -> dict:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))], 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        settings = Settings(data_dir=data_dir, allowed_hosts=["testserver"])  # the Host TestClient sends
        engine = make_engine(settings.database_url)
        upgrade_database(engine)
        store = EpisodeStore(data_dir, make_session_factory(engine))
        t0 = time.perf_counter()
        populate(store, args.episodes)
        insert_s = time.perf_counter() - t0
        results = {}
        app = create_app(settings, session=_NoRobot(), store=store, ui=False)
        with TestClient(app) as client:
            # Signed in as a manager with an API token: the guard (a token lookup per request) is measured too.
            app.state.auth.users.add("bench", "manager", "bench-password-1", actor=None)
            secret, _ = app.state.auth.tokens.create("bench", "bench", actor=None)
            client.headers["Authorization"] = f"Bearer {secret}"
            for name, params in QUERIES.items():
                r = client.get(f"/api/episodes?{params}&limit=50")
                assert r.status_code == 200, r.text
                count = r.json()["count"]
                results[name] = {
                    "params": params,
                    "matches": count,
                    **timed(lambda p=params: client.get(f"/api/episodes?{p}&limit=50"), args.repeats),
                }
                print(f"{name:28s} {count:6d} matches  median {results[name]['median_ms']:7.2f} ms  "
                      f"p95 {results[name]['p95_ms']:7.2f} ms", flush=True)  # fmt: skip
            baseline = {
                "sql (query_episodes)": timed(lambda: store.query_episodes(EpisodeQuery(limit=50)), args.repeats),
                "in memory (list_episodes + sort + slice)": timed(
                    lambda: in_memory_page(store, EpisodeQuery(limit=50)), max(3, args.repeats // 5)
                ),
            }
        engine.dispose()
    sql, mem = baseline["sql (query_episodes)"], baseline["in memory (list_episodes + sort + slice)"]
    result = {
        "episodes": args.episodes,
        "repeats": args.repeats,
        "database": "SQLite (WAL) in a temporary folder",
        "insert_s": round(insert_s, 2),
        "api_pages_limit_50": results,
        "newest_page_store_level": baseline,
        "speedup_sql_vs_in_memory_median": round(mem["median_ms"] / sql["median_ms"], 1),
        "worst_api_p95_ms": max(r["p95_ms"] for r in results.values()),
    }
    print(f"store level newest page: SQL {sql['median_ms']} ms vs in memory {mem['median_ms']} ms "
          f"({result['speedup_sql_vs_in_memory_median']}x)")  # fmt: skip
    path = write_result("browse", result)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
