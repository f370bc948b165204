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

import logging
import os
import shutil
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storage.episode_files import (
    acquire_lock,
    fsync_path,
    lock_is_held,
    release_lock,
    remove_path,
    verify_episode_folder,
)
from storage.episode_meta import (
    EPISODES_DIR,
    LOCK_SUFFIX,
    LOST_DIR,
    MANIFEST_FILE,
    TABLE_FILE,
    TMP_DIR,
    TRASH_SUFFIX,
    UID_RE,
    VIDEOS_DIR,
    CameraSpec,
    DatasetInfo,
    EpisodeFiles,
    EpisodeInfo,
    EpisodeMeta,
    RecoveryReport,
    validate_meta,
    validate_name,
)
from storage.episode_query import EpisodeQuery, build_count, build_select
from storage.episode_recorder import EpisodeRecorder
from storage.errors import (
    FormatError,
    NotFoundError,
)
from storage.models import (
    Dataset,
    Episode,
    EpisodeQualityFlag,
    EpisodeSource,
    FailureReason,
    QualityFlagName,
    utcnow,
)
from storage.quality import compute_quality_flags
from storage.video import EncoderSettings, read_video

log = logging.getLogger(__name__)

# The public API of the store, importable from here whatever module defines it.
__all__ = [
    "CameraSpec",
    "DatasetInfo",
    "EpisodeFiles",
    "EpisodeInfo",
    "EpisodeMeta",
    "EpisodeRecorder",
    "EpisodeStore",
    "RecoveryReport",
    "validate_meta",
    "validate_name",
]


def dataset_id(session: Session, name: str, description: str = "", *, create: bool) -> int:
    """Id of the dataset `name` in this session's transaction; created if missing when `create` (race-safe),
    else NotFoundError."""
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


