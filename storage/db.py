"""Engine, sessions and schema migrations. The only place in the app that builds an engine.

Usage (run.py builds these once from Settings and passes them down)::

    engine = make_engine(settings.database_url)
    upgrade_database(engine)                    # Alembic to head; idempotent
    session_factory = make_session_factory(engine)

    # webapp: DbSessionDep (webapp/deps.py) yields from get_session(store.session_factory), one per request
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def _sqlite_in_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or (url.query.get("mode") == "memory")


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """Build an engine. SQLite: creates the parent folder, turns on WAL and foreign keys on every connection.

    WAL lets the web app read while the recorder commits, and keeps the file consistent if the process is killed
    mid-commit. ``synchronous=NORMAL`` in WAL mode can lose the last commits on power loss (never corrupts); the
    episode store re-registers such episodes from their manifests in ``EpisodeStore.recover()``.
    """
    url = make_url(url)
    # Statement parameters stay out of SQLAlchemy's logs and error messages: they can hold what a user typed at
    # sign-in (a password in the name field) or a token's hash.
    kwargs.setdefault("hide_parameters", True)
    if _is_sqlite(url):
        if _sqlite_in_memory(url):
            # One shared connection, or every new connection would see an empty database.
            kwargs.setdefault("poolclass", StaticPool)
            kwargs.setdefault("connect_args", {"check_same_thread": False})
        elif url.database and not url.database.startswith("file:"):
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)
    if _is_sqlite(url):
        in_memory = _sqlite_in_memory(url)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            try:
                if not in_memory:
                    cur.execute("PRAGMA journal_mode=WAL")
                    cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA busy_timeout=10000")  # ms; a second process (CLI, crash test) may hold the lock
            finally:
                cur.close()

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # Every ORM session keeps the rollout_daily aggregate exact (a before_flush listener on Session).
    import storage.rollout_daily  # noqa: F401

    # expire_on_commit=False: objects stay readable after commit (services return them to routes).
    return sessionmaker(bind=engine, expire_on_commit=False)


def get_session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """Yield one session per request; roll back what was not committed, close always.

    Services commit explicitly; committing here (after FastAPI may already have sent the response) would hide
    errors from the client.
    """
    session = session_factory()
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def session_scope(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """A transaction: commit when the block ends, roll back if it raised."""
    with session_factory.begin() as session:
        yield session


def alembic_config(url: str | URL | None = None) -> Any:
    """The Alembic Config of the packaged migrations (script_location does not depend on the cwd)."""
    from alembic.config import Config

    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", make_url(url).render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade_database(engine_or_url: Engine | str | URL, revision: str = "head") -> None:
    """Run Alembic migrations up to ``revision`` (default head). Safe to call on every start."""
    from alembic import command

    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str | URL) else engine_or_url
    try:
        cfg = alembic_config()
        with engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                # Batch mode rebuilds tables (create new, copy, drop old); with foreign keys ON that drop would
                # cascade or fail. The pragma is a no-op inside a transaction, so set it before Alembic begins one.
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            try:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
                conn.commit()
                if sqlite:
                    bad = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if bad:
                        raise RuntimeError(f"migration left rows with broken foreign keys: {bad[:5]}")
            finally:
                if sqlite:
                    conn.rollback()
                    conn.exec_driver_sql("PRAGMA foreign_keys=ON")  # the connection goes back to the pool
    finally:
        if engine is not engine_or_url:
            engine.dispose()


def current_revision(engine: Engine) -> str | None:
    """The database's Alembic revision (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
