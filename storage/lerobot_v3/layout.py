"""LeRobot v3.0 dataset layout: paths, feature keys, info.json and parquet schemas (as LeRobot 0.4.x reads them).

A v3.0 folder (LeRobot ``datasets/utils.py`` and ``lerobot_dataset.py``)::

    meta/info.json                                    codebase_version, fps, features, path templates, totals
    meta/stats.json                                   per-feature stats aggregated over all episodes
    meta/tasks.parquet                                index: task string; column task_index (int64); ours also
                                                      lists paraphrases (annotation_io)
    meta/subtasks.parquet                             optional, same layout: index: sub-task string; column
                                                      subtask_index (int64); ours: "" then the segment texts
    meta/episodes/chunk-XXX/file-YYY.parquet          one row per episode, in episode_index order
    data/chunk-XXX/file-YYY.parquet                   one row per frame, episodes concatenated (ours add
                                                      subtask_index: a subtasks.parquet row, 0 outside segments)
    videos/<video_key>/chunk-XXX/file-YYY.mp4         one stream, episodes concatenated; an episode is the
                                                      [from_timestamp, to_timestamp) window of its file

LeRobot looks rows up by position (``meta.episodes[ep_idx]``, ``tasks.iloc[task_index]``,
``subtasks.iloc[subtask_index]``), so episode_index, task_index and subtask_index must equal their row numbers;
``index`` is the global frame number (the data row number).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from storage.features import (
    EPISODE_INDEX,
    FRAME_INDEX,
    INDEX,
    OBS_IMAGES_PREFIX,
    TASK_INDEX,
    TIMESTAMP,
)

CODEBASE_VERSION = "v3.0"

DEFAULT_CHUNK_SIZE = 1000  # max files per chunk folder
DEFAULT_DATA_FILE_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILE_SIZE_IN_MB = 200

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
SUBTASKS_PATH = "meta/subtasks.parquet"  # LeRobot's DEFAULT_SUBTASKS_PATH; read by LeRobotDataset when present
EPISODES_DIR = "meta/episodes"
DATA_DIR = "data"
VIDEO_DIR = "videos"
CHUNK_FILE_PATTERN = "chunk-{chunk_index:03d}/file-{file_index:03d}"
EPISODES_PATH = EPISODES_DIR + "/" + CHUNK_FILE_PATTERN + ".parquet"
DATA_PATH = DATA_DIR + "/" + CHUNK_FILE_PATTERN + ".parquet"
VIDEO_PATH = VIDEO_DIR + "/{video_key}/" + CHUNK_FILE_PATTERN + ".mp4"


# Scalar columns every LeRobot dataset has, in the order LeRobot appends them (DEFAULT_FEATURES).
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    TIMESTAMP: {"dtype": "float32", "shape": [1], "names": None},
    FRAME_INDEX: {"dtype": "int64", "shape": [1], "names": None},
    EPISODE_INDEX: {"dtype": "int64", "shape": [1], "names": None},
    INDEX: {"dtype": "int64", "shape": [1], "names": None},
    TASK_INDEX: {"dtype": "int64", "shape": [1], "names": None},
}

# The per-frame sub-task column (see annotation_io): declared like LeRobot's own int columns. LeRobot maps it to
# ``item["subtask"]`` through meta/subtasks.parquet when the feature and the file are both there. It belongs in
# storage.features once that module takes it; the string is LeRobot's own name for the feature.
SUBTASK_INDEX = "subtask_index"
SUBTASK_FEATURE: dict[str, Any] = {"dtype": "int64", "shape": [1], "names": None}

# Human-in-the-loop columns of policy rollouts (storage.features INTERVENTION, ACTOR): `intervention` as LeRobot's
# own recording writes it (bool, True where an operator's action replaced the policy's), and which command source
# produced each action as an index into ACTOR_NAMES (its feature's "names"). Episodes recorded without them export
# False / "unknown".
ACTOR_NAMES = ("unknown", "policy", "teleop", "expert", "idle")
INTERVENTION_FEATURE: dict[str, Any] = {"dtype": "bool", "shape": [1], "names": None}
ACTOR_FEATURE: dict[str, Any] = {"dtype": "int64", "shape": [1], "names": list(ACTOR_NAMES)}
# The driving policy's uncertainty score per frame (storage.features UNCERTAINTY): NaN where no policy predicted
# (teleop frames, demos). LeRobot's loader keeps an extra float column; its stats cover the scored frames only.
UNCERTAINTY_FEATURE: dict[str, Any] = {"dtype": "float32", "shape": [1], "names": None}
# The sim's training-only grounding signal per camera (storage.features grounding_key): the instructed object's
# (x, y) in [-1, 1] in that image, NaN where out of view; stats cover the frames where it is known.
GROUNDING_FEATURE: dict[str, Any] = {"dtype": "float32", "shape": [2], "names": ["x", "y"]}

# Stats LeRobot 0.4.x computes per feature (compute_stats.py, DEFAULT_QUANTILES = 0.01 ... 0.99).
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}

# Our own per-episode metadata, stored as extra columns of meta/episodes/*.parquet so a round trip keeps it.
# LeRobot's loader keeps unknown episode columns and ignores them (verified against lerobot 0.4.4).
VLA_PREFIX = "vla_dashboard/"
VLA_COLUMNS = (
    "episode_id",  # our id at export time (provenance only; not imported)
    "task",
    "source",
    "operator",
    "seed",
    "auto_success",
    "human_success",
    "created_at",  # provenance only; an import gets a new created_at
    "extra",  # JSON text
    # annotations (annotation_io): restored on import, except the version
    "paraphrases",  # list<string>
    "segments",  # JSON text: [{"start", "end" (inclusive), "text"}]
    "failure_reason",
    "notes",
    "annotation_version",  # provenance only
)


def video_key(camera: str) -> str:
    return OBS_IMAGES_PREFIX + camera


def camera_name(key: str) -> str:
    """LeRobot video key -> our camera name ("observation.images.top" -> "top", "observation.image" -> "image")."""
    if key.startswith(OBS_IMAGES_PREFIX):
        name = key[len(OBS_IMAGES_PREFIX) :]
    elif key.startswith("observation."):
        name = key[len("observation.") :]
    else:
        name = key
    return name.replace(".", "_").replace("/", "_")


def data_path(chunk_index: int, file_index: int, template: str = DATA_PATH) -> str:
    return template.format(chunk_index=chunk_index, file_index=file_index)


def video_path(key: str, chunk_index: int, file_index: int, template: str = VIDEO_PATH) -> str:
    return template.format(video_key=key, chunk_index=chunk_index, file_index=file_index)


def episodes_path(chunk_index: int, file_index: int) -> str:
    return EPISODES_PATH.format(chunk_index=chunk_index, file_index=file_index)


def next_chunk_file(chunk_index: int, file_index: int, chunks_size: int) -> tuple[int, int]:
    """The (chunk, file) after this one: files fill a chunk folder up to chunks_size, then a new chunk starts."""
    return (chunk_index + 1, 0) if file_index >= chunks_size - 1 else (chunk_index, file_index + 1)


def vector_feature(names: list[str]) -> dict[str, Any]:
    return {"dtype": "float32", "shape": [len(names)], "names": list(names)}


def video_feature(height: int, width: int, video_info: dict[str, Any]) -> dict[str, Any]:
    return {
        "dtype": "video",
        "shape": [height, width, 3],
        "names": ["height", "width", "channels"],
        "info": video_info,
    }


def make_info(
    *,
    fps: int,
    features: dict[str, dict[str, Any]],
    total_episodes: int,
    total_frames: int,
    total_tasks: int,
    robot_type: str | None,
    chunks_size: int = DEFAULT_CHUNK_SIZE,
    data_files_size_in_mb: int = DEFAULT_DATA_FILE_SIZE_IN_MB,
    video_files_size_in_mb: int = DEFAULT_VIDEO_FILE_SIZE_IN_MB,
) -> dict[str, Any]:
    """meta/info.json, key for key what LeRobot's create_empty_dataset_info + save_episode leave behind."""
    has_video = any(ft["dtype"] == "video" for ft in features.values())
    return {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": total_episodes,
        "total_frames": total_frames,
        "total_tasks": total_tasks,
        "chunks_size": chunks_size,
        "data_files_size_in_mb": data_files_size_in_mb,
        "video_files_size_in_mb": video_files_size_in_mb,
        "fps": fps,
        "splits": {"train": f"0:{total_episodes}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if has_video else None,
        "features": features,
    }


def hf_features_metadata(features: dict[str, dict[str, Any]]) -> bytes:
    """The ``huggingface`` schema metadata that HF ``datasets`` 4 puts on the parquet files LeRobot writes.

    LeRobot passes explicit features when it reads data files, so this is informational; it lets other
    ``datasets`` readers see fixed-length float vectors instead of generic lists.
    """
    hf: dict[str, Any] = {}
    for key, ft in features.items():
        if ft["dtype"] in ("video", "image"):
            continue
        value = {"dtype": ft["dtype"], "_type": "Value"}
        if list(ft["shape"]) == [1]:
            hf[key] = value
        else:
            hf[key] = {"feature": value, "length": int(ft["shape"][0]), "_type": "List"}
    return json.dumps({"info": {"features": hf}}).encode()


def write_json(data: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=4, ensure_ascii=False)