class EpisodeStore:
    """Episodes on disk under ``data_dir`` plus their rows in SQL (one data dir per database).

    Public surface beyond reading, recording and deleting episodes:

    * ``session_factory``: the SQLAlchemy ``sessionmaker`` the store was built with, for the services that work
      on the same database (``AnnotationService(store.session_factory)``, ``SnapshotService(...)``, checks).
    * ``register(manifest, rel_path)``: insert the row of a complete folder already under ``episodes/`` (the
      recorder's last step of save(), and recover()).
    * ``end_take(uid)``: a take ended (saved, discarded or failed): drop it and release its lock file.
    """

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

    @property
    def session_factory(self) -> sessionmaker[Session]:
        """The sessionmaker of the store's database (``with store.session_factory.begin() as session: ...``)."""
        return self._sf

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
                if uid not in live and lock_is_held(lock_path):
                    live.add(uid)
        return live

    # -- datasets ------------------------------------------------------------------------------------------------
    def ensure_dataset(self, name: str, description: str = "") -> int:
        """Id of the dataset ``name``, creating it if missing (an existing description is kept)."""
        validate_name(name, "dataset name")
        with self._sf.begin() as session:
            return dataset_id(session, name, description, create=True)

    def list_datasets(self) -> list[DatasetInfo]:
        from sqlalchemy import func

        with self._sf() as session:
            rows = session.execute(
                select(Dataset, func.count(Episode.id))
                .outerjoin(Episode, (Episode.dataset_id == Dataset.id) & Episode.deleted_at.is_(None))
                .group_by(Dataset.id)
                .order_by(Dataset.name)
            ).all()
            return [DatasetInfo(d.id, d.name, d.description, d.created_at, n) for d, n in rows]

    # -- reading ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _info(ep: Episode, dataset: str, flags: Mapping[str, str] | None = None) -> EpisodeInfo:
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
            paraphrases=list(ep.paraphrases),
            segments=[dict(s) for s in ep.segments],
            failure_reason=None if ep.failure_reason is None else FailureReason(ep.failure_reason).value,
            notes=ep.notes,
            version=ep.version,
            deleted_at=ep.deleted_at,
            quality_flags=dict(flags or {}),
        )

    @staticmethod
    def _flags(session: Session, episode_ids: list[int]) -> dict[int, dict[str, str]]:
        """{episode id: {flag: detail}} for the given episodes (one query)."""
        out: dict[int, dict[str, str]] = {}
        for i in range(0, len(episode_ids), 500):  # stay far below SQLite's bound-parameter limit
            rows = session.execute(
                select(EpisodeQualityFlag).where(EpisodeQualityFlag.episode_id.in_(episode_ids[i : i + 500]))
            ).scalars()
            for row in rows:
                out.setdefault(row.episode_id, {})[QualityFlagName(row.flag).value] = row.detail
        return out

    def _infos(self, session: Session, rows: list[Any]) -> list[EpisodeInfo]:
        flags = self._flags(session, [ep.id for ep, _ in rows])
        return [self._info(ep, name, flags.get(ep.id)) for ep, name in rows]

    def list_episodes(self, dataset: str | None = None, *, include_trashed: bool = False) -> list[EpisodeInfo]:
        """Saved episodes, oldest first; only one dataset if named (NotFoundError if it does not exist).
        Episodes in the trash are left out unless `include_trashed`."""
        with self._sf() as session:
            query = select(Episode, Dataset.name).join(Dataset, Episode.dataset_id == Dataset.id)
            if dataset is not None:
                ds_id = dataset_id(session, dataset, create=False)
                query = query.where(Episode.dataset_id == ds_id)
            if not include_trashed:
                query = query.where(Episode.deleted_at.is_(None))
            rows = session.execute(query.order_by(Episode.created_at, Episode.id)).all()
            return self._infos(session, rows)

    def query_episodes(self, query: EpisodeQuery) -> tuple[list[EpisodeInfo], int]:
        """One page of episodes matching `query` and the total number that match (ValueError on a bad query).
        Filtering, sorting and paging happen in SQL (storage.episode_query)."""
        query.validate()
        with self._sf() as session:
            total = int(session.execute(build_count(query)).scalar_one())
            rows = session.execute(build_select(query)).all()
            return self._infos(session, rows), total

    def get_episode(self, episode_id: int) -> EpisodeInfo:
        with self._sf() as session:
            row = session.execute(
                select(Episode, Dataset.name)
                .join(Dataset, Episode.dataset_id == Dataset.id)
                .where(Episode.id == episode_id)
            ).first()
            if row is None:
                raise NotFoundError(f"no episode with id {episode_id}")
            return self._infos(session, [row])[0]

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
        lock_fd = acquire_lock(self.tmp_dir / f"{uid}{LOCK_SUFFIX}")
        try:
            recorder = EpisodeRecorder(self, meta, uid)
        except BaseException:
            release_lock(lock_fd, self.tmp_dir / f"{uid}{LOCK_SUFFIX}")
            raise
        with self._lock:
            self._active[uid] = recorder
            self._take_locks[uid] = lock_fd
        return recorder

    def end_take(self, uid: str) -> None:
        """The take ended (saved, discarded or failed): drop it and release its lock file."""
        with self._lock:
            self._active.pop(uid, None)
            lock_fd = self._take_locks.pop(uid, None)
        if lock_fd is not None:
            release_lock(lock_fd, self.tmp_dir / f"{uid}{LOCK_SUFFIX}")

    def register(self, manifest: Mapping[str, Any], rel_path: str) -> int:
        """Insert the row (and quality flags) of the complete folder ``rel_path`` described by its manifest;
        returns the episode id. IntegrityError if the uid or path is registered already."""
        with self._sf.begin() as session:
            ds_id = dataset_id(session, manifest["dataset"], create=True)
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
            self._write_quality(session, ep.id, self.data_dir / rel_path / TABLE_FILE, ep.fps)
            return ep.id

    # -- quality flags -----------------------------------------------------------------------------------------------
    @staticmethod
    def _write_quality(session: Session, episode_id: int, table_path: Path, fps: int) -> None:
        """Replace the episode's quality flags with freshly computed ones. Never blocks a save: a table the rules
        cannot read gets no flags and a warning (storage.checks reports broken files)."""
        try:
            flags = compute_quality_flags(pq.read_table(table_path), fps)
        except (OSError, ValueError, pa.ArrowException) as error:
            log.warning("quality flags of episode %s not computed: %s", episode_id, error)
            flags = []
        session.execute(delete(EpisodeQualityFlag).where(EpisodeQualityFlag.episode_id == episode_id))
        session.add_all(EpisodeQualityFlag(episode_id=episode_id, flag=f.name, detail=f.detail) for f in flags)

    def recompute_quality(self, episode_ids: list[int] | None = None) -> int:
        """Recompute the quality flags (after the thresholds changed); all episodes, trash included, if no ids.
        Returns how many episodes were processed. NotFoundError names ids that do not exist."""
        with self._sf() as session:
            query = select(Episode.id, Episode.path, Episode.fps)
            if episode_ids is not None:
                query = query.where(Episode.id.in_(episode_ids))
            rows = session.execute(query.order_by(Episode.id)).all()
        if episode_ids is not None and len(rows) != len(set(episode_ids)):
            raise NotFoundError(f"no episodes with ids {sorted(set(episode_ids) - {r[0] for r in rows})}")
        for episode_id, path, fps in rows:
            with self._sf.begin() as session:  # one short transaction per episode: never blocks recording long
                self._write_quality(session, episode_id, self.data_dir / path / TABLE_FILE, fps)
        return len(rows)

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
            if entry.name.endswith(TRASH_SUFFIX) and UID_RE.fullmatch(uid):
                with self._sf.begin() as session:
                    gone = session.execute(delete(Episode).where(Episode.uid == uid)).rowcount
                if gone:
                    report.finished_deletes.append(uid)
            remove_path(entry)
            report.removed_temp.append(f"{TMP_DIR}/{entry.name}")
        with self._sf() as session:
            registered = set(session.scalars(select(Episode.path)))
        for ds_dir in sorted(self.episodes_dir.iterdir()):
            if not ds_dir.is_dir() or ds_dir.is_symlink():
                continue
            for ep_dir in sorted(ds_dir.iterdir()):
                rel = f"{EPISODES_DIR}/{ds_dir.name}/{ep_dir.name}"
                if rel in registered or not UID_RE.fullmatch(ep_dir.name) or not ep_dir.is_dir():
                    continue
                try:
                    manifest = verify_episode_folder(ep_dir, dataset=ds_dir.name)
                    report.recovered.append(self.register(manifest, rel))
                except (FormatError, IntegrityError) as exc:
                    self.lost_dir.mkdir(parents=True, exist_ok=True)
                    target = self.lost_dir / f"{ds_dir.name}__{ep_dir.name}"
                    os.rename(ep_dir, target)
                    report.quarantined.append(f"{rel}: {exc}")
        fsync_path(self.tmp_dir)
        return report

    def check(self, *, verify_checksums: bool = True) -> list[str]:
        """Human-readable problems of the store; [] when healthy. See storage.checks.check_store."""
        from storage.checks import check_store

        return check_store(self, verify_checksums=verify_checksums)
