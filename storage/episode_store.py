"""The episode file store: record takes to MP4 + Parquet on disk and register them in SQL, crash-safely.

Layout under ``data_dir``::

    episodes/<dataset>/<uid>/data.parquet        per-step table (timestamp, frame_index, observation.state, action)
    episodes/<dataset>/<uid>/videos/<camera>.mp4 H.264, one per camera, pts = frame index
    episodes/<dataset>/<uid>/episode.json        manifest: the SQL row's fields + {relative file: sha256}
    tmp/<uid>/                                   a take being recorded or saved (same filesystem as episodes/)
    tmp/<uid>.trash/                             an episode being deleted
    lost+found/<dataset>__<uid>/                 an unregistered folder recover() could not verify (kept for a human)

Commit protocol (files first, then the row)::

    record into tmp/<uid>/ -> flush encoders -> write parquet -> sha256 -> write manifest -> fsync files + dir
    -> os.rename(tmp/<uid>, episodes/<dataset>/<uid>) -> fsync parents -> INSERT row, COMMIT

Why this order rather than "row first with a pending flag": the app lists episodes from SQL only, so a folder
without a row is invisible, while a row without its files would be listed and then fail to load. The rename is
atomic on one filesystem, so ``episodes/`` only ever holds complete, fsynced folders. The one window left, killed
between the rename and the COMMIT, leaves a complete folder with no row; its manifest carries everything the row
needs, so ``recover()`` verifies the checksums and inserts it (the user pressed save and the data is whole, so it
is kept). It is idempotent: ``uid`` and ``path`` are unique, so a folder is never registered twice. A kill before
the rename leaves only ``tmp/`` debris, which ``recover()`` deletes. The same reasoning covers SQLite in WAL mode
with ``synchronous=NORMAL`` losing the last commit on power loss: the folder is re-registered.

``save()`` either returns an id (row committed, files in place) or raises: having left nothing behind when it
failed before the rename, or keeping the complete folder for ``recover()`` when only the INSERT failed.
``recover()`` runs at every start-up; it leaves alone every take that is live in this or another process (each
take holds an flock on ``tmp/<uid>.lock``, which the kernel releases when its process dies, even by SIGKILL), so a
CLI command started while the server records cannot delete the server's take.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storage import features
from storage.errors import (
    EmptyEpisodeError,
    FormatError,
    InvalidNameError,
    NotFoundError,
    RecorderClosedError,
    RecordingError,
)
from storage.models import NAME_MAX_LEN, Dataset, Episode, EpisodeSource, utcnow
from storage.video import EncoderSettings, VideoEncoderThread, read_video

EPISODES_DIR = "episodes"
TMP_DIR = "tmp"
LOST_DIR = "lost+found"
TABLE_FILE = "data.parquet"
VIDEOS_DIR = "videos"
MANIFEST_FILE = "episode.json"
MANIFEST_FORMAT = "vla-episode"
MANIFEST_VERSION = 1
TRASH_SUFFIX = ".trash"
LOCK_SUFFIX = ".lock"  # tmp/<uid>.lock: flock held by the process recording that take

# Column names of the per-step table, the same as the LeRobot dataset format.
COL_TIMESTAMP = features.TIMESTAMP
COL_FRAME_INDEX = features.FRAME_INDEX
COL_STATE = features.OBS_STATE
COL_ACTION = features.ACTION

MAX_FPS = 1000
MAX_IMAGE_SIDE = 4096

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_UID_RE = re.compile(r"[0-9a-f]{32}")


def _fault_point(name: str) -> None:
    """No-op in production; the crash tests replace it to pause (then SIGKILL) at a named step of save()."""


def validate_name(name: object, what: str = "dataset name") -> str:
    """Return ``name`` if it is a plain identifier usable as a folder name, else raise InvalidNameError."""
    rule = f"use 1-{NAME_MAX_LEN} letters, digits, '_', '.' or '-', not starting with '.'"
    if not isinstance(name, str):
        raise InvalidNameError(f"{what} must be a string, got {type(name).__name__}; {rule}")
    if not name:
        raise InvalidNameError(f"{what} is empty; {rule}")
    if len(name) > NAME_MAX_LEN:
        raise InvalidNameError(f"{what} {name[:20]!r}... is {len(name)} characters long; {rule}")
    if not _NAME_RE.fullmatch(name):
        bad = sorted({c for c in name if not _NAME_RE.fullmatch(c)})
        raise InvalidNameError(f"{what} {name!r} contains {''.join(bad)!r} (no path separators or spaces); {rule}")
    if name.startswith(".") or ".." in name:
        raise InvalidNameError(f"{what} {name!r} starts with '.' or contains '..'; {rule}")
    return name


@dataclass(frozen=True)
class CameraSpec:
    name: str
    height: int
    width: int

    def __iter__(self) -> Iterator[Any]:  # unpacks like a tuple: name, height, width = cam
        return iter((self.name, self.height, self.width))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "height": self.height, "width": self.width}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CameraSpec:
        return cls(name=d["name"], height=int(d["height"]), width=int(d["width"]))


@dataclass
class EpisodeMeta:
    """What is known about a take when recording starts."""

    dataset: str
    task: str
    instruction: str
    source: str
    fps: int
    cameras: list[CameraSpec]
    state_names: list[str]
    action_names: list[str]
    operator: str | None = None
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EpisodeInfo:
    """A saved episode, detached from any session."""

    id: int
    uid: str
    dataset: str
    task: str
    instruction: str
    source: str
    fps: int
    length: int  # frames
    cameras: list[CameraSpec]
    state_names: list[str]
    action_names: list[str]
    operator: str | None
    seed: int | None
    auto_success: bool | None
    human_success: bool | None
    created_at: datetime
    path: str  # posix, relative to the data dir
    checksums: dict[str, str]
    extra: dict[str, Any]

    @property
    def duration(self) -> float:
        return self.length / self.fps


@dataclass(frozen=True)
class DatasetInfo:
    id: int
    name: str
    description: str
    created_at: datetime
    num_episodes: int


@dataclass(frozen=True)
class EpisodeFiles:
    """Absolute paths of one episode's files."""

    root: Path
    table: Path
    videos: dict[str, Path]
    manifest: Path


