"""What every test folder shares: one way to open a throwaway episode store, one synthetic-episode factory and a
fake clock. tests/ is not a package; pytest puts this folder on sys.path for tests/conftest.py, so `import helpers`
(or `from helpers import ...`) works from any test module."""

from __future__ import annotations

import socket
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from storage.db import make_engine, make_session_factory, upgrade_database
from storage.episode_store import CameraSpec, EpisodeMeta, EpisodeStore

CAMERAS = [CameraSpec("front", 96, 96), CameraSpec("wrist", 64, 64)]
STATE_NAMES = ["x", "y", "z", "gripper"]
ACTION_NAMES = ["dx", "dy", "dz", "grip"]


# ---------------------------------------------------------------- the store
def db_url(data_dir: Path) -> str:
    """The SQLite file a data dir gets by default (as Settings.database_url)."""
    return f"sqlite:///{Path(data_dir) / 'vla.db'}"


def migrated_engine(url: str) -> Engine:
    """An engine on `url` with the schema upgraded to head."""
    engine = make_engine(url)
    upgrade_database(engine)
    return engine


def open_store(
    data_dir: Path,
    url: str | None = None,
    *,
    session_factory: sessionmaker[Session] | None = None,
    recover: bool = True,
) -> EpisodeStore:
    """An EpisodeStore in `data_dir` on a migrated database: SQLite in data_dir/vla.db unless `url` (or an open
    `session_factory`) is given. The engine it opens is disposed when the store is garbage-collected."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    if session_factory is None:
        engine = migrated_engine(url or db_url(data_dir))
        session_factory = make_session_factory(engine)
    else:
        engine = None
    store = EpisodeStore(data_dir, session_factory)
    if engine is not None:
        weakref.finalize(store, engine.dispose)
    if recover:
        store.recover()
    return store


# ---------------------------------------------------------------- synthetic episodes
def make_meta(**overrides: object) -> EpisodeMeta:
    """A complete EpisodeMeta (two cameras, 4-D state and action, a seed, extra fields), `overrides` on top."""
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


def synthetic_step(
    i: int, cameras: Sequence[CameraSpec] = CAMERAS, rng: np.random.Generator | None = None
) -> dict[str, object]:
    """Frame i as add_frame() takes it: a gradient per camera, seeded-noise state (4,) and action (4,)."""
    rng = rng or np.random.default_rng(i)
    return dict(
        images={c.name: synthetic_image(i, c.height, c.width) for c in cameras},
        state=rng.standard_normal(len(STATE_NAMES)).astype(np.float32),
        action=rng.standard_normal(len(ACTION_NAMES)).astype(np.float32),
    )


Step = Callable[[int, Sequence[CameraSpec]], dict[str, object]]


def record_episode(
    store: EpisodeStore,
    n: int = 40,
    *,
    step: Step = synthetic_step,
    auto_success: bool | None = True,
    human_success: bool | None = None,
    **meta: object,
) -> int:
    """Record `n` frames through the real recorder and save them; returns the episode id.

    step(i, cameras) gives frame i as add_frame() keyword arguments (images, state, action); `meta` overrides
    make_meta()'s fields (cameras, state_names, dataset, task, instruction, operator, ...).
    """
    episode_meta = make_meta(**meta)
    recorder = store.begin(episode_meta)
    for i in range(n):
        recorder.add_frame(**step(i, episode_meta.cameras))
    return recorder.save(auto_success=auto_success, human_success=human_success)


# ---------------------------------------------------------------- time
class FakeClock:
    """A monotonic clock that moves only when a test says so: `clock()` reads it, `clock.advance(s)` moves it."""

    def __init__(self, start: float = 100.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t


# ---------------------------------------------------------------- saved policies
TINY_POLICY_KWARGS: dict[str, object] = dict(
    cameras=("front",),
    image_size=32,
    state_dim=2,
    action_dim=2,
    chunk_size=2,
    d_model=32,
    n_heads=2,
    n_layers=1,
    n_decoder_layers=1,
    intermediate_size=64,
    vision_channels=(8, 16, 32),
    n_text_layers=1,
    max_text_len=16,
    uncertainty_samples=2,
    head_hidden=32,
    relative_action_dims=0,
)


def save_tiny_policy(folder: Path, *, training_metadata: dict | None = None, metrics_lines: int = 0) -> Path:
    """The smallest loadable vla_tiny save_pretrained folder (untrained, ~0.3 MB), as the trainer leaves it:
    training_metadata.json when given, `metrics_lines` records of metrics.jsonl, and a checkpoints/ folder
    (which is not part of the model). Returns `folder`."""
    import json

    from vla_core.policies import make_policy

    policy = make_policy("vla_tiny", **TINY_POLICY_KWARGS)
    policy.save_pretrained(folder)
    if training_metadata is not None:
        (folder / "training_metadata.json").write_text(json.dumps(training_metadata))
    if metrics_lines:
        records = [{"step": 10 * (i + 1), "loss": 1.0 / (i + 1), "val_loss": None} for i in range(metrics_lines)]
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    checkpoint = folder / "checkpoints" / "step_000010"
    checkpoint.mkdir(parents=True)
    (checkpoint / "training_state.pt").write_bytes(b"optimizer state")
    return folder


def load_postgres_fixtures(module_name: str):
    """tests/storage/test_postgres.py's throwaway server and per-test database, reused as they are. Assign its
    `pg_server` and `pg_url` to module globals of the same names so pytest finds the fixtures there."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parent / "storage" / "test_postgres.py"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def postgres_available() -> bool:
    """A PostgreSQL server can be started here (initdb on the PATH or in Debian's folder, and psycopg installed)."""
    import glob
    import importlib.util
    import shutil

    binaries = shutil.which("initdb") or glob.glob("/usr/lib/postgresql/*/bin/initdb")
    return bool(binaries) and importlib.util.find_spec("psycopg") is not None


# ---------------------------------------------------------------- processes
def free_port() -> int:
    """A TCP port nothing listens on now (tests/e2e/serve.py keeps its own: bench/ imports that module alone)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
