"""Engine, migrations and models on a throwaway SQLite."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from storage.db import (
    current_revision,
    get_session,
    head_revision,
    make_engine,
    make_session_factory,
    upgrade_database,
)
from storage.models import Base, Dataset, Episode, EpisodeSource


def test_migration_creates_tables_on_fresh_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'vla.db'}"  # parent folders do not exist yet
    upgrade_database(url)
    engine = make_engine(url)
    insp = inspect(engine)
    assert {"datasets", "episodes", "alembic_version"} <= set(insp.get_table_names())
    cols = {c["name"] for c in insp.get_columns("episodes")}
    assert {
        "id", "dataset_id", "task", "instruction", "source", "operator", "seed", "fps", "length", "auto_success",
        "human_success", "created_at", "path", "checksums", "cameras", "state_names", "action_names", "extra", "uid",
    } <= cols  # fmt: skip
    indexed = {tuple(ix["column_names"]) for ix in insp.get_indexes("episodes")}
    for col in ("dataset_id", "task", "source", "operator", "created_at"):
        assert (col,) in indexed, f"episodes.{col} should be indexed"
    fks = insp.get_foreign_keys("episodes")
    assert fks[0]["referred_table"] == "datasets" and fks[0]["name"] == "fk_episodes_dataset_id_datasets"
    assert current_revision(engine) == head_revision() is not None
    upgrade_database(engine)  # idempotent
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_models_match_migrations(engine) -> None:
    """Autogenerate against the migrated schema finds nothing: models and migrations have not drifted."""
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_downgrade_and_upgrade_again(engine) -> None:
    from alembic import command

    from storage.db import alembic_config

    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert "episodes" not in inspect(engine).get_table_names()
    upgrade_database(engine)
    assert "episodes" in inspect(engine).get_table_names()


def test_sqlite_pragmas(engine) -> None:
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def _episode(dataset_id: int, **kw) -> Episode:
    fields = dict(
        uid="0" * 32,
        dataset_id=dataset_id,
        task="pick",
        instruction="pick up the cube",
        source=EpisodeSource.TELEOP,
        fps=30,
        length=10,
        path="episodes/demo/" + "0" * 32,
        checksums={"data.parquet": "ab" * 32},
        cameras=[{"name": "front", "height": 64, "width": 64}],
        state_names=["x"],
        action_names=["dx"],
        extra={"colour": "red", "params": {"size": 0.04}},
    )
    fields.update(kw)
    return Episode(**fields)


def test_models_round_trip(session_factory) -> None:
    when = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    with session_factory.begin() as s:
        ds = Dataset(name="demo", description="first")
        s.add(ds)
        s.flush()
        s.add(_episode(ds.id, seed=2**40, operator="bob", auto_success=False, human_success=None, created_at=when))
    with session_factory() as s:
        ep = s.scalars(select(Episode)).one()
        assert ep.dataset.name == "demo" and ep.dataset.description == "first"
        assert ep.source is EpisodeSource.TELEOP
        assert ep.seed == 2**40 and ep.operator == "bob"
        assert ep.auto_success is False and ep.human_success is None
        assert ep.created_at == when and ep.created_at.tzinfo is not None
        assert ep.extra == {"colour": "red", "params": {"size": 0.04}}
        assert ep.cameras == [{"name": "front", "height": 64, "width": 64}]
        assert ep.dataset.created_at.tzinfo is not None
        # the enum is stored as its value, so other tools (SQL, exports) read "teleop"
        assert s.execute(text("SELECT source FROM episodes")).scalar() == "teleop"


def test_constraints(session_factory) -> None:
    with session_factory.begin() as s:
        s.add(Dataset(name="demo"))
    with pytest.raises(IntegrityError):  # unique dataset name
        with session_factory.begin() as s:
            s.add(Dataset(name="demo"))
    with pytest.raises(IntegrityError):  # foreign key enforced on SQLite
        with session_factory.begin() as s:
            s.add(_episode(999))
    with pytest.raises(IntegrityError):  # CHECK constraint on the source enum, even from raw SQL
        with session_factory.begin() as s:
            s.add(_episode(1))
            s.flush()
            s.execute(text("UPDATE episodes SET source = 'bogus'"))
    with pytest.raises(StatementError):  # naive datetimes are refused rather than stored ambiguously
        with session_factory.begin() as s:
            s.add(_episode(1, created_at=datetime(2025, 1, 1)))


def test_get_session_generator(session_factory) -> None:
    gen = get_session(session_factory)
    session = next(gen)
    session.add(Dataset(name="uncommitted"))
    session.flush()
    with pytest.raises(RuntimeError):
        gen.throw(RuntimeError("route failed"))  # FastAPI throws the route's exception into the dependency
    gen2 = get_session(session_factory)
    s2 = next(gen2)
    assert s2.scalars(select(Dataset)).all() == []  # rolled back
    gen2.close()


def test_in_memory_engine() -> None:
    engine = make_engine("sqlite://")
    upgrade_database(engine)
    sf = make_session_factory(engine)
    with sf.begin() as s:
        s.add(Dataset(name="mem"))
    with sf() as s:  # a second connection from the pool sees the same database
        assert s.scalars(select(Dataset.name)).all() == ["mem"]
    engine.dispose()


def test_migration_renders_for_postgresql() -> None:
    """Offline (--sql) render for PostgreSQL: portable types, named constraints, no SQLite-only syntax."""
    import io

    from alembic import command

    from storage.db import alembic_config

    cfg = alembic_config("postgresql://user@localhost/vla")
    cfg.output_buffer = io.StringIO()
    command.upgrade(cfg, "head", sql=True)
    sql = cfg.output_buffer.getvalue()
    assert "CREATE TABLE episodes" in sql and "AUTOINCREMENT" not in sql
    assert "created_at TIMESTAMP WITH TIME ZONE" in sql and "checksums JSON NOT NULL" in sql
    assert "CONSTRAINT fk_episodes_dataset_id_datasets FOREIGN KEY(dataset_id) REFERENCES datasets (id)" in sql
    assert "CONSTRAINT ck_episodes_episode_source CHECK (source IN ('teleop'" in sql
    assert "CREATE INDEX ix_episodes_created_at ON episodes (created_at)" in sql
