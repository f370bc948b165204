"""Export a store dataset as a LeRobot v3.0 folder that LeRobot 0.4.x loads offline (``LeRobotDataset(root=...)``).

``export_episodes`` writes any list of episodes (a snapshot hands in frozen copies of their annotations);
``export_dataset`` is the same for every episode of one dataset. Annotations go where LeRobot v3.0 allows them
(annotation_io). Everything is written into a hidden sibling folder and renamed into place at the end, so a
failed export leaves nothing behind. Videos are joined losslessly (packet remux with shifted timestamps) when the
episodes' MP4s share their codec parameters, which is the case for everything the store records; otherwise
re-encoded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from storage import features as F
from storage import video
from storage.episode_meta import read_signals
from storage.errors import DestinationNotEmptyError, NotFoundError, StoreError

from . import annotation_io as A
from . import layout as L
from . import mp4, stats

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (steps done, steps total); one step per episode and per episode video

TIMESTAMP_TOLERANCE_S = 1e-4  # LeRobotDataset's default tolerance_s between a frame's timestamp and its video pts


@dataclass
class _VideoGroup:
    """Episodes of one camera that go into one MP4 file."""

    chunk_index: int
    file_index: int
    episodes: list[int] = field(default_factory=list)  # positions in the export order
    size_mb: float = 0.0


def _column(table: pa.Table, name: str, episode_id: int) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise StoreError(f"episode {episode_id}: its table has no {name!r} column; the episode files are broken")
    return table.column(name)


def _matrix(table: pa.Table, name: str, width: int, episode_id: int) -> np.ndarray:
    """A list<float32> column -> (T, width) float32."""
    col = _column(table, name, episode_id).combine_chunks()
    flat = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if flat.size != len(col) * width:
        raise StoreError(f"episode {episode_id}: {name} rows are not all {width} wide")
    return flat.reshape(len(col), width)


def _check_destination(out_dir: Path) -> None:
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise DestinationNotEmptyError(f"{out_dir} exists and is not a folder; choose a new or empty folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise DestinationNotEmptyError(
            f"{out_dir} is not empty; export into a new or empty folder (nothing was overwritten)"
        )


def _check_uniform(infos: list[Any], label: str) -> None:
    """LeRobot has one fps and one feature set per dataset; refuse datasets that mix them."""
    first = infos[0]

    def shape(e: Any) -> tuple:
        return (e.fps, tuple(_camera_specs(e)), tuple(e.state_names), tuple(e.action_names))

    ref = shape(first)
    for e in infos[1:]:
        if shape(e) != ref:
            raise StoreError(
                f"{label!r} mixes episodes with different fps/cameras/state or action names "
                f"(episode {first.id}: {ref}; episode {e.id}: {shape(e)}); a LeRobot dataset needs one layout, "
                f"so leave the odd episodes out (or move them to another dataset) first"
            )


def _camera_specs(info: Any) -> list[tuple[str, int, int]]:
    out = []
    for c in info.cameras:
        if isinstance(c, dict):
            out.append((c["name"], int(c["height"]), int(c["width"])))
        else:  # CameraSpec-like
            out.append((c.name, int(c.height), int(c.width)))
    return out


_VLA_TYPES = {
    "episode_id": pa.int64(),
    "task": pa.string(),
    "source": pa.string(),
    "operator": pa.string(),
    "seed": pa.int64(),
    "auto_success": pa.bool_(),
    "human_success": pa.bool_(),
    "created_at": pa.string(),
    "extra": pa.string(),
    **A.ANNOTATION_TYPES,
}


def _vla_columns(info: Any) -> dict[str, Any]:
    created = getattr(info, "created_at", None)
    source = getattr(info, "source", None)
    return {
        L.VLA_PREFIX + "episode_id": int(info.id),
        L.VLA_PREFIX + "task": info.task,
        L.VLA_PREFIX + "source": getattr(source, "value", source),
        L.VLA_PREFIX + "operator": info.operator,
        L.VLA_PREFIX + "seed": None if info.seed is None else int(info.seed),
        L.VLA_PREFIX + "auto_success": info.auto_success,
        L.VLA_PREFIX + "human_success": info.human_success,
        L.VLA_PREFIX + "created_at": created.isoformat() if created is not None else None,
        L.VLA_PREFIX + "extra": json.dumps(info.extra or {}, sort_keys=True),
        **A.episode_columns(info),
    }


def _sampled_frames(path: Path, length: int) -> np.ndarray:
    """The frames LeRobot would sample for image stats, decoded from one episode video: (N, H, W, 3) uint8."""
    wanted = stats.sample_indices(length)
    want = set(wanted)
    got: dict[int, np.ndarray] = {}
    for k, img in enumerate(video.iter_frames(path)):
        if k in want:
            got[k] = img
        if k >= wanted[-1]:
            break
    if len(got) != len(want):
        raise StoreError(f"{path}: the video has fewer frames than the episode's {length} rows")
    return np.stack([got[k] for k in wanted])


def export_dataset(
    store: Any,
    dataset_name: str,
    out_dir: str | Path,
    *,
    progress: Progress | None = None,
    robot_type: str | None = None,
    chunks_size: int = L.DEFAULT_CHUNK_SIZE,
    data_files_size_in_mb: int = L.DEFAULT_DATA_FILE_SIZE_IN_MB,
    video_files_size_in_mb: int = L.DEFAULT_VIDEO_FILE_SIZE_IN_MB,
) -> Path:
    """Write every episode of ``dataset_name`` (trash excluded) to ``out_dir``, in store order (oldest first).

    See ``export_episodes``; NotFoundError also when the dataset does not exist or has no episodes.
    """
    out_dir = Path(out_dir).absolute()
    _check_destination(out_dir)  # before listing, so a busy folder is reported even for an unknown dataset
    infos = list(store.list_episodes(dataset_name))
    if not infos:
        raise NotFoundError(f"dataset {dataset_name!r} does not exist or has no episodes; nothing to export")
    return export_episodes(
        store,
        infos,
        out_dir,
        label=dataset_name,
        progress=progress,
        robot_type=robot_type,
        chunks_size=chunks_size,
        data_files_size_in_mb=data_files_size_in_mb,
        video_files_size_in_mb=video_files_size_in_mb,
    )


def export_episodes(
    store: Any,
    infos: list[Any],
    out_dir: str | Path,
    *,
    label: str,
    progress: Progress | None = None,
    robot_type: str | None = None,
    chunks_size: int = L.DEFAULT_CHUNK_SIZE,
    data_files_size_in_mb: int = L.DEFAULT_DATA_FILE_SIZE_IN_MB,
    video_files_size_in_mb: int = L.DEFAULT_VIDEO_FILE_SIZE_IN_MB,
) -> Path:
    """Write ``infos`` (EpisodeInfo, in this order) to ``out_dir`` as a LeRobot v3.0 dataset; returns ``out_dir``.

    Metadata and annotations are taken from ``infos`` as given, never re-read from the database, so a snapshot
    can pass copies whose annotation fields were frozen when it was taken; the store is only read for each
    episode's table and videos. ``label`` is the dataset or snapshot name that error messages quote. Each
    episode's instruction is its LeRobot task; files roll over to the next ``file-XXX`` when they would exceed
    the size limits, as LeRobot's writer does.

    Raises:
        NotFoundError: ``infos`` is empty.
        DestinationNotEmptyError: ``out_dir`` holds files (nothing is written).
        StoreError: episodes disagree on fps/cameras/state or action names, a segment does not fit its episode
            or has no text, or an episode's files are broken.
    """
    out_dir = Path(out_dir).absolute()
    _check_destination(out_dir)
    infos = list(infos)
    if not infos:
        raise NotFoundError(f"{label!r} has no episodes; nothing to export")
    _check_uniform(infos, label)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.export-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        try:
            _write(store, infos, tmp, progress, robot_type, chunks_size, data_files_size_in_mb, video_files_size_in_mb)
        except video.VideoError as e:
            raise StoreError(f"cannot read an episode video of {label!r}: {e}") from e
        _check_destination(out_dir)  # someone may have written there meanwhile
        if out_dir.is_dir():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write(
    store: Any,
    infos: list[Any],
    root: Path,
    progress: Progress | None,
    robot_type: str | None,
    chunks_size: int,
    data_mb: int,
    video_mb: int,
) -> None:
    first = infos[0]
    fps = int(first.fps)
    cameras = _camera_specs(first)
    state_names, action_names = list(first.state_names), list(first.action_names)
    ds, da = len(state_names), len(action_names)
    keys = [L.video_key(name) for name, _, _ in cameras]
    total_steps = len(infos) * (1 + len(cameras))
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total_steps)

    tasks = A.task_strings(infos)
    subtasks = A.subtask_strings(infos)

    features: dict[str, dict[str, Any]] = {}
    for (_, h, w), key in zip(cameras, keys, strict=True):
        features[key] = L.video_feature(h, w, {})  # "info" filled once the first file exists
    features[F.OBS_STATE] = L.vector_feature(state_names)
    features[F.ACTION] = L.vector_feature(action_names)
    features.update({k: dict(v) for k, v in L.DEFAULT_FEATURES.items()})
    features[L.SUBTASK_INDEX] = dict(L.SUBTASK_FEATURE)
    features[F.INTERVENTION] = dict(L.INTERVENTION_FEATURE)
    features[F.ACTOR] = dict(L.ACTOR_FEATURE)
    features[F.UNCERTAINTY] = dict(L.UNCERTAINTY_FEATURE)
    # The sim's training-only grounding signal, a (2,) float32 column per camera, when any episode carries it.
    signal_keys = _signal_keys(store, infos, [name for name, _, _ in cameras])
    for key in signal_keys:
        features[key] = dict(L.GROUNDING_FEATURE)
    data_schema = pa.schema(
        [
            (F.OBS_STATE, pa.list_(pa.float32(), ds)),
            (F.ACTION, pa.list_(pa.float32(), da)),
            (F.TIMESTAMP, pa.float32()),
            (F.FRAME_INDEX, pa.int64()),
            (F.EPISODE_INDEX, pa.int64()),
            (F.INDEX, pa.int64()),
            (F.TASK_INDEX, pa.int64()),
            (L.SUBTASK_INDEX, pa.int64()),
            (F.INTERVENTION, pa.bool_()),
            (F.ACTOR, pa.int64()),
            (F.UNCERTAINTY, pa.float32()),
            *[(key, pa.list_(pa.float32(), 2)) for key in signal_keys],
        ],
        metadata={b"huggingface": L.hf_features_metadata(features)},
    )

    # --- data parquet(s) + per-episode stats -------------------------------------------------------------------
    rows: list[dict[str, Any]] = []
    ep_stats: list[dict[str, stats.Stats]] = []
    chunk, file = 0, 0
    writer: pq.ParquetWriter | None = None
    file_bytes = 0
    global_index = 0
    try:
        for ep_index, e in enumerate(infos):
            table = store.read_table(e.id)
            n = table.num_rows
            if n == 0 or n != e.length:
                raise StoreError(f"episode {e.id}: table has {n} rows but the episode is {e.length} frames long")
            state = _matrix(table, F.OBS_STATE, ds, e.id)
            action = _matrix(table, F.ACTION, da, e.id)
            frame_index = _column(table, F.FRAME_INDEX, e.id).to_numpy().astype(np.int64)
            if not np.array_equal(frame_index, np.arange(n)):
                raise StoreError(f"episode {e.id}: frame_index is not 0..{n - 1}")
            ts = _column(table, F.TIMESTAMP, e.id).to_numpy().astype(np.float32)
            nominal = (np.arange(n, dtype=np.float64) / fps).astype(np.float32)
            if not np.allclose(ts, nominal, rtol=0, atol=TIMESTAMP_TOLERANCE_S):
                # Video frame k sits at k / fps; LeRobot finds frames by timestamp, so they must agree.
                log.warning("episode %s: timestamps are not frame_index / fps; exporting frame_index / fps", e.id)
                ts = nominal
            index = np.arange(global_index, global_index + n, dtype=np.int64)
            ep_arr = np.full(n, ep_index, dtype=np.int64)
            task_arr = np.full(n, tasks[e.instruction], dtype=np.int64)
            subtask_arr = A.subtask_indices(e, n, subtasks)
            intervention_arr, actor_arr = _human_in_the_loop(table, n)
            uncertainty_arr = _uncertainty(table, n)
            stored = read_signals(table)
            signal_arrs = {key: stored.get(key, np.full((n, 2), np.nan, np.float32)) for key in signal_keys}
            batch = pa.Table.from_arrays(
                [
                    pa.FixedSizeListArray.from_arrays(pa.array(state.reshape(-1)), ds),
                    pa.FixedSizeListArray.from_arrays(pa.array(action.reshape(-1)), da),
                    pa.array(ts),
                    pa.array(frame_index),
                    pa.array(ep_arr),
                    pa.array(index),
                    pa.array(task_arr),
                    pa.array(subtask_arr),
                    pa.array(intervention_arr),
                    pa.array(actor_arr),
                    pa.array(uncertainty_arr),
                    *[pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), 2) for a in signal_arrs.values()],
                ],
                schema=data_schema,
            )
            if writer is not None and file_bytes + batch.nbytes >= data_mb * 1024**2:
                writer.close()
                writer = None
                chunk, file = L.next_chunk_file(chunk, file, chunks_size)
                file_bytes = 0
            if writer is None:
                path = root / L.data_path(chunk, file)
                path.parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(path, data_schema, compression="snappy", use_dictionary=True)
            writer.write_table(batch)
            file_bytes += batch.nbytes

            s: dict[str, stats.Stats] = {
                F.OBS_STATE: stats.vector_stats(state),
                F.ACTION: stats.vector_stats(action),
                F.TIMESTAMP: stats.vector_stats(ts),
                F.FRAME_INDEX: stats.vector_stats(frame_index),
                F.EPISODE_INDEX: stats.vector_stats(ep_arr),
                F.INDEX: stats.vector_stats(index),
                F.TASK_INDEX: stats.vector_stats(task_arr),
                L.SUBTASK_INDEX: stats.vector_stats(subtask_arr),
                F.INTERVENTION: stats.vector_stats(intervention_arr.astype(np.float64)),
                F.ACTOR: stats.vector_stats(actor_arr),
                F.UNCERTAINTY: _scored_stats(uncertainty_arr),
                **{key: _signal_stats(a) for key, a in signal_arrs.items()},
            }
            files = store.episode_files(e.id)
            for (cam, _, _), key in zip(cameras, keys, strict=True):
                s[key] = stats.image_stats(_sampled_frames(Path(files.videos[cam]), n))
            ep_stats.append(s)
            rows.append(
                {
                    "episode_index": ep_index,
                    "tasks": A.episode_tasks(e),
                    "length": n,
                    "data/chunk_index": chunk,
                    "data/file_index": file,
                    "dataset_from_index": global_index,
                    "dataset_to_index": global_index + n,
                }
            )
            global_index += n
            step()
    finally:
        if writer is not None:
            writer.close()

    # --- videos: one stream per camera, episodes back to back -------------------------------------------------
    sources = [store.episode_files(e.id).videos for e in infos]
    for (cam, h, w), key in zip(cameras, keys, strict=True):
        groups: list[_VideoGroup] = [_VideoGroup(0, 0)]
        for i in range(len(infos)):
            size = Path(sources[i][cam]).stat().st_size / 1024**2
            g = groups[-1]
            if g.episodes and g.size_mb + size >= video_mb:
                groups.append(_VideoGroup(*L.next_chunk_file(g.chunk_index, g.file_index, chunks_size)))
                g = groups[-1]
            g.episodes.append(i)
            g.size_mb += size
        for g in groups:
            out = root / L.video_path(key, g.chunk_index, g.file_index)
            out.parent.mkdir(parents=True, exist_ok=True)
            paths = [Path(sources[i][cam]) for i in g.episodes]
            lengths = [rows[i]["length"] for i in g.episodes]
            if not mp4.concat_remux(paths, lengths, fps, out):
                _reencode(paths, lengths, out, fps, w, h)
            start = 0
            for i, n in zip(g.episodes, lengths, strict=True):
                rows[i][f"videos/{key}/chunk_index"] = g.chunk_index
                rows[i][f"videos/{key}/file_index"] = g.file_index
                rows[i][f"videos/{key}/from_timestamp"] = start / fps
                rows[i][f"videos/{key}/to_timestamp"] = (start + n) / fps
                start += n
                step()
        features[key]["info"] = mp4.video_info(root / L.video_path(key, 0, 0), fps)

    # --- meta ------------------------------------------------------------------------------------------------
    for row, s, e in zip(rows, ep_stats, infos, strict=True):
        row.update(stats.flatten(s))
        row["meta/episodes/chunk_index"] = 0
        row["meta/episodes/file_index"] = 0
        row.update(_vla_columns(e))
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    types = {k: _VLA_TYPES[k[len(L.VLA_PREFIX) :]] for k in columns if k.startswith(L.VLA_PREFIX)}
    ep_table = pa.Table.from_pydict({k: pa.array(v, type=types.get(k)) for k, v in columns.items()})
    ep_path = root / L.episodes_path(0, 0)
    ep_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(ep_table, ep_path, compression="snappy")

    _write_index_table(tasks, F.TASK_INDEX, root / L.TASKS_PATH)
    _write_index_table(subtasks, L.SUBTASK_INDEX, root / L.SUBTASKS_PATH)

    L.write_json(stats.to_jsonable(stats.aggregate(ep_stats)), root / L.STATS_PATH)
    info = L.make_info(
        fps=fps,
        features=features,
        total_episodes=len(infos),
        total_frames=global_index,
        total_tasks=len(tasks),
        robot_type=robot_type if robot_type is not None else (first.extra or {}).get("robot_type"),
        chunks_size=chunks_size,
        data_files_size_in_mb=data_mb,
        video_files_size_in_mb=video_mb,
    )
    L.write_json(info, root / L.INFO_PATH)


def _write_index_table(texts: dict[str, int], column: str, path: Path) -> None:
    """tasks.parquet / subtasks.parquet as LeRobot writes and reads them (``write_tasks``, ``load_subtasks``):
    a pandas frame indexed by the text, one int64 column equal to the row number (LeRobot looks rows up by
    position). ``texts`` maps each text to its row, in row order."""
    pd.DataFrame({column: np.arange(len(texts), dtype=np.int64)}, index=list(texts)).to_parquet(path)


def _reencode(paths: list[Path], lengths: list[int], out: Path, fps: int, width: int, height: int) -> None:
    """Decode each episode's first ``length`` frames and encode them back to back into ``out``."""

    def frames():
        for p, n in zip(paths, lengths, strict=True):
            k = 0
            for img in video.iter_frames(p):
                if k == n:
                    break
                if img.shape[:2] != (height, width):
                    raise StoreError(f"{p}: frames are {img.shape[1]}x{img.shape[0]}, expected {width}x{height}")
                yield img
                k += 1
            if k < n:
                raise StoreError(f"{p}: the video has {k} frames but the episode has {n} rows")

    video.write_video(frames(), out, fps=fps, height=height, width=width, settings=mp4.REENCODE_SETTINGS)


