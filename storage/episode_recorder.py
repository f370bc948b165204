"""One take in progress: frames to H.264 on worker threads, then an atomic, checksummed save."""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from storage import features
from storage.episode_files import (
    expected_files,
    fsync_path,
    sha256_file,
)
from storage.episode_meta import (
    COL_ACTION,
    COL_FRAME_INDEX,
    COL_STATE,
    COL_TIMESTAMP,
    EPISODES_DIR,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    TABLE_FILE,
    VIDEOS_DIR,
    EpisodeMeta,
    asdict_meta,
)
from storage.errors import (
    EmptyEpisodeError,
    RecorderClosedError,
    RecordingError,
)
from storage.models import utcnow
from storage.video import VideoEncoderThread

if TYPE_CHECKING:  # the store creates recorders; imported for annotations only (no cycle at run time)
    from storage.episode_store import EpisodeStore


def _fault_point(name: str) -> None:
    """No-op in production; the crash tests replace it to pause (then SIGKILL) at a named step of save()."""


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
        self._actors: list[str | None] = []
        self._interventions: list[bool] = []
        self._uncertainty: list[float] = []
        self._signals: dict[str, list[np.ndarray]] = {}  # training-only columns (features.is_signal_key), per step
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
        actor: str | None = None,
        intervention: bool | None = None,
        uncertainty: float | None = None,
        signals: Mapping[str, np.ndarray | Sequence[float]] | None = None,
    ) -> None:
        """Append one step. images: {camera: (H, W, 3) uint8}; state/action: (len(names),) finite numbers.

        actor / intervention (policy rollouts): which command source produced the action and whether it was an
        operator taking over from the policy; uncertainty: the driving policy's score for this step. Stored as
        per-step columns once any step of the take sets them. signals: training-only per-step values a sim gives
        ({features.grounding_key(camera): (x, y)}); a step without one of them stores NaN there.

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
            if actor is not None and (not isinstance(actor, str) or not actor or len(actor) > 32):
                raise ValueError(f"actor must be a short non-empty name, got {actor!r}")
            sig = self._checked_signals(signals)
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
            self._actors.append(actor)
            self._interventions.append(bool(intervention))
            self._uncertainty.append(float("nan") if uncertainty is None else float(uncertainty))
            for name in sig.keys() - self._signals.keys():  # a signal first seen now: NaN for the steps before
                self._signals[name] = [np.full(2, np.nan, np.float32)] * index
            for name, values in self._signals.items():
                values.append(sig.get(name, np.full(2, np.nan, np.float32)))

    @staticmethod
    def _checked_signals(signals) -> dict[str, np.ndarray]:
        if not signals:
            return {}
        if not isinstance(signals, Mapping):
            raise ValueError(f"signals must be a dict, got {type(signals).__name__}")
        out = {}
        for name, value in signals.items():
            if not isinstance(name, str) or not features.is_signal_key(name):
                raise ValueError(f"unknown training signal {name!r} (expected {features.grounding_key('<camera>')!r})")
            v = np.asarray(value, dtype=np.float32).reshape(-1)
            if v.shape != (2,):
                raise ValueError(f"signal {name!r} must be 2 numbers (x, y), got shape {np.shape(value)}")
            out[name] = v  # NaN is allowed: out of view
        return out

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
        if any(a is not None for a in self._actors):
            table = table.append_column(features.ACTOR, pa.array([a or "" for a in self._actors], pa.string()))
            table = table.append_column(features.INTERVENTION, pa.array(self._interventions, pa.bool_()))
            table = table.append_column(features.UNCERTAINTY, pa.array(self._uncertainty, pa.float32()))
        for name in sorted(self._signals):
            flat = pa.array(np.stack(self._signals[name]).reshape(-1), pa.float32())
            table = table.append_column(name, pa.FixedSizeListArray.from_arrays(flat, 2))
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
                    fsync_path(self.tmp_path / f)
                fsync_path(self.tmp_path / VIDEOS_DIR)
                fsync_path(self.tmp_path)
                _fault_point("before_move")
                final.parent.mkdir(parents=True, exist_ok=True)
                os.rename(self.tmp_path, final)
                moved = True
                fsync_path(final.parent)
                fsync_path(store.tmp_dir)
                _fault_point("after_move")
            except BaseException:
                self._status = "failed"
                self._abort_encoders()
                if moved:
                    shutil.rmtree(final, ignore_errors=True)
                shutil.rmtree(self.tmp_path, ignore_errors=True)
                store.end_take(self.uid)
                raise
            try:
                episode_id = store.register(manifest, rel)
                _fault_point("after_commit")
            except Exception as error:
                # The files are complete, verified and in place: keep them rather than lose the take. The
                # manifest lets recover() register the folder at the next start, as after a crash at this point.
                self._status = "failed"
                store.end_take(self.uid)
                raise RecordingError(
                    f"episode files were saved to {final} but registering them in the database failed ({error}); "
                    "they will be registered by the store's recovery at the next start"
                ) from error
            self._status = "saved"
            store.end_take(self.uid)
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
                self._store.end_take(self.uid)
