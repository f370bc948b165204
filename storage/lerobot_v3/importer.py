"""Import a LeRobot v3.0 folder (ours, or one LeRobot itself wrote) into the episode store.

Two phases. ``_plan`` validates the whole folder first -- info.json, tasks, every episodes/data parquet (read in
full, so truncated or corrupt files fail here), every video (opened and demuxed, no decoding: each frame the
episodes need must have a packet within the tolerance) -- and builds every EpisodeMeta, checked with the store's
own validator, and the annotations our exports carry (annotation_io), checked with the annotation validator.
Only then are episodes decoded and recorded one by one, each one's annotations set right after it is saved; if
anything fails mid-way, the episodes this call already saved are deleted again (and the dataset row too, if this
call created it).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from storage import features as F
from storage import video
from storage.errors import FormatError, NotFoundError, StoreError

from . import annotation_io as A
from . import layout as L
from . import mp4

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (episodes imported, episodes total)

DEFAULT_TOLERANCE_S = 1e-4  # LeRobotDataset's default: a frame's timestamp vs the pts of the frame decoded for it
DEFAULT_TASK = "imported"  # our task name for episodes that carry none (LeRobot datasets have only instructions)
DEFAULT_SOURCE = "teleop"
IMPORT_USER = "lerobot-import"  # who the annotation history says set an imported episode's annotations

_EPISODE_COLUMNS = ("episode_index", "length", "data/chunk_index", "data/file_index")
_DATA_COLUMNS = (F.TIMESTAMP, F.FRAME_INDEX, F.EPISODE_INDEX, F.TASK_INDEX, F.OBS_STATE, F.ACTION)


@dataclass
class _Episode:
    index: int
    length: int
    data_file: Path
    meta: Any  # EpisodeMeta
    instruction: str
    auto_success: bool | None
    human_success: bool | None
    videos: dict[str, tuple[Path, float]] = field(default_factory=dict)  # camera -> (file, from_timestamp)
    annotations: dict[str, Any] | None = None  # an AnnotationService edit, None when the folder has none


@dataclass
class _Plan:
    fps: int
    cameras: dict[str, str]  # camera name -> LeRobot video key
    episodes: list[_Episode]


def _rel(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _read_parquet(root: Path, path: Path, what: str, columns: list[str] | None = None) -> pa.Table:
    if not path.is_file():
        raise FormatError(f"{root}: missing {what} {_rel(root, path)}")
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise FormatError(f"{root}: {what} {_rel(root, path)} is truncated or corrupt ({e})") from e


def _names(ft: dict[str, Any], key: str, width: int) -> list[str]:
    """LeRobot feature names (a list, {"motors": [...]} in older datasets, or None) -> unique strings."""
    names = ft.get("names")
    if isinstance(names, dict):
        names = [n for v in names.values() for n in (v if isinstance(v, list) else [v])]
    if not isinstance(names, list) or len(names) != width:
        names = [f"{key.split('.')[-1]}_{i}" for i in range(width)]
    out: list[str] = []
    for i, n in enumerate(names):
        n = str(n) if n not in (None, "") else f"{key.split('.')[-1]}_{i}"
        out.append(n if n not in out else f"{n}_{i}")
    return out


def _vector_width(features: dict[str, Any], key: str, root: Path) -> int:
    ft = features.get(key)
    if not isinstance(ft, dict):
        raise FormatError(f"{root}: meta/info.json has no {key!r} feature; the store needs state and action vectors")
    shape = list(ft.get("shape") or [])
    if len(shape) != 1 or ft.get("dtype") not in ("float32", "float64", "float16", "int64", "int32"):
        raise FormatError(f"{root}: feature {key!r} must be a 1-D numeric vector, got {ft}")
    return int(shape[0])


def _load_info(root: Path) -> dict[str, Any]:
    path = root / L.INFO_PATH
    if not path.is_file():
        raise FormatError(f"{root}: missing {L.INFO_PATH}; not a LeRobot dataset folder")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise FormatError(f"{root}: {L.INFO_PATH} is not valid JSON ({e})") from e
    if not isinstance(info, dict):
        raise FormatError(f"{root}: {L.INFO_PATH} is not a JSON object")
    version = info.get("codebase_version")
    if version != L.CODEBASE_VERSION:
        hint = " (convert it with lerobot/datasets/v30/convert_dataset_v21_to_v30.py)" if version else ""
        raise FormatError(
            f"{root}: {L.INFO_PATH} says codebase_version {version!r}; only {L.CODEBASE_VERSION!r} is supported{hint}"
        )
    for key in ("fps", "features", "data_path", "total_episodes", "total_frames"):
        if key not in info:
            raise FormatError(f"{root}: {L.INFO_PATH} lacks {key!r}")
    if not isinstance(info["features"], dict):
        raise FormatError(f"{root}: {L.INFO_PATH} 'features' is not an object")
    return info


def _load_tasks(root: Path) -> dict[int, str]:
    table = _read_parquet(root, root / L.TASKS_PATH, "tasks file")
    cols = table.column_names
    if "task_index" not in cols:
        raise FormatError(f"{root}: {L.TASKS_PATH} has no task_index column (columns: {cols})")
    # LeRobot writes a pandas frame indexed by the task string (stored as __index_level_0__ or "task").
    text_col = "task" if "task" in cols else next((c for c in cols if c.startswith("__index_level_")), None)
    if text_col is None:
        raise FormatError(f"{root}: {L.TASKS_PATH} has no task strings (columns: {cols})")
    idx = table.column("task_index").to_pylist()
    text = table.column(text_col).to_pylist()
    return {int(i): str(t) for i, t in zip(idx, text, strict=True)}


def _load_episodes(root: Path) -> pa.Table:
    paths = sorted((root / L.EPISODES_DIR).glob("*/*.parquet"))
    if not paths:
        raise FormatError(f"{root}: missing episode metadata ({L.EPISODES_DIR}/chunk-*/file-*.parquet)")
    tables = [_read_parquet(root, p, "episodes file") for p in paths]
    # Drop the per-episode stats (wide, unused) before concatenating files whose stats columns may differ.
    tables = [t.select([c for c in t.column_names if not c.startswith("stats/")]) for t in tables]
    try:
        table = pa.concat_tables(tables, promote_options="default")
    except pa.ArrowException as e:
        raise FormatError(f"{root}: episodes files disagree on their columns ({e})") from e
    for col in _EPISODE_COLUMNS:
        if col not in table.column_names:
            raise FormatError(f"{root}: {L.EPISODES_DIR} files lack the {col!r} column")
    return table


def _opt(row: dict[str, Any], name: str) -> Any:
    return row.get(L.VLA_PREFIX + name)


def _plan(root: Path, dataset_name: str, tolerance_s: float, default_task: str, default_source: str):
    from storage.episode_store import CameraSpec, EpisodeMeta, validate_meta

    info = _load_info(root)
    features: dict[str, Any] = info["features"]
    try:
        fps = int(info["fps"])
    except (TypeError, ValueError) as e:
        raise FormatError(f"{root}: {L.INFO_PATH} fps {info['fps']!r} is not a number") from e
    if fps <= 0 or fps != info["fps"]:
        raise FormatError(f"{root}: fps {info['fps']!r} must be a positive whole number")
    ds = _vector_width(features, F.OBS_STATE, root)
    da = _vector_width(features, F.ACTION, root)
    state_names = _names(features[F.OBS_STATE], F.OBS_STATE, ds)
    action_names = _names(features[F.ACTION], F.ACTION, da)
    image_keys = [k for k, ft in features.items() if isinstance(ft, dict) and ft.get("dtype") == "image"]
    if image_keys:
        raise FormatError(f"{root}: image-dtype features {image_keys} are not supported; only video features are")
    video_keys = [k for k, ft in features.items() if isinstance(ft, dict) and ft.get("dtype") == "video"]
    if not video_keys:
        raise FormatError(f"{root}: no video features; the store needs at least one camera")
    if not info.get("video_path"):
        raise FormatError(f"{root}: {L.INFO_PATH} has video features but no video_path")
    cameras: dict[str, str] = {}
    for key in video_keys:
        name = L.camera_name(key)
        if name in cameras:
            raise FormatError(f"{root}: video keys {cameras[name]!r} and {key!r} map to the same camera {name!r}")
        cameras[name] = key

    tasks = _load_tasks(root)
    ep_table = _load_episodes(root)
    rows = ep_table.to_pylist()
    rows.sort(key=lambda r: r["episode_index"])
    if [r["episode_index"] for r in rows] != list(range(len(rows))):
        raise FormatError(f"{root}: episode_index in {L.EPISODES_DIR} is not 0..{len(rows) - 1}")
    if len(rows) != info["total_episodes"]:
        raise FormatError(
            f"{root}: {L.INFO_PATH} says {info['total_episodes']} episodes but {L.EPISODES_DIR} lists {len(rows)}"
        )
    if sum(int(r["length"]) for r in rows) != info["total_frames"]:
        raise FormatError(f"{root}: episode lengths do not add up to total_frames {info['total_frames']}")

    # -- data files: read in full (catches truncation/corruption), then per-episode row checks ------------------
    timestamps: dict[int, np.ndarray] = {}
    first_task: dict[int, int] = {}
    by_file: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in rows:
        by_file.setdefault((int(r["data/chunk_index"]), int(r["data/file_index"])), []).append(r)
    data_files: dict[tuple[int, int], Path] = {}
    for (chunk, file), eps in by_file.items():
        path = root / L.data_path(chunk, file, info["data_path"])
        data_files[(chunk, file)] = path
        table = _read_parquet(root, path, "data file")
        missing = [c for c in _DATA_COLUMNS if c not in table.column_names]
        if missing:
            raise FormatError(f"{root}: data file {_rel(root, path)} lacks columns {missing}")
        for col, width in ((F.OBS_STATE, ds), (F.ACTION, da)):
            if pc.list_value_length(table.column(col)).to_numpy(zero_copy_only=False).tolist() != [width] * len(table):
                raise FormatError(f"{root}: data file {_rel(root, path)}: {col} rows are not all {width} wide")
        ep_col = table.column(F.EPISODE_INDEX).to_numpy()
        for r in eps:
            e = int(r["episode_index"])
            sel = np.flatnonzero(ep_col == e)
            n = int(r["length"])
            if len(sel) != n:
                raise FormatError(
                    f"{root}: episode {e} has length {n} in {L.EPISODES_DIR} but {len(sel)} rows in {_rel(root, path)}"
                )
            if (
                "dataset_from_index" in r
                and "dataset_to_index" in r
                and r["dataset_to_index"] - r["dataset_from_index"] != n
            ):
                raise FormatError(f"{root}: episode {e}: dataset_from/to_index span differs from its length {n}")
            fi = table.column(F.FRAME_INDEX).take(pa.array(sel)).to_numpy()
            if not np.array_equal(fi, np.arange(n)):
                raise FormatError(f"{root}: episode {e}: frame_index in {_rel(root, path)} is not 0..{n - 1}")
            ts = table.column(F.TIMESTAMP).take(pa.array(sel)).to_numpy().astype(np.float64)
            if not np.isfinite(ts).all() or (n > 1 and (np.diff(ts) <= 0).any()) or ts[0] < 0:
                raise FormatError(f"{root}: episode {e}: timestamps are not increasing and >= 0")
            timestamps[e] = ts
            ti = int(table.column(F.TASK_INDEX)[int(sel[0])].as_py())
            if ti not in tasks:
                raise FormatError(f"{root}: episode {e}: task_index {ti} is not in {L.TASKS_PATH}")
            first_task[e] = ti
        del table

    # -- videos: every file opens and holds a frame for every timestamp the episodes ask for -------------------
    probes: dict[Path, mp4.StreamInfo] = {}
    video_of: dict[tuple[int, str], tuple[Path, float]] = {}
    for r in rows:
        e = int(r["episode_index"])
        for cam, key in cameras.items():
            cols = [f"videos/{key}/{c}" for c in ("chunk_index", "file_index", "from_timestamp")]
            if any(r.get(c) is None for c in cols):
                raise FormatError(f"{root}: episode {e} has no {cols} in {L.EPISODES_DIR}")
            path = root / L.video_path(key, int(r[cols[0]]), int(r[cols[1]]), info["video_path"])
            if path not in probes:
                if not path.is_file():
                    raise FormatError(f"{root}: missing video file {_rel(root, path)}")
                try:
                    probes[path] = mp4.probe(path)
                except video.VideoError as ex:
                    raise FormatError(f"{root}: video {_rel(root, path)} is truncated or corrupt ({ex})") from ex
                codec = probes[path].codec
                if not video.can_decode(codec):
                    raise FormatError(f"{root}: video {_rel(root, path)}: codec {codec!r} cannot be decoded")
            p = probes[path]
            start = float(r[cols[2]])
            want = start + timestamps[e]
            have = p.pts_seconds
            if len(have) == 0:
                raise FormatError(f"{root}: video {_rel(root, path)} has no frames")
            pos = np.clip(np.searchsorted(have, want), 1, len(have) - 1) if len(have) > 1 else np.zeros_like(want)
            pos = np.asarray(pos, dtype=np.int64)
            near = np.minimum(np.abs(have[pos] - want), np.abs(have[np.maximum(pos - 1, 0)] - want))
            if (near > tolerance_s).any():
                k = int(np.argmax(near > tolerance_s))
                raise FormatError(
                    f"{root}: video {_rel(root, path)} has no frame at {want[k]:.4f} s for episode {e} frame {k} "
                    f"(it ends at {have[-1]:.4f} s): fewer frames than the episode needs, or timestamps that do "
                    f"not match"
                )
            video_of[(e, cam)] = (path, start)

    # -- what the store will get, checked by the store's own validator before anything is written ---------------
    episodes: list[_Episode] = []
    specs = []
    for cam in cameras:
        p = probes[video_of[(0, cam)][0]]
        specs.append(CameraSpec(cam, p.height, p.width))
    for r in rows:
        e = int(r["episode_index"])
        for cam, spec in zip(cameras, specs, strict=True):
            p = probes[video_of[(e, cam)][0]]
            if (p.height, p.width) != (spec.height, spec.width):
                raise FormatError(f"{root}: camera {cam!r} changes size between video files")
        source = _opt(r, "source") or default_source
        extra_raw = _opt(r, "extra")
        try:
            extra = json.loads(extra_raw) if extra_raw else {}
        except ValueError as ex:
            raise FormatError(f"{root}: episode {e}: {L.VLA_PREFIX}extra is not JSON ({ex})") from ex
        meta = EpisodeMeta(
            dataset=dataset_name,
            task=_opt(r, "task") or default_task,
            instruction=tasks[first_task[e]],
            source=source,
            fps=fps,
            cameras=list(specs),
            state_names=state_names,
            action_names=action_names,
            operator=_opt(r, "operator"),
            seed=_opt(r, "seed"),
            extra=extra,
        )
        try:
            meta = validate_meta(meta)
        except (ValueError, StoreError) as ex:
            raise FormatError(f"{root}: episode {e} cannot be stored: {ex}") from ex
        human_success = _opt(r, "human_success")
        annotations = A.read_annotations(
            r, length=int(r["length"]), human_success=human_success, where=f"{root}: episode {e}"
        )
        ep = _Episode(
            index=e,
            length=int(r["length"]),
            data_file=data_files[(int(r["data/chunk_index"]), int(r["data/file_index"]))],
            meta=meta,
            instruction=meta.instruction,
            auto_success=_opt(r, "auto_success"),
            human_success=human_success,
            videos={cam: video_of[(e, cam)] for cam in cameras},
            annotations=annotations,
        )
        episodes.append(ep)
    return _Plan(fps=fps, cameras=cameras, episodes=episodes)


def validate_folder(in_dir: str | Path, *, tolerance_s: float = DEFAULT_TOLERANCE_S) -> int:
    """Check a LeRobot v3.0 folder without importing it; returns its number of episodes (FormatError if bad)."""
    root = Path(in_dir)
    if not root.is_dir():
        raise FormatError(f"{root} is not a folder")
    return len(_plan(root, "validate", tolerance_s, DEFAULT_TASK, DEFAULT_SOURCE).episodes)


def import_dataset(
    store: Any,
    in_dir: str | Path,
    dataset_name: str,
    *,
    progress: Progress | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    default_task: str = DEFAULT_TASK,
    default_source: str = DEFAULT_SOURCE,
) -> list[int]:
    """Import every episode of a LeRobot v3.0 folder into ``dataset_name``; returns the new episode ids in order.

    Our own exports carry task name, source, operator, seed, success labels and extra per episode, and the
    annotations (paraphrases, segments, failure reason, notes), which are set through AnnotationService as user
    "lerobot-import" so the new episodes' history says where they came from. For other datasets the task name is
    ``default_task`` and the source ``default_source``. The instruction is the task string of the episode's
    first frame.

    Raises:
        FormatError: the folder is not a readable LeRobot v3.0 dataset (nothing is written to the store).
        StoreError: saving failed mid-way (the episodes imported by this call are removed again).
    """
    from storage.episode_store import validate_name

    validate_name(dataset_name, "dataset name")
    root = Path(in_dir)
    if not root.is_dir():
        raise FormatError(f"{root} is not a folder; nothing to import")
    plan = _plan(root, dataset_name, tolerance_s, default_task, default_source)
    existed = dataset_name in {d.name for d in store.list_datasets()}
    created: list[int] = []
    table_cache: dict[Path, pa.Table] = {}
    try:
        for i, ep in enumerate(plan.episodes):
            created.append(_import_episode(store, root, plan, ep, tolerance_s, table_cache))
            if ep.annotations is not None:  # after append: a failure here must roll this episode back too
                _annotate(store, root, created[-1], ep)
            if progress is not None:
                progress(i + 1, len(plan.episodes))
    except BaseException as e:
        _rollback(store, created, dataset_name, existed)
        if isinstance(e, video.VideoError):
            raise FormatError(f"{root}: {e}; nothing was imported") from e
        raise
    return created


def _episode_rows(root: Path, ep: _Episode, cache: dict[Path, pa.Table]) -> pa.Table:
    table = cache.get(ep.data_file)
    if table is None:
        cache.clear()  # keep one data file in memory; episodes are in file order
        present = _parquet_columns(ep.data_file)
        wanted = list(_DATA_COLUMNS) + [c for c in (F.INTERVENTION, F.ACTOR, F.UNCERTAINTY) if c in present]
        wanted += sorted(c for c in present if F.is_signal_key(c))  # the sim's grounding signal, when exported
        table = _read_parquet(root, ep.data_file, "data file", wanted)
        cache[ep.data_file] = table
    sel = np.flatnonzero(table.column(F.EPISODE_INDEX).to_numpy() == ep.index)
    rows = table.take(pa.array(sel))
    order = np.argsort(rows.column(F.FRAME_INDEX).to_numpy(), kind="stable")
    return rows.take(pa.array(order))


def _import_episode(
    store: Any, root: Path, plan: _Plan, ep: _Episode, tolerance_s: float, cache: dict[Path, pa.Table]
) -> int:
    rows = _episode_rows(root, ep, cache)
    n = ep.length
    ts = rows.column(F.TIMESTAMP).to_numpy().astype(np.float64)
    state = np.asarray(pc.list_flatten(rows.column(F.OBS_STATE)).to_numpy(zero_copy_only=False), dtype=np.float32)
    action = np.asarray(pc.list_flatten(rows.column(F.ACTION)).to_numpy(zero_copy_only=False), dtype=np.float32)
    state = state.reshape(n, -1)
    action = action.reshape(n, -1)
    frames = {cam: video.decode_at(p, (start + ts).tolist(), tolerance_s) for cam, (p, start) in ep.videos.items()}
    actors, flags = _human_in_the_loop(rows, n)
    scores = _uncertainty(rows, n)
    signals = _signals(root, ep, rows, n)
    rec = store.begin(ep.meta)
    try:
        for k in range(n):
            rec.add_frame(
                images={cam: f[k] for cam, f in frames.items()},
                state=state[k],
                action=action[k],
                timestamp=float(ts[k]),
                actor=actors[k],
                intervention=flags[k],
                uncertainty=scores[k],
                signals={key: values[k] for key, values in signals.items()},
            )
        return rec.save(auto_success=ep.auto_success, human_success=ep.human_success)
    except BaseException:
        if rec.status == "recording":
            rec.discard()
        raise


def _annotate(store: Any, root: Path, episode_id: int, ep: _Episode) -> None:
    """Set the annotations _plan read and checked on the episode just saved."""
    from storage.annotations import AnnotationService

    version = store.get_episode(episode_id).version
    try:
        service = AnnotationService(store.session_factory)
        service.edit(episode_id, ep.annotations, user=IMPORT_USER, expected_version=version)
    except ValueError as e:  # AnnotationError; _plan already checked, so only a validator stricter than ours
        raise FormatError(f"{root}: episode {ep.index}: invalid annotation: {e}; nothing was imported") from e


def _rollback(store: Any, created: list[int], dataset_name: str, existed: bool) -> None:
    """Undo a failed import: delete the episodes it saved, and the dataset row if this call created it."""
    for eid in reversed(created):
        try:
            store.delete_episode(eid)
        except NotFoundError:
            pass
        except Exception:  # noqa: BLE001 - keep undoing the rest; the original error is what the caller sees
            log.exception("import rollback: could not delete episode %s", eid)
    if not existed:
        _drop_empty_dataset(store, dataset_name)


def _drop_empty_dataset(store: Any, name: str) -> None:
    """The store has no delete_dataset yet; remove the row of an empty dataset this import created."""
    from sqlalchemy import delete, func, select

    from storage.models import Dataset, Episode

    try:
        with store.session_factory.begin() as session:
            ds_id = session.scalar(select(Dataset.id).where(Dataset.name == name))
            if ds_id is None:
                return
            if session.scalar(select(func.count(Episode.id)).where(Episode.dataset_id == ds_id)):
                return
            session.execute(delete(Dataset).where(Dataset.id == ds_id))
    except Exception:  # noqa: BLE001
        log.exception("import rollback: could not remove the empty dataset %r", name)


def _signals(root: Path, ep: _Episode, rows: pa.Table, n: int) -> dict[str, np.ndarray]:
    """{grounding_key(camera): (n, 2) float32} of the episode's cameras, from the dataset's signal columns."""
    out = {}
    for key in (F.grounding_key(cam) for cam in ep.videos):
        if key not in rows.column_names:
            continue
        flat = pc.list_flatten(rows.column(key)).to_numpy(zero_copy_only=False)
        if flat.size != 2 * n:
            raise FormatError(
                f"{root}: episode {ep.index}: column {key!r} must hold (x, y) per frame; nothing was imported"
            )
        out[key] = np.asarray(flat, dtype=np.float32).reshape(n, 2)
    return out


def _parquet_columns(path: Path) -> set[str]:
    try:
        return set(pq.read_schema(path).names)
    except (OSError, pa.ArrowInvalid):
        return set()  # _read_parquet reports the unreadable file


def _uncertainty(rows: pa.Table, n: int) -> list[float | None]:
    """Per-frame policy uncertainty, None where the dataset has none (or NaN: a frame no policy scored)."""
    if F.UNCERTAINTY not in rows.column_names:
        return [None] * n
    return [None if v is None or not math.isfinite(v) else float(v) for v in rows.column(F.UNCERTAINTY).to_pylist()]


def _human_in_the_loop(rows: pa.Table, n: int) -> tuple[list[str | None], list[bool | None]]:
    """Per-frame actor names and intervention flags (layout.ACTOR_NAMES), None where the dataset has none: a
    dataset from elsewhere may carry `intervention` alone (LeRobot's own recordings)."""
    actors: list[str | None] = [None] * n
    flags: list[bool | None] = [None] * n
    if F.ACTOR in rows.column_names:
        names = L.ACTOR_NAMES
        actors = [names[i] if i is not None and 0 < i < len(names) else None for i in rows.column(F.ACTOR).to_pylist()]
    if F.INTERVENTION in rows.column_names:
        flags = [None if v is None else bool(v) for v in rows.column(F.INTERVENTION).to_pylist()]
        if all(a is None for a in actors) and any(flags):
            actors = ["teleop" if f else "policy" for f in flags]
    if all(a is None for a in actors):
        flags = [None] * n  # nothing to say: the episode is stored without the columns, as it was recorded
    return actors, flags
