"""Fixtures for the storage tests: a throwaway SQLite + data dir per test and synthetic episodes (the helpers live
in tests/helpers.py, shared with every test folder)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import helpers
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from storage.db import make_session_factory
from storage.episode_store import EpisodeStore


def race_edits(store: EpisodeStore, episode_id: int, writers: int) -> list[str]:
    """`writers` threads, each with its own AnnotationService, released together to edit the episode's notes on
    version 1; returns each one's outcome, "ok" or "conflict"."""
    from storage.annotations import AnnotationService
    from storage.errors import ConflictError

    results: list[str] = []
    barrier = threading.Barrier(writers)

    def write(i: int) -> None:
        service = AnnotationService(store.session_factory)
        barrier.wait()
        try:
            service.edit(episode_id, {"notes": f"writer {i}"}, user=f"u{i}", expected_version=1)
            results.append("ok")
        except ConflictError:
            results.append("conflict")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def engine(data_dir: Path) -> Iterator[Engine]:
    eng = helpers.migrated_engine(helpers.db_url(data_dir))
    yield eng
    eng.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def store(data_dir: Path, session_factory: sessionmaker[Session]) -> EpisodeStore:
    return helpers.open_store(data_dir, session_factory=session_factory)


@pytest.fixture(scope="session")
def h() -> SimpleNamespace:
    """The shared helpers (tests/helpers.py) plus the storage tests' own, as one namespace."""
    return SimpleNamespace(
        CAMERAS=helpers.CAMERAS,
        STATE_NAMES=helpers.STATE_NAMES,
        ACTION_NAMES=helpers.ACTION_NAMES,
        make_meta=helpers.make_meta,
        synthetic_image=helpers.synthetic_image,
        synthetic_step=helpers.synthetic_step,
        record_episode=helpers.record_episode,
        race_edits=race_edits,
        db_url=helpers.db_url,
    )