@dataclass
class RecoveryReport:
    removed_temp: list[str] = field(default_factory=list)  # tmp/ leftovers of killed takes, deleted
    recovered: list[int] = field(default_factory=list)  # ids of complete folders registered from their manifest
    quarantined: list[str] = field(default_factory=list)  # "path: reason", moved to lost+found/
    finished_deletes: list[str] = field(default_factory=list)  # uids whose interrupted delete was completed

    @property
    def changed(self) -> bool:
        return bool(self.removed_temp or self.recovered or self.quarantined or self.finished_deletes)

    def __str__(self) -> str:
        if not self.changed:
            return "store clean: nothing to recover"
        parts = []
        if self.removed_temp:
            parts.append(f"removed {len(self.removed_temp)} unfinished take(s) from tmp/")
        if self.recovered:
            parts.append(f"registered {len(self.recovered)} saved-but-unregistered episode(s): ids {self.recovered}")
        if self.finished_deletes:
            parts.append(f"finished {len(self.finished_deletes)} interrupted delete(s)")
        if self.quarantined:
            parts.append(f"moved {len(self.quarantined)} unverifiable folder(s) to {LOST_DIR}/: {self.quarantined}")
        return "; ".join(parts)


def _as_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(value)


def _names(values: object, what: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"{what} must be a non-empty list of strings, got {values!r}")
    out = [str(v) for v in values]
    if any(not isinstance(v, str) or not v for v in values):
        raise ValueError(f"{what} must contain non-empty strings, got {values!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"{what} has duplicates: {out}")
    return out


def validate_meta(meta: EpisodeMeta) -> EpisodeMeta:
    """Check every field and return a normalised copy (plain types, source as its string value)."""
    dataset = validate_name(meta.dataset, "dataset name")
    task = validate_name(meta.task, "task name")
    if not isinstance(meta.instruction, str):
        raise ValueError(f"instruction must be a string, got {type(meta.instruction).__name__}")
    try:
        source = EpisodeSource(meta.source).value
    except ValueError:
        allowed = ", ".join(s.value for s in EpisodeSource)
        raise ValueError(f"source {meta.source!r} is not one of: {allowed}") from None
    fps = _as_int(meta.fps, "fps")
    if not 0 < fps <= MAX_FPS:
        raise ValueError(f"fps must be in 1..{MAX_FPS}, got {fps}")
    if not isinstance(meta.cameras, Sequence) or not meta.cameras:
        raise ValueError("cameras must be a non-empty list of CameraSpec(name, height, width)")
    cameras: list[CameraSpec] = []
    for cam in meta.cameras:
        if isinstance(cam, Mapping):
            cam = CameraSpec.from_dict(cam)
        if not isinstance(cam, CameraSpec):
            raise ValueError(f"cameras must hold CameraSpec(name, height, width), got {cam!r}")
        name = validate_name(cam.name, "camera name")
        h, w = _as_int(cam.height, f"camera {name!r} height"), _as_int(cam.width, f"camera {name!r} width")
        for side, v in (("height", h), ("width", w)):
            if not 2 <= v <= MAX_IMAGE_SIDE or v % 2:
                raise ValueError(
                    f"camera {name!r} {side} must be even and in 2..{MAX_IMAGE_SIDE} (H.264 yuv420p), got {v}"
                )
        cameras.append(CameraSpec(name, h, w))
    if len({c.name for c in cameras}) != len(cameras):
        raise ValueError(f"camera names must be unique, got {[c.name for c in cameras]}")
    state_names = _names(meta.state_names, "state_names")
    action_names = _names(meta.action_names, "action_names")
    if meta.operator is not None and (not isinstance(meta.operator, str) or not 0 < len(meta.operator) <= 128):
        raise ValueError(f"operator must be None or a 1-128 character string, got {meta.operator!r}")
    seed = None if meta.seed is None else _as_int(meta.seed, "seed")
    if seed is not None and not -(2**63) <= seed < 2**63:
        raise ValueError(f"seed must fit in 64 bits, got {seed}")
    if not isinstance(meta.extra, Mapping):
        raise ValueError(f"extra must be a dict, got {type(meta.extra).__name__}")
    try:
        extra = json.loads(json.dumps(dict(meta.extra), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"extra must be JSON-serialisable (str keys, finite numbers): {exc}") from None
    return EpisodeMeta(
        dataset=dataset,
        task=task,
        instruction=meta.instruction,
        source=source,
        fps=fps,
        cameras=cameras,
        state_names=state_names,
        action_names=action_names,
        operator=meta.operator,
        seed=seed,
        extra=extra,
    )


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rel_files(root: Path) -> list[str]:
    """Every regular file under root as a posix path relative to it (symlinks count as files, not followed)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            out.append((Path(dirpath) / name).relative_to(root).as_posix())
        # symlinked directories show up in dirnames but are not walked into; report them as entries
        for d in list(dirnames):
            if (Path(dirpath) / d).is_symlink():
                out.append((Path(dirpath) / d).relative_to(root).as_posix())
    return out


def expected_files(cameras: Sequence[CameraSpec]) -> set[str]:
    return {TABLE_FILE} | {f"{VIDEOS_DIR}/{c.name}.mp4" for c in cameras}


class EpisodeStore:
    """Episodes on disk under ``data_dir`` plus their rows in SQL (one data dir per database)."""

    def __init__(
        self, data_dir: Path | str, session_factory: sessionmaker[Session], *, encoder: EncoderSettings | None = None
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._sf = session_factory
        self.encoder = encoder or EncoderSettings()
        self._active: dict[str, EpisodeRecorder] = {}
        self._take_locks: dict[str, int] = {}  # uid -> fd holding the flock on tmp/<uid>.lock
        self._lock = threading.Lock()
        # pyarrow imports pandas lazily on the first pa.array() from numpy (~0.4 s on this machine); pay it at
        # start-up rather than inside the first save().
        pa.array(np.zeros(1, dtype=np.float32))

    # -- paths ---------------------------------------------------------------------------------------------------
    @property
    def episodes_dir(self) -> Path:
        return self.data_dir / EPISODES_DIR

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / TMP_DIR

    @property
    def lost_dir(self) -> Path:
        return self.data_dir / LOST_DIR

    def active_uids(self) -> set[str]:
        """Takes being recorded by this process."""
        with self._lock:
            return set(self._active)

    def live_uids(self) -> set[str]:
        """Takes being recorded by this or any other process (e.g. the server while a CLI command runs).

        Each take holds an exclusive flock on ``tmp/<uid>.lock`` while it lives; the kernel drops it when the
        process dies, even by SIGKILL, so a lock that can be taken belongs to a dead take.
        """
        live = self.active_uids()
        if self.tmp_dir.exists():
            for lock_path in self.tmp_dir.glob(f"*{LOCK_SUFFIX}"):
                uid = lock_path.name.removesuffix(LOCK_SUFFIX)
                if uid not in live and _lock_is_held(lock_path):
                    live.add(uid)
        return live

    # -- datasets ------------------------------------------------------------------------------------------------
    def ensure_dataset(self, name: str, description: str = "") -> int:
        """Id of the dataset ``name``, creating it if missing (an existing description is kept)."""
        validate_name(name, "dataset name")
        with self._sf.begin() as session:
            return self._dataset_id(session, name, description, create=True)

    @staticmethod
    def _dataset_id(session: Session, name: str, description: str = "", *, create: bool) -> int:
        ds_id = session.scalar(select(Dataset.id).where(Dataset.name == name))
        if ds_id is not None:
            return ds_id
        if not create:
            raise NotFoundError(f"no dataset named {name!r}")
        # INSERT .. ON CONFLICT DO NOTHING: another process may create the same dataset at the same moment.
        # (Not a SAVEPOINT: pysqlite's legacy transaction handling makes savepoints unreliable.)
        dialect = session.get_bind().dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:  # pragma: no cover - only SQLite and PostgreSQL are supported
            session.add(Dataset(name=name, description=description))
            session.flush()
            return session.scalar(select(Dataset.id).where(Dataset.name == name))
        session.execute(
            insert(Dataset)
            .values(name=name, description=description, created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["name"])
        )
        ds_id = session.scalar(select(Dataset.id).where(Dataset.name == name))
        if ds_id is None:  # pragma: no cover
            raise RuntimeError(f"dataset {name!r} vanished right after it was created")
        return ds_id

    def list_datasets(self) -> list[DatasetInfo]:
        from sqlalchemy import func

        with self._sf() as session:
            rows = session.execute(
                select(Dataset, func.count(Episode.id))
                .outerjoin(Episode, Episode.dataset_id == Dataset.id)
                .group_by(Dataset.id)
                .order_by(Dataset.name)
            ).all()
            return [DatasetInfo(d.id, d.name, d.description, d.created_at, n) for d, n in rows]

    # -- reading ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _info(ep: Episode, dataset: str) -> EpisodeInfo:
        return EpisodeInfo(
            id=ep.id,
            uid=ep.uid,
            dataset=dataset,
            task=ep.task,
            instruction=ep.instruction,
            source=EpisodeSource(ep.source).value,
            fps=ep.fps,
            length=ep.length,
            cameras=[CameraSpec.from_dict(c) for c in ep.cameras],
            state_names=list(ep.state_names),
            action_names=list(ep.action_names),
            operator=ep.operator,
            seed=ep.seed,
            auto_success=ep.auto_success,
            human_success=ep.human_success,
            created_at=ep.created_at,
            path=ep.path,
            checksums=dict(ep.checksums),
            extra=dict(ep.extra),
        )

    def list_episodes(self, dataset: str | None = None) -> list[EpisodeInfo]:
        """Saved episodes, oldest first; only one dataset if named (NotFoundError if it does not exist)."""
        with self._sf() as session:
            query = select(Episode, Dataset.name).join(Dataset, Episode.dataset_id == Dataset.id)
            if dataset is not None:
                ds_id = self._dataset_id(session, dataset, create=False)
                query = query.where(Episode.dataset_id == ds_id)
            rows = session.execute(query.order_by(Episode.created_at, Episode.id)).all()
            return [self._info(ep, name) for ep, name in rows]

    def get_episode(self, episode_id: int) -> EpisodeInfo:
        with self._sf() as session:
            row = session.execute(
                select(Episode, Dataset.name)
                .join(Dataset, Episode.dataset_id == Dataset.id)
                .where(Episode.id == episode_id)
            ).first()
            if row is None:
                raise NotFoundError(f"no episode with id {episode_id}")
            return self._info(row[0], row[1])

    def _files(self, info: EpisodeInfo) -> EpisodeFiles:
        root = self.data_dir / info.path
        return EpisodeFiles(
            root=root,
            table=root / TABLE_FILE,
            videos={c.name: root / VIDEOS_DIR / f"{c.name}.mp4" for c in info.cameras},
            manifest=root / MANIFEST_FILE,
        )

    def episode_files(self, episode_id: int) -> EpisodeFiles:
        return self._files(self.get_episode(episode_id))

    def read_table(self, episode_id: int) -> pa.Table:
        """The per-step table: timestamp (float32), frame_index (int64), observation.state and action
        (fixed-size lists of float32)."""
        return pq.read_table(self.episode_files(episode_id).table)

    def read_frames(self, episode_id: int, camera: str) -> np.ndarray:
        """Decode one camera's video: (T, H, W, 3) uint8 RGB."""
        files = self.episode_files(episode_id)
        if camera not in files.videos:
            raise NotFoundError(f"episode {episode_id} has no camera {camera!r}; it has {sorted(files.videos)}")
        return read_video(files.videos[camera])

    # -- recording -------------------------------------------------------------------------------------------------
    def begin(self, meta: EpisodeMeta) -> EpisodeRecorder:
        """Validate ``meta`` (nothing is written if it is wrong) and start a take in ``tmp/<uid>/``."""
        meta = validate_meta(meta)
        uid = uuid.uuid4().hex
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        lock_fd = _acquire_lock(self.tmp_dir / f"{uid}{LOCK_SUFFIX}")
        try:
            recorder = EpisodeRecorder(self, meta, uid)
        except BaseException:
            _release_lock(lock_fd, self.tmp_dir / f"{uid}{LOCK_SUFFIX}")
            raise
        with self._lock:
            self._active[uid] = recorder
            self._take_locks[uid] = lock_fd
        return recorder

    def _forget(self, uid: str) -> None:
        """The take ended (saved, discarded or failed): drop it and release its lock file."""
        with self._lock:
            self._active.pop(uid, None)
            lock_fd = self._take_locks.pop(uid, None)
        if lock_fd is not None:
            _release_lock(lock_fd, self.tmp_dir / f"{uid}{LOCK_SUFFIX}")

    def _insert(self, manifest: Mapping[str, Any], rel_path: str) -> int:
        with self._sf.begin() as session:
            ds_id = self._dataset_id(session, manifest["dataset"], create=True)
            ep = Episode(
                uid=manifest["uid"],
                dataset_id=ds_id,
                task=manifest["task"],
                instruction=manifest["instruction"],
                source=EpisodeSource(manifest["source"]),
                operator=manifest["operator"],
                seed=manifest["seed"],
                fps=manifest["fps"],
                length=manifest["length"],
                auto_success=manifest["auto_success"],
                human_success=manifest["human_success"],
                created_at=datetime.fromisoformat(manifest["created_at"]),
                path=rel_path,
                checksums=dict(manifest["checksums"]),
                cameras=list(manifest["cameras"]),
                state_names=list(manifest["state_names"]),
                action_names=list(manifest["action_names"]),
                extra=dict(manifest["extra"]),
            )
            session.add(ep)
            session.flush()
            return ep.id

    # -- deleting --------------------------------------------------------------------------------------------------
    def delete_episode(self, episode_id: int) -> None:
        """Remove an episode's row and files. Files go to tmp/<uid>.trash first, so a kill mid-way is finished by
        recover() instead of leaving a row without files or files without a row."""
        info = self.get_episode(episode_id)
        src = self.data_dir / info.path
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        trash = self.tmp_dir / f"{info.uid}{TRASH_SUFFIX}"
        moved = False
        if src.exists():
            os.rename(src, trash)
            moved = True
        try:
            with self._sf.begin() as session:
                session.execute(delete(Episode).where(Episode.id == episode_id))
        except BaseException:
            if moved:
                os.rename(trash, src)
            raise
        shutil.rmtree(trash, ignore_errors=True)

    # -- start-up recovery and health ----------------------------------------------------------------------------
    def recover(self) -> RecoveryReport:
        """Clean up after a killed process. Run at start-up, before recording.

        * ``tmp/<uid>/`` (a take being recorded or saved when the process died): deleted.
        * ``tmp/<uid>.trash/`` (an interrupted delete): its row is deleted if still there, then the folder.
        * ``episodes/<dataset>/<uid>/`` without a row (killed between rename and commit): registered if its
          manifest and checksums verify, else moved to ``lost+found/`` (never deleted: it may be someone's data).
        Folders that do not look like ours (name not a uid) are left for ``check()`` to report.
        """
        report = RecoveryReport()
        for d in (self.episodes_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        live = self.live_uids()  # takes another process is recording right now are left alone
        for entry in sorted(self.tmp_dir.iterdir()):
            if entry.name.removesuffix(LOCK_SUFFIX).removesuffix(TRASH_SUFFIX) in live:
                continue
            if entry.name.endswith(LOCK_SUFFIX):  # the lock file of a dead take
                entry.unlink(missing_ok=True)
                continue
            uid = entry.name.removesuffix(TRASH_SUFFIX)
            if entry.name.endswith(TRASH_SUFFIX) and _UID_RE.fullmatch(uid):
                with self._sf.begin() as session:
                    gone = session.execute(delete(Episode).where(Episode.uid == uid)).rowcount
                if gone:
                    report.finished_deletes.append(uid)
            _remove(entry)
            report.removed_temp.append(f"{TMP_DIR}/{entry.name}")
        with self._sf() as session:
            registered = set(session.scalars(select(Episode.path)))
        for ds_dir in sorted(self.episodes_dir.iterdir()):
            if not ds_dir.is_dir() or ds_dir.is_symlink():
                continue
            for ep_dir in sorted(ds_dir.iterdir()):
                rel = f"{EPISODES_DIR}/{ds_dir.name}/{ep_dir.name}"
                if rel in registered or not _UID_RE.fullmatch(ep_dir.name) or not ep_dir.is_dir():
                    continue
                try:
                    manifest = verify_episode_folder(ep_dir, dataset=ds_dir.name)
                    report.recovered.append(self._insert(manifest, rel))
                except (FormatError, IntegrityError) as exc:
                    self.lost_dir.mkdir(parents=True, exist_ok=True)
                    target = self.lost_dir / f"{ds_dir.name}__{ep_dir.name}"
                    os.rename(ep_dir, target)
                    report.quarantined.append(f"{rel}: {exc}")
        _fsync_path(self.tmp_dir)
        return report

    def check(self, *, verify_checksums: bool = True) -> list[str]:
        """Human-readable problems of the store; [] when healthy. See storage.checks.check_store."""
        from storage.checks import check_store

        return check_store(self, verify_checksums=verify_checksums)


def _acquire_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh uuid: nobody else can hold it
    return fd


def _release_lock(fd: int, path: Path) -> None:
    path.unlink(missing_ok=True)  # unlink first, so recover() never sees the file unlocked while we own it
    os.close(fd)


def _lock_is_held(path: Path) -> bool:
    """Whether another open file description holds an exclusive flock on ``path`` (its take is alive)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def verify_episode_folder(root: Path, *, dataset: str | None = None) -> dict[str, Any]:
    """Check a folder against its manifest (fields, file set, sha256) and return the manifest; FormatError if not."""
    manifest_path = root / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FormatError(f"{root.name}: no {MANIFEST_FILE}") from None
    except (OSError, ValueError) as exc:
        raise FormatError(f"{root.name}: unreadable {MANIFEST_FILE}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise FormatError(f"{root.name}: {MANIFEST_FILE} is not a {MANIFEST_FORMAT} manifest")
    if manifest.get("version") != MANIFEST_VERSION:
        raise FormatError(f"{root.name}: manifest version {manifest.get('version')!r}, expected {MANIFEST_VERSION}")
    try:
        meta = validate_meta(
            EpisodeMeta(
                dataset=manifest["dataset"],
                task=manifest["task"],
                instruction=manifest["instruction"],
                source=manifest["source"],
                fps=manifest["fps"],
                cameras=[CameraSpec.from_dict(c) for c in manifest["cameras"]],
                state_names=manifest["state_names"],
                action_names=manifest["action_names"],
                operator=manifest["operator"],
                seed=manifest["seed"],
                extra=manifest["extra"],
            )
        )
        length = _as_int(manifest["length"], "length")
        datetime.fromisoformat(manifest["created_at"])
        checksums = dict(manifest["checksums"])
        for key in ("auto_success", "human_success"):
            if manifest[key] is not None and not isinstance(manifest[key], bool):
                raise ValueError(f"{key} must be true, false or null")
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"{root.name}: bad manifest field: {exc}") from None
    if manifest.get("uid") != root.name:
        raise FormatError(f"{root.name}: manifest uid {manifest.get('uid')!r} does not match the folder name")
    if dataset is not None and meta.dataset != dataset:
        raise FormatError(f"{root.name}: manifest dataset {meta.dataset!r} but the folder is under {dataset!r}")
    if length <= 0:
        raise FormatError(f"{root.name}: length {length}")
    present = set(_rel_files(root)) - {MANIFEST_FILE}
    want = expected_files(meta.cameras)
    if set(checksums) != want:
        raise FormatError(f"{root.name}: manifest lists {sorted(checksums)}, expected {sorted(want)}")
    if present != want:
        raise FormatError(
            f"{root.name}: missing {sorted(want - present)}, unexpected {sorted(present - want)}"
            if want - present or present - want
            else f"{root.name}: file set mismatch"
        )
    for rel, digest in sorted(checksums.items()):
        actual = sha256_file(root / rel)
        if actual != digest:
            raise FormatError(f"{root.name}: {rel} sha256 {actual[:12]}... != manifest {str(digest)[:12]}...")
    manifest.update(asdict_meta(meta))
    return manifest


def asdict_meta(meta: EpisodeMeta) -> dict[str, Any]:
    d = asdict(meta)
    d["cameras"] = [c.to_dict() for c in meta.cameras]
    return d


class EpisodeRecorder:
    """One take in progress. ``add_frame`` validates on the caller's thread, copies the images and hands them to
    one encoder thread per camera (bounded queue: if encoders ever fall 10 s behind, add_frame waits rather than
    drop frames, so video and table never disagree). Use as a context manager to discard on error.
    """

    def __init__(self, store: EpisodeStore, meta: EpisodeMeta, uid: str) -> None:
        self._store = store
        self.meta = meta
        self.uid = uid
        self.created_at = utcnow()
        self._t0 = time.monotonic()
        self._states: list[np.ndarray] = []
        self._actions: list[np.ndarray] = []
        self._timestamps: list[float] = []
        self._status = "recording"  # -> saved | discarded | failed
        self._failure: BaseException | None = None
        self._lock = threading.Lock()
        self._cams = {c.name: c for c in meta.cameras}
        self._n_state = len(meta.state_names)
        self._n_action = len(meta.action_names)
        self.tmp_path = store.tmp_dir / uid
        self._encoders: dict[str, VideoEncoderThread] = {}
        (store.episodes_dir).mkdir(parents=True, exist_ok=True)
        (self.tmp_path / VIDEOS_DIR).mkdir(parents=True)
        try:
            for cam in meta.cameras:
                self._encoders[cam.name] = VideoEncoderThread(
                    self.tmp_path / VIDEOS_DIR / f"{cam.name}.mp4",
                    fps=meta.fps,
                    height=cam.height,
                    width=cam.width,
                    settings=store.encoder,
                )
        except BaseException:
            self._abort_encoders()
            shutil.rmtree(self.tmp_path, ignore_errors=True)
            raise

    # -- state ---------------------------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return len(self._timestamps)

    @property
    def frames_dropped(self) -> int:
        """Always 0: the recorder applies backpressure instead of dropping (see class docstring)."""
        return 0

    @property
    def elapsed(self) -> float:
        """Wall-clock seconds since begin()."""
        return time.monotonic() - self._t0

    @property
    def duration(self) -> float:
        """Recorded seconds (num_frames / fps)."""
        return self.num_frames / self.meta.fps

    @property
    def status(self) -> str:
        return self._status

    @property
    def stats(self) -> dict[str, Any]:
        """Encoder counters per camera (encoded, backlog, max_backlog, producer_wait_s, encode_s)."""
        return {
            name: {
                "encoded": e.stats.encoded,
                "backlog": e.backlog,
                "max_backlog": e.stats.max_backlog,
                "producer_wait_s": e.stats.producer_wait_s,
                "encode_s": e.stats.encode_s,
            }
            for name, e in self._encoders.items()
        }

    def _check_open(self) -> None:
        if self._status != "recording":
            raise RecorderClosedError(
                f"episode recorder {self.uid} is {self._status}; start a new take with EpisodeStore.begin()"
            )
        if self._failure is not None:
            raise RecordingError(f"recording failed earlier ({self._failure}); discard() this take") from (
                self._failure
            )

    def __enter__(self) -> EpisodeRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status == "recording":
            self.discard()

    # -- recording -----------------------------------------------------------------------------------------------
    def _vector(self, value: object, what: str, names: list[str]) -> np.ndarray:
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiu":
            raise ValueError(f"{what} must be numeric, got dtype {arr.dtype}")
        if arr.shape != (len(names),):
            raise ValueError(f"{what} must have shape ({len(names)},) to match {what}_names {names}, got {arr.shape}")
        out = arr.astype(np.float32)  # always a copy: the caller may reuse its buffer
        if not np.isfinite(out).all():
            bad = [names[i] for i in np.flatnonzero(~np.isfinite(out))]
            raise ValueError(f"{what} has NaN/inf (or a value beyond float32) in {bad}")
        return out

    def add_frame(
        self,
        *,
        images: Mapping[str, np.ndarray],
        state: np.ndarray | Sequence[float],
        action: np.ndarray | Sequence[float],
        timestamp: float | None = None,
    ) -> None:
        """Append one step. images: {camera: (H, W, 3) uint8}; state/action: (len(names),) finite numbers.

        Everything is checked before anything is stored: a ValueError leaves the take as it was.
        """
        with self._lock:
            self._check_open()
            if not isinstance(images, Mapping) or set(images) != set(self._cams):
                got = sorted(images) if isinstance(images, Mapping) else type(images).__name__
                raise ValueError(f"images must be a dict with exactly the cameras {sorted(self._cams)}, got {got}")
            frames: dict[str, np.ndarray] = {}
            for name, cam in self._cams.items():
                img = images[name]
                if not isinstance(img, np.ndarray):
                    raise ValueError(f"image {name!r} must be a numpy array, got {type(img).__name__}")
                if img.dtype != np.uint8:
                    raise ValueError(f"image {name!r} must be uint8 RGB, got dtype {img.dtype}")
                if img.shape != (cam.height, cam.width, 3):
                    raise ValueError(
                        f"image {name!r} must have shape ({cam.height}, {cam.width}, 3) (H, W, RGB), got {img.shape}"
                    )
                frames[name] = img
            st = self._vector(state, "state", self.meta.state_names)
            ac = self._vector(action, "action", self.meta.action_names)
            index = self.num_frames
            if timestamp is None:
                ts = index / self.meta.fps
            else:
                ts = float(timestamp)
                if not math.isfinite(ts) or ts < 0:
                    raise ValueError(f"timestamp must be a finite number >= 0, got {timestamp!r}")
                if self._timestamps and ts <= self._timestamps[-1]:
                    raise ValueError(f"timestamp {ts} is not after the previous one ({self._timestamps[-1]})")
            try:
                for name, img in frames.items():
                    self._encoders[name].put(np.array(img, dtype=np.uint8, order="C", copy=True))
            except BaseException as exc:
                # Some cameras may hold this frame and others not: the take is unusable.
                self._failure = exc
                raise
            self._states.append(st)
            self._actions.append(ac)
            self._timestamps.append(ts)

    def _table(self) -> pa.Table:
        n = self.num_frames
        states = np.stack(self._states)  # (T, S) float32
        actions = np.stack(self._actions)  # (T, A) float32
        table = pa.table(
            {
                COL_TIMESTAMP: pa.array(np.asarray(self._timestamps, dtype=np.float32)),
                COL_FRAME_INDEX: pa.array(np.arange(n, dtype=np.int64)),
                COL_STATE: pa.FixedSizeListArray.from_arrays(pa.array(states.reshape(-1)), self._n_state),
                COL_ACTION: pa.FixedSizeListArray.from_arrays(pa.array(actions.reshape(-1)), self._n_action),
            }
        )
        names = {"state_names": self.meta.state_names, "action_names": self.meta.action_names, "fps": self.meta.fps}
        return table.replace_schema_metadata({"vla_dashboard": json.dumps(names)})

    def save(self, *, auto_success: bool | None, human_success: bool | None = None) -> int:
        """Finish the take and register it; returns the episode id.

        An error before the files are in place leaves nothing behind; a database error after that keeps the
        complete folder for recover() and raises RecordingError saying so (a take is never thrown away).
        """
        with self._lock:
            self._check_open()
            if self.num_frames == 0:
                raise EmptyEpisodeError("no frames were recorded; add_frame() at least once or discard() the take")
            for what, v in (("auto_success", auto_success), ("human_success", human_success)):
                if v is not None and not isinstance(v, bool | np.bool_):
                    raise ValueError(f"{what} must be True, False or None, got {v!r}")
            auto = None if auto_success is None else bool(auto_success)
            human = None if human_success is None else bool(human_success)
            self._status = "saving"
            store = self._store
            rel = f"{EPISODES_DIR}/{self.meta.dataset}/{self.uid}"
            final = store.data_dir / rel
            moved = False
            try:
                for name, enc in self._encoders.items():
                    encoded = enc.close()
                    if encoded != self.num_frames:
                        raise RecordingError(f"camera {name!r}: encoded {encoded} of {self.num_frames} frames")
                pq.write_table(self._table(), self.tmp_path / TABLE_FILE)
                files = sorted(expected_files(self.meta.cameras))
                checksums = {rel_file: sha256_file(self.tmp_path / rel_file) for rel_file in files}
                manifest = {
                    "format": MANIFEST_FORMAT,
                    "version": MANIFEST_VERSION,
                    "uid": self.uid,
                    **asdict_meta(self.meta),
                    "length": self.num_frames,
                    "auto_success": auto,
                    "human_success": human,
                    "created_at": self.created_at.isoformat(),
                    "checksums": checksums,
                }
                manifest_path = self.tmp_path / MANIFEST_FILE
                manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
                for f in [*files, MANIFEST_FILE]:
                    _fsync_path(self.tmp_path / f)
                _fsync_path(self.tmp_path / VIDEOS_DIR)
                _fsync_path(self.tmp_path)
                _fault_point("before_move")
                final.parent.mkdir(parents=True, exist_ok=True)
                os.rename(self.tmp_path, final)
                moved = True
                _fsync_path(final.parent)
                _fsync_path(store.tmp_dir)
                _fault_point("after_move")
            except BaseException:
                self._status = "failed"
                self._abort_encoders()
                if moved:
                    shutil.rmtree(final, ignore_errors=True)
                shutil.rmtree(self.tmp_path, ignore_errors=True)
                store._forget(self.uid)
                raise
            try:
                episode_id = store._insert(manifest, rel)
                _fault_point("after_commit")
            except Exception as error:
                # The files are complete, verified and in place: keep them rather than lose the take. The
                # manifest lets recover() register the folder at the next start, as after a crash at this point.
                self._status = "failed"
                store._forget(self.uid)
                raise RecordingError(
                    f"episode files were saved to {final} but registering them in the database failed ({error}); "
                    "they will be registered by the store's recovery at the next start"
                ) from error
            self._status = "saved"
            store._forget(self.uid)
            return episode_id

    def _abort_encoders(self) -> None:
        for enc in self._encoders.values():
            enc.abort()

    def discard(self) -> None:
        """Throw the take away: stops the encoders and deletes its temp folder."""
        with self._lock:
            if self._status not in ("recording",):
                raise RecorderClosedError(f"episode recorder {self.uid} is {self._status}; nothing to discard")
            self._status = "discarded"
            try:
                self._abort_encoders()
                shutil.rmtree(self.tmp_path, ignore_errors=True)
            finally:
                self._store._forget(self.uid)