def _uncertainty(table: pa.Table, n: int) -> np.ndarray:
    """(n,) float32 policy uncertainty per frame, NaN where none was recorded (teleop, demos, older episodes)."""
    if F.UNCERTAINTY not in table.column_names:
        return np.full(n, np.nan, dtype=np.float32)
    values = table.column(F.UNCERTAINTY).to_pylist()
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float32)


def _signal_keys(store: Any, infos: list[Any], cameras: list[str]) -> list[str]:
    """The grounding columns (features.grounding_key) of `cameras` that any episode's table has (schemas only)."""
    wanted = {F.grounding_key(c) for c in cameras}
    found: set[str] = set()
    for e in infos:
        found |= wanted & set(pq.read_schema(store.episode_files(e.id).table).names)
        if found == wanted:
            break
    return sorted(found)


def _signal_stats(x: np.ndarray) -> stats.Stats:
    """Stats of the frames where the signal is known (finite), as for the uncertainty score."""
    finite = x[np.isfinite(x).all(-1)]
    return stats.vector_stats(finite if len(finite) else np.zeros((1, 2), dtype=np.float32))


def _scored_stats(x: np.ndarray) -> stats.Stats:
    """Stats of the finite scores only (stats.json must stay finite for LeRobot's loader); an episode without
    any score counts as one 0, so every episode has the keys LeRobot's episodes table expects."""
    finite = x[np.isfinite(x)]
    return stats.vector_stats(finite if finite.size else np.zeros(1, dtype=np.float32))


def _human_in_the_loop(table: pa.Table, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n,) bool intervention flags and (n,) int64 indices into layout.ACTOR_NAMES of an episode table (False and
    "unknown" for episodes recorded without them)."""
    if F.ACTOR not in table.column_names:
        return np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
    flags = np.asarray(table.column(F.INTERVENTION).to_pylist(), dtype=bool)
    index = {name: i for i, name in enumerate(L.ACTOR_NAMES)}
    actors = np.asarray([index.get(a or "unknown", 0) for a in table.column(F.ACTOR).to_pylist()], dtype=np.int64)
    return flags, actors
