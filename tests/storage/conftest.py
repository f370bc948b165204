"""Fixtures for the storage tests: a throwaway SQLite + data dir per test and synthetic episodes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from storage.db import make_engine, make_session_factory, upgrade_database
from storage.episode_store import CameraSpec, EpisodeMeta, EpisodeStore

CAMERAS = [CameraSpec("front", 96, 96), CameraSpec("wrist", 64, 64)]
STATE_NAMES = ["x", "y", "z", "gripper"]
ACTION_NAMES = ["dx", "dy", "dz", "grip"]


def make_meta(**overrides: object) -> EpisodeMeta:
    fields: dict[str, object] = dict(
        dataset="demo",
        task="pick",
        instruction="pick up the red cube",
        source="teleop",
        fps=30,
        cameras=list(CAMERAS),
        state_names=list(STATE_NAMES),
        action_names=list(ACTION_NAMES),
        operator="alice",
        seed=1234,
        extra={"colour": "red", "cube_size": 0.04},
    )
    fields.update(overrides)
    return EpisodeMeta(**fields)  # type: ignore[arg-type]


def synthetic_image(i: int, height: int, width: int) -> np.ndarray:
    """A smooth moving gradient (H, W, 3) uint8: codec-friendly, different every frame."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 128 + 100 * np.sin((xx + 2 * i) / 17.0)
    g = 128 + 100 * np.cos((yy - i) / 23.0)
    b = np.full_like(xx, 40 + (3 * i) % 180)
    return np.stack([r, g, b], axis=-1).round().astype(np.uint8)


def synthetic_step(i: int, cameras: list[CameraSpec] = CAMERAS, rng: np.random.Generator | None = None) -> dict:
    rng = rng or np.random.default_rng(i)
    return dict(
        images={c.name: synthetic_image(i, c.height, c.width) for c in cameras},
        state=rng.standard_normal(len(STATE_NAMES)).astype(np.float32),
        action=rng.standard_normal(len(ACTION_NAMES)).astype(np.float32),
    )


def record_episode(store: EpisodeStore, n: int = 40, *, auto_success: bool | None = True, **meta: object) -> int:
    rec = store.begin(make_meta(**meta))
    for i in range(n):
        rec.add_frame(**synthetic_step(i))
    return rec.save(auto_success=auto_success)


def race_edits(store: EpisodeStore, episode_id: int, writers: int) -> list[str]:
    """`writers` threads, each with its own AnnotationService, released together to edit the episode's notes on
    version 1; returns each one's outcome, "ok" or "conflict"."""
    from storage.annotations import AnnotationService
    from storage.errors import ConflictError

    results: list[str] = []
    barrier = threading.Barrier(writers)

    def write(i: int) -> None:
        service = AnnotationService(store._sf)
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


def db_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'vla.db'}"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def engine(data_dir: Path) -> Iterator[Engine]:
    eng = make_engine(db_url(data_dir))
    upgrade_database(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def store(data_dir: Path, session_factory: sessionmaker[Session]) -> EpisodeStore:
    s = EpisodeStore(data_dir, session_factory)
    s.recover()
    return s


@pytest.fixture(scope="session")
def h() -> SimpleNamespace:
    """The helpers above for test modules (tests/ is not a package, so they cannot import conftest)."""
    return SimpleNamespace(
        CAMERAS=CAMERAS,
        STATE_NAMES=STATE_NAMES,
        ACTION_NAMES=ACTION_NAMES,
        make_meta=make_meta,
        synthetic_image=synthetic_image,
        synthetic_step=synthetic_step,
        record_episode=record_episode,
        race_edits=race_edits,
        db_url=db_url,
    )
