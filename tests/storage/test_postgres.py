"""The storage layer against a live PostgreSQL server (the product promises it through ``VLA_DATABASE_URL``).

A module-scoped fixture starts a throwaway server from the local PostgreSQL binaries (the Debian package
``postgresql``; ``scripts/setup.sh`` installs it when no ``initdb`` is found): a fresh cluster in a temp folder,
listening only on a unix socket in that folder (``listen_addresses=''``: no TCP, nothing leaves the machine),
stopped with ``pg_ctl stop -m immediate`` and deleted afterwards. PostgreSQL refuses to run as root, so under root
the cluster belongs to ``nobody`` and the server commands run as that user. Every test gets its own database.

The server's time zone is set to +05:30 so a timezone bug (naive or non-UTC datetimes coming back) shows up.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import helpers
import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from helpers import free_port
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from storage.db import (
    alembic_config,
    current_revision,
    head_revision,
    make_engine,
    make_session_factory,
    upgrade_database,
)
from storage.episode_store import CameraSpec, EpisodeMeta, EpisodeStore
from storage.models import Base, Dataset, Episode, EpisodeSource

pytestmark = pytest.mark.postgres

PG_PACKAGE = "postgresql"  # Debian package with initdb / pg_ctl / postgres
PG_USER = "postgres"  # superuser name of the throwaway cluster (trust auth on its private socket)
SERVER_TIMEZONE = "Asia/Kolkata"  # +05:30, no DST: datetimes must still come back as UTC
START_TIMEOUT_S = 60

CAMERAS = [CameraSpec("front", 64, 64), CameraSpec("wrist", 32, 32)]
STATE_NAMES = ["x", "y", "z", "gripper"]
ACTION_NAMES = ["dx", "dy", "dz", "grip"]
N_FRAMES = 10


# -- the server ------------------------------------------------------------------------------------------------------
def find_pg_bindir() -> Path:
    """The folder holding initdb, pg_ctl and postgres: PATH first, then /usr/lib/postgresql/<newest>/bin."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)  # /usr/local/bin/initdb may be a symlink
        candidates.append(Path(on_path).parent)
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parent.name.split(".")], reverse=True)
    candidates += [Path(p) for p in versions]
    for d in candidates:
        if all(os.access(d / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres")):
            return d
    pytest.fail(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in /usr/lib/postgresql/*/bin. "
        f"Install the Debian package '{PG_PACKAGE}' (apt-get install -y {PG_PACKAGE}); `make test` / "
        "scripts/setup.sh does this when run as root.",
        pytrace=False,
    )


@dataclass
class PgServer:
    url: URL  # of the maintenance database "postgres"
    root: Path
    log: Path

    def url_for(self, database: str) -> URL:
        return self.url.set(database=database)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no server log)"


def _runner() -> tuple[dict, int | None]:
    """subprocess kwargs that run a server command as an unprivileged user when we are root."""
    if os.geteuid() != 0:
        return {}, None
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.fail("running as root and there is no user 'nobody' to own the PostgreSQL test cluster", pytrace=False)
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}, nobody.pw_uid


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("the PostgreSQL driver psycopg is missing: pip install -e '.[dev]' (or run scripts/setup.sh)")
    bindir = find_pg_bindir()
    as_user, uid = _runner()
    # Short path in /tmp: a unix socket path must stay under ~107 bytes (pytest's tmp_path can be longer).
    root = Path(tempfile.mkdtemp(prefix="vla-pg-"))
    data, log = root / "data", root / "server.log"
    if uid is not None:
        os.chown(root, uid, -1)
    env = {**os.environ, "HOME": str(root), "LC_ALL": "C", "LANG": "C"}
    env.pop("PGDATA", None)

    def run(*args: str | Path, timeout: float = START_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args], cwd=root, env=env, capture_output=True, text=True, timeout=timeout, **as_user
        )

    port = free_port()  # the server listens on no TCP port: the number only names its socket file
    started = False
    try:
        res = run(bindir / "initdb", "-D", data, "-U", PG_USER, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
        if res.returncode:
            pytest.fail(f"initdb failed ({res.returncode}):\n{res.stdout}\n{res.stderr}", pytrace=False)
        with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(
                "\n# vla-dashboard test server\n"
                "listen_addresses = ''\n"
                f"unix_socket_directories = '{root}'\n"
                f"port = {port}\n"
                f"timezone = '{SERVER_TIMEZONE}'\n"
                "max_connections = 30\n"
                "shared_buffers = 16MB\n"
                "fsync = off\n"  # a throwaway cluster: durability does not matter, speed does
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
            )
        res = run(bindir / "pg_ctl", "-D", data, "-l", log, "-w", "-t", str(START_TIMEOUT_S), "start")
        started = True
        server = PgServer(
            url=URL.create(
                "postgresql+psycopg",
                username=PG_USER,
                database="postgres",
                query={"host": str(root), "port": str(port)},
            ),
            root=root,
            log=log,
        )
        if res.returncode:
            pytest.fail(
                f"pg_ctl start failed ({res.returncode}):\n{res.stdout}\n{res.stderr}\n{server.log_tail()}",
                pytrace=False,
            )
        _wait_ready(server)
        yield server
    finally:
        if started:
            with contextlib.suppress(Exception):
                run(bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop", timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(server: PgServer) -> None:
    engine = make_engine(server.url)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                return
            except OperationalError as exc:
                if time.monotonic() > deadline:
                    pytest.fail(f"PostgreSQL did not accept connections: {exc}\n{server.log_tail()}", pytrace=False)
                time.sleep(0.1)
    finally:
        engine.dispose()


@pytest.fixture
def pg_url(pg_server: PgServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database for this test (dropped afterwards); the URL as a string, as in VLA_DATABASE_URL."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    admin = make_engine(pg_server.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield pg_server.url_for(name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = helpers.migrated_engine(pg_url)
    yield engine
    engine.dispose()


# -- synthetic episodes: the shared factory (tests/helpers.py) with what PostgreSQL must keep -------------------------
def _fields(**overrides: object) -> dict[str, object]:
    """EpisodeMeta fields over helpers.make_meta's: a BIGINT seed and nested, non-ASCII JSON in extra."""
    fields: dict[str, object] = dict(
        source="scripted",
        fps=15,
        cameras=list(CAMERAS),
        seed=2**40 + 7,  # needs BIGINT
        extra={"colour": "red", "cube_size": 0.04, "params": {"xs": [1, 2.5, None], "ok": True}, "name": "café"},
    )
    return {**fields, **overrides}


def _meta(**overrides: object) -> EpisodeMeta:
    return helpers.make_meta(**_fields(**overrides))


def _record(store: EpisodeStore, n: int = N_FRAMES, **meta: object) -> tuple[int, np.ndarray, np.ndarray]:
    """Record and save one take; returns (id, states (T, S), actions (T, A)) as fed in."""
    rng = np.random.default_rng(0)
    states = rng.standard_normal((n, len(STATE_NAMES))).astype(np.float32)
    actions = rng.standard_normal((n, len(ACTION_NAMES))).astype(np.float32)

    def step(i: int, cameras: list[CameraSpec]) -> dict:
        images = {c.name: helpers.synthetic_image(i, c.height, c.width) for c in cameras}
        return dict(images=images, state=states[i], action=actions[i])

    episode_id = helpers.record_episode(store, n, step=step, auto_success=True, human_success=False, **_fields(**meta))
    return episode_id, states, actions


def _store(data_dir: Path, engine: Engine) -> EpisodeStore:
    return helpers.open_store(data_dir, session_factory=make_session_factory(engine))


# -- tests -----------------------------------------------------------------------------------------------------------
def test_upgrade_creates_schema_matching_models(pg_url: str) -> None:
    assert make_url(pg_url).get_backend_name() == "postgresql"
    upgrade_database(pg_url)  # from a URL string, the way run.py passes VLA_DATABASE_URL
    engine = make_engine(pg_url)
    try:
        assert current_revision(engine) == head_revision() is not None
        insp = inspect(engine)
        assert {"datasets", "episodes", "alembic_version"} <= set(insp.get_table_names())
        cols = {c["name"]: c for c in insp.get_columns("episodes")}
        assert str(cols["created_at"]["type"]) == "TIMESTAMP" and cols["created_at"]["type"].timezone is True
        assert str(cols["seed"]["type"]) == "BIGINT"
        assert str(cols["extra"]["type"]) == "JSON" and str(cols["source"]["type"]) == "VARCHAR(16)"
        assert "nextval" in str(cols["id"]["default"])  # SERIAL: the database hands out ids
        indexed = {tuple(ix["column_names"]) for ix in insp.get_indexes("episodes")}
        for col in ("dataset_id", "task", "source", "operator", "created_at"):
            assert (col,) in indexed, f"episodes.{col} should be indexed"
        (fk,) = insp.get_foreign_keys("episodes")
        assert fk["name"] == "fk_episodes_dataset_id_datasets" and fk["referred_table"] == "datasets"
        assert fk["options"].get("ondelete") == "RESTRICT"
        checks = {c["name"]: c["sqltext"] for c in insp.get_check_constraints("episodes")}
        assert "ck_episodes_episode_source" in checks and "'intervention'" in checks["ck_episodes_episode_source"]
        uniques = {u["name"] for u in insp.get_unique_constraints("episodes")}
        assert {"uq_episodes_uid", "uq_episodes_path"} <= uniques

        # Models and migrations agree on PostgreSQL too: autogenerate finds nothing to do.
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []

        upgrade_database(engine)  # idempotent
        assert current_revision(engine) == head_revision()

        # Down to base and up again (the batch operations run as plain ALTERs here).
        from alembic import command

        cfg = alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        assert not {"datasets", "episodes"} & set(inspect(engine).get_table_names())
        upgrade_database(engine)
        assert {"datasets", "episodes"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_episode_round_trip(pg_engine: Engine, tmp_path: Path) -> None:
    store = _store(tmp_path / "data", pg_engine)
    meta = _meta()
    ep_id, states, actions = _record(store)

    (info,) = store.list_episodes()
    assert store.list_episodes("demo") == [info] and store.get_episode(ep_id) == info
    assert info.id == ep_id and info.dataset == "demo" and info.length == N_FRAMES
    for name in ("task", "instruction", "source", "fps", "operator", "seed", "extra", "state_names", "action_names"):
        assert getattr(info, name) == getattr(meta, name), name
    assert info.cameras == CAMERAS
    assert info.auto_success is True and info.human_success is False
    assert set(info.checksums) == {"data.parquet", "videos/front.mp4", "videos/wrist.mp4"}
    # timezone-aware, UTC, and the same instant the manifest recorded (the server runs at +05:30)
    assert info.created_at.tzinfo is not None and info.created_at.utcoffset() == timedelta(0)
    manifest = json.loads((store.data_dir / info.path / "episode.json").read_text())
    assert info.created_at.isoformat() == manifest["created_at"]

    with make_session_factory(pg_engine)() as s:
        ep = s.get(Episode, ep_id)
        assert ep is not None and ep.source is EpisodeSource.SCRIPTED
        # the enum is stored as its value; JSON columns are real JSON to SQL
        row = s.execute(
            text("SELECT source, extra->'params'->'xs'->>1, cameras->0->>'name', created_at FROM episodes")
        ).one()
        assert row[0] == "scripted" and row[1] == "2.5" and row[2] == "front"
        assert row[3] == info.created_at  # the same instant...
        # ...that the driver hands back in the server's zone (unless PGTZ overrides it): the model converts to UTC
        assert row[3].utcoffset() == timedelta(hours=5, minutes=30), "is PGTZ set in the environment?"

    table = store.read_table(ep_id)
    assert table.num_rows == N_FRAMES
    np.testing.assert_array_equal(np.stack(table.column("observation.state").to_numpy(zero_copy_only=False)), states)
    np.testing.assert_array_equal(np.stack(table.column("action").to_numpy(zero_copy_only=False)), actions)
    np.testing.assert_array_equal(table.column("frame_index").to_numpy(), np.arange(N_FRAMES))
    for cam in CAMERAS:
        assert store.read_frames(ep_id, cam.name).shape == (N_FRAMES, cam.height, cam.width, 3)

    (ds,) = store.list_datasets()
    assert ds.name == "demo" and ds.num_episodes == 1 and ds.created_at.utcoffset() == timedelta(0)
    assert store.ensure_dataset("demo") == ds.id
    assert store.check() == []

    second, _, _ = _record(store, n=3, source="teleop")
    assert second > ep_id
    assert [e.id for e in store.list_episodes()] == [ep_id, second]
    store.delete_episode(ep_id)
    assert [e.id for e in store.list_episodes()] == [second]
    assert not (store.data_dir / info.path).exists()
    assert store.check() == []


def _insert_episode(conn, *, uid: str, source: str = "teleop", dataset_id: int = 1, path: str | None = None) -> None:
    conn.execute(
        text(
            "INSERT INTO episodes (uid, dataset_id, task, instruction, source, fps, length, created_at, path,"
            " checksums, cameras, state_names, action_names, extra)"
            " VALUES (:uid, :ds, 'pick', 'pick it', :source, 30, 10, now(), :path,"
            " CAST('{}' AS JSON), CAST('[]' AS JSON), CAST('[]' AS JSON), CAST('[]' AS JSON), CAST('{}' AS JSON))"
        ),
        {"uid": uid, "ds": dataset_id, "source": source, "path": path or f"episodes/demo/{uid}"},
    )


def _sqlstate(exc: pytest.ExceptionInfo[IntegrityError]) -> tuple[str, str | None]:
    orig = exc.value.orig
    return orig.sqlstate, orig.diag.constraint_name  # type: ignore[union-attr]


def test_constraints_enforced_by_postgres(pg_engine: Engine) -> None:
    sf = make_session_factory(pg_engine)
    with pg_engine.begin() as conn:
        conn.execute(text("INSERT INTO datasets (name) VALUES ('demo')"))
        _insert_episode(conn, uid="a" * 32)  # the control: a valid raw row goes in
    with pytest.raises(IntegrityError) as exc:  # CHECK on the non-native enum, from raw SQL
        with pg_engine.begin() as conn:
            _insert_episode(conn, uid="b" * 32, source="bogus")
    assert _sqlstate(exc) == ("23514", "ck_episodes_episode_source")
    with pytest.raises(IntegrityError) as exc:  # unique uid
        with pg_engine.begin() as conn:
            _insert_episode(conn, uid="a" * 32, path="episodes/demo/elsewhere")
    assert _sqlstate(exc) == ("23505", "uq_episodes_uid")
    with pytest.raises(IntegrityError) as exc:  # unique dataset name
        with pg_engine.begin() as conn:
            conn.execute(text("INSERT INTO datasets (name) VALUES ('demo')"))
    assert _sqlstate(exc) == ("23505", "uq_datasets_name")
    with pytest.raises(IntegrityError) as exc:  # episode of a dataset that does not exist
        with pg_engine.begin() as conn:
            _insert_episode(conn, uid="c" * 32, dataset_id=999)
    assert _sqlstate(exc) == ("23503", "fk_episodes_dataset_id_datasets")
    # RESTRICT: a dataset with episodes cannot be deleted, neither from SQL nor through the ORM
    with pytest.raises(IntegrityError) as exc:
        with pg_engine.begin() as conn:
            conn.execute(text("DELETE FROM datasets WHERE name = 'demo'"))
    assert _sqlstate(exc) == ("23503", "fk_episodes_dataset_id_datasets")
    with pytest.raises(IntegrityError) as exc:
        with sf.begin() as s:
            s.delete(s.scalars(select(Dataset).where(Dataset.name == "demo")).one())
    assert _sqlstate(exc) == ("23503", "fk_episodes_dataset_id_datasets")
    with pg_engine.connect() as conn:  # nothing of the failed statements stuck
        assert conn.execute(text("SELECT count(*) FROM episodes")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM datasets")).scalar() == 1
    # once its episodes are gone the dataset can go
    with pg_engine.begin() as conn:
        conn.execute(text("DELETE FROM episodes"))
        conn.execute(text("DELETE FROM datasets"))


def test_recover_registers_unregistered_folder(pg_engine: Engine, pg_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store = _store(data_dir, pg_engine)
    ep_id, states, _ = _record(store)
    before = store.get_episode(ep_id)
    # The process was killed between the rename and the COMMIT: the folder is in place, the row is not.
    with pg_engine.begin() as conn:
        assert conn.execute(text("DELETE FROM episodes WHERE id = :id"), {"id": ep_id}).rowcount == 1
    assert store.list_episodes() == []

    # A copy of the folder filed under another dataset with the same uid (its manifest edited to match) cannot be
    # registered: PostgreSQL's unique uid rejects it and recover() quarantines it, and goes on with the rest.
    dup = data_dir / "episodes" / "other" / before.uid
    shutil.copytree(data_dir / before.path, dup)
    manifest = json.loads((dup / "episode.json").read_text())
    (dup / "episode.json").write_text(json.dumps({**manifest, "dataset": "other"}))

    engine2 = make_engine(pg_url)  # a fresh process: new engine, new store
    try:
        store2 = EpisodeStore(data_dir, make_session_factory(engine2))
        report = store2.recover()
        (new_id,) = report.recovered
        assert new_id != ep_id  # PostgreSQL's sequence does not reuse ids either
        assert len(report.quarantined) == 1 and report.quarantined[0].startswith(f"episodes/other/{before.uid}")
        assert (data_dir / "lost+found" / f"other__{before.uid}").is_dir() and not dup.exists()
        (after,) = store2.list_episodes()
        assert after.id == new_id
        assert dict(after.__dict__, id=ep_id) == before.__dict__  # every other field as saved
        assert after.created_at.utcoffset() == timedelta(0)
        np.testing.assert_array_equal(
            np.stack(store2.read_table(new_id).column("observation.state").to_numpy(zero_copy_only=False)), states
        )
        (problem,) = store2.check()  # the quarantined copy is reported for a human, nothing else
        assert problem.startswith(f"lost+found/other__{before.uid}")
        shutil.rmtree(data_dir / "lost+found" / f"other__{before.uid}")
        assert store2.check() == []
        assert not store2.recover().changed  # idempotent
        assert [e.id for e in store2.list_episodes()] == [new_id]
    finally:
        engine2.dispose()


def test_annotations_conflicts_snapshots_and_purge_on_postgres(pg_engine: Engine, tmp_path: Path, h) -> None:
    """The labeling rules hold on PostgreSQL too: versioned edits (racing writers: one wins), undo, the quality
    flag filter, a snapshot holding an episode against purge, and a merge."""
    from storage.annotations import AnnotationService
    from storage.episode_query import EpisodeQuery
    from storage.errors import ConflictError
    from storage.snapshots import SnapshotService

    store = _store(tmp_path / "data", pg_engine)
    ep, _, _ = _record(store)
    other, _, _ = _record(store, dataset="other")
    svc = AnnotationService(store.session_factory)
    results = h.race_edits(store, ep, writers=4)
    assert sorted(results) == ["conflict"] * 3 + ["ok"]
    svc.undo(ep, user="a", expected_version=2)
    assert store.get_episode(ep).notes == "" and store.get_episode(ep).version == 3
    flagged, _ = store.query_episodes(EpisodeQuery(quality_flag="too_short"))
    assert {e.id for e in flagged} == {i for i in (ep, other) if "too_short" in store.get_episode(i).quality_flags}
    SnapshotService(store.session_factory, store).create("s1", store.get_episode(ep).dataset, user="a")
    svc.trash([ep], user="a")
    with pytest.raises(ConflictError, match="belong to a snapshot"):
        svc.check_purgeable([ep])
    assert svc.merge_datasets("other", store.get_episode(ep).dataset, user="a") == 1
    assert {d.name for d in store.list_datasets()} == {store.get_episode(ep).dataset}


def test_audit_events_are_append_only_on_postgres(pg_engine: Engine) -> None:
    """The trigger function refuses UPDATE, DELETE and TRUNCATE (which skips row triggers) from raw SQL and the ORM;
    a downgrade drops the function with the table, and the upgrade brings both back."""
    from alembic import command

    from backend.services.audit import Action, AuditQuery, AuditService
    from storage.models import AuditEvent

    audit = AuditService(make_session_factory(pg_engine))
    audit.record("alice", Action.EPISODE_PURGE, "episode", 7, address="10.0.0.1", detail={"dataset": "café"})
    audit.record(None, Action.SIGN_IN_FAILED, address="203.0.113.7", detail={"reason": "unknown_user"})
    for statement in ("UPDATE audit_events SET actor = 'mallory'", "DELETE FROM audit_events", "TRUNCATE audit_events"):
        with pytest.raises(IntegrityError, match="append-only") as exc:
            with pg_engine.begin() as conn:
                conn.execute(text(statement))
        assert exc.value.orig.sqlstate == "23001"  # restrict_violation
    with pytest.raises(IntegrityError, match="append-only"):
        with make_session_factory(pg_engine).begin() as s:
            s.delete(s.get(AuditEvent, 1))
    (failed, purge), total = audit.query()
    assert total == 2 and purge.actor == "alice" and purge.detail == {"dataset": "café"} and failed.actor is None
    assert [e.object_id for e in audit.query(AuditQuery(actor="alice", object_id=7))[0]] == ["7"]
    assert purge.at.utcoffset() == timedelta(0)  # UTC although the server runs at +05:30

    def function_exists() -> bool:
        with pg_engine.connect() as conn:
            found = conn.execute(text("SELECT count(*) FROM pg_proc WHERE proname = 'audit_events_append_only'"))
            return found.scalar() == 1

    cfg = alembic_config()
    with pg_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0002")
    assert not {"users", "api_tokens", "audit_events"} & set(inspect(pg_engine).get_table_names())
    assert not function_exists()
    upgrade_database(pg_engine)
    assert function_exists()
    audit.record("bob", Action.USER_ADD, "user", "carol")
    audit.record("b" * 300, Action.USER_ADD, "user", "c" * 300, address="f" * 100)  # cut to fit, not refused
    with pytest.raises(IntegrityError, match="append-only"):
        with pg_engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_events"))
