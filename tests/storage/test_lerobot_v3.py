"""LeRobot v3.0 export/import (storage.lerobot_v3) against the real episode store and LeRobot's own loader.

LeRobot runs in subprocesses (tests/shims/lerobot_dump.py, lerobot_write.py) with the test-only torchvision shim on
sys.path, so neither lerobot nor the shim leaks into this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers import open_store, record_episode

from storage import features as F
from storage.episode_store import CameraSpec, EpisodeStore
from storage.errors import DestinationNotEmptyError, FormatError, NotFoundError
from storage.lerobot_v3 import export_dataset, import_dataset
from storage.lerobot_v3 import layout as L

SHIMS = Path(__file__).resolve().parents[1] / "shims"
FPS = 15
CAMERAS = [CameraSpec("front", 48, 64), CameraSpec("wrist", 32, 32)]
STATE_NAMES = ["j0", "j1", "j2", "grip"]
ACTION_NAMES = ["a0", "a1", "a2", "a3", "a4"]
# (length, instruction, task, source, operator, seed, auto_success, human_success)
EPISODES = [
    (12, "pick up the red cube", "pick", "teleop", "alice", 1, True, None),
    (20, "push the blue block", "push", "scripted", None, 2, False, True),
    (7, "pick up the red cube", "pick", "policy", None, None, None, False),
]
ARRAY_COLUMNS = [F.OBS_STATE, F.ACTION, F.TIMESTAMP, F.FRAME_INDEX, F.EPISODE_INDEX, F.INDEX, F.TASK_INDEX]
EXPORT_COLUMNS = [*ARRAY_COLUMNS, L.SUBTASK_INDEX, F.INTERVENTION, F.ACTOR, F.UNCERTAINTY]  # ours add the per-frame
# sub-task and the human-in-the-loop columns (LeRobot-written data lacks them)
# Codec tolerance in 0..255 on tiny synthetic frames with hard colour edges (4:2:0 chroma smears them):
MEAN_ABS_TOL = 8.0  # mean |difference|
P99_ABS_TOL = 64  # 99th percentile; single pixels on the edges of the red square may differ more


def synthetic_frames(t_len: int, h: int, w: int, seed: int) -> np.ndarray:
    """(T, H, W, 3) uint8: gradients that drift plus a moving red square (something a codec can keep)."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((t_len, h, w, 3), np.uint8)
    for t in range(t_len):
        out[t, ..., 0] = np.clip(xx * 180 // w + 3 * t + 20 * seed, 0, 255)
        out[t, ..., 1] = np.clip(yy * 180 // h + 2 * t, 0, 255)
        out[t, ..., 2] = 128
        x = (4 + 3 * t + 5 * seed) % (w - 12)
        out[t, h // 3 : h // 3 + 10, x : x + 10] = (250, 30, 30)
    return out


def record_demo(store: EpisodeStore, dataset: str = "demo") -> list[dict]:
    """3 episodes, 2 cameras, different lengths, 2 instructions; returns what was recorded."""
    truth = []
    for i, (n, instruction, task, source, operator, seed, auto, human) in enumerate(EPISODES):
        rng = np.random.default_rng(i)
        frames = {c.name: synthetic_frames(n, c.height, c.width, i + j) for j, c in enumerate(CAMERAS)}
        state = rng.standard_normal((n, len(STATE_NAMES))).astype(np.float32)
        action = rng.standard_normal((n, len(ACTION_NAMES))).astype(np.float32)

        def step(t, cameras, frames=frames, state=state, action=action):
            return dict(images={c: f[t] for c, f in frames.items()}, state=state[t], action=action[t])

        eid = record_episode(
            store, n, step=step, auto_success=auto, human_success=human, dataset=dataset, task=task,
            instruction=instruction, source=source, fps=FPS, cameras=CAMERAS, state_names=STATE_NAMES,
            action_names=ACTION_NAMES, operator=operator, seed=seed, extra={"episode": i, "colour": "red"},
        )  # fmt: skip
        truth.append({"id": eid, "frames": frames, "state": state, "action": action})
    return truth


@pytest.fixture
def store(tmp_path: Path) -> EpisodeStore:
    """A store in tmp_path/store: the tests check that exports leave nothing else in tmp_path."""
    return open_store(tmp_path / "store", recover=False)


@pytest.fixture
def demo(store: EpisodeStore) -> list[dict]:
    return record_demo(store)


def run_lerobot(script: str, *args: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "PYTHONPATH": ""}
    proc = subprocess.run(
        [sys.executable, str(SHIMS / script), *map(str, args)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"


def lerobot_dump(root: Path, tmp_path: Path) -> dict[str, np.ndarray]:
    out = tmp_path / f"dump_{root.name}.npz"
    run_lerobot("lerobot_dump.py", root, out, tmp_path=tmp_path)
    with np.load(out) as d:
        return {k: d[k] for k in d.files}


def read_data(root: Path) -> pd.DataFrame:
    paths = sorted((root / "data").glob("*/*.parquet"))
    return pd.concat([pq.read_table(p).to_pandas() for p in paths], ignore_index=True)


def read_episodes(root: Path) -> pd.DataFrame:
    paths = sorted((root / L.EPISODES_DIR).glob("*/*.parquet"))
    return pd.concat([pq.read_table(p).to_pandas() for p in paths], ignore_index=True)


def episode_cell(root: Path, column: str, row: int):
    return pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").column(column)[row].as_py()


def decode_export(root: Path, key: str) -> np.ndarray:
    """Every frame of one camera of an export, in dataset order, via the episodes' from/to timestamps."""
    from storage import video

    info = json.loads((root / L.INFO_PATH).read_text())
    out = []
    for _, ep in read_episodes(root).iterrows():
        path = root / L.video_path(key, ep[f"videos/{key}/chunk_index"], ep[f"videos/{key}/file_index"])
        start = ep[f"videos/{key}/from_timestamp"]
        out.append(video.decode_at(path, [start + k / info["fps"] for k in range(ep["length"])], 1e-4))
    return np.concatenate(out)


def snapshot(store: EpisodeStore) -> tuple:
    """Everything an import could add: dataset rows, episode rows, files under the data dir."""
    files = sorted(p.relative_to(store.data_dir).as_posix() for p in store.data_dir.rglob("*") if p.is_file())
    return [(d.name, d.num_episodes) for d in store.list_datasets()], [e.id for e in store.list_episodes()], files


def assert_close_frames(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    p99 = np.percentile(diff, 99)
    assert diff.mean() < MEAN_ABS_TOL and p99 <= P99_ABS_TOL, (diff.mean(), p99)


# --------------------------------------------------------------------------------------------------------------------
def test_export_layout_and_metadata(store: EpisodeStore, demo: list[dict], tmp_path: Path) -> None:
    out = tmp_path / "export"
    calls: list[tuple[int, int]] = []
    t0 = time.perf_counter()
    assert export_dataset(store, "demo", out, progress=lambda d, n: calls.append((d, n))) == out.absolute()
    print(f"export of {sum(e[0] for e in EPISODES)} frames x 2 cameras: {time.perf_counter() - t0:.3f} s")
    assert calls[-1][0] == calls[-1][1] and [d for d, _ in calls] == list(range(1, len(calls) + 1))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export")]  # temp sibling renamed away

    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [
        "data/chunk-000/file-000.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "meta/info.json",
        "meta/stats.json",
        "meta/subtasks.parquet",
        "meta/tasks.parquet",
        "videos/observation.images.front/chunk-000/file-000.mp4",
        "videos/observation.images.wrist/chunk-000/file-000.mp4",
    ]
    info = json.loads((out / L.INFO_PATH).read_text())
    lengths = [e[0] for e in EPISODES]
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, sum(lengths), 2)
    assert info["splits"] == {"train": "0:3"}
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    for key in ("chunks_size", "data_files_size_in_mb", "video_files_size_in_mb", "robot_type"):
        assert key in info
    feats = info["features"]
    assert set(feats) == {"observation.images.front", "observation.images.wrist", *EXPORT_COLUMNS}
    assert feats["subtask_index"] == feats["task_index"] == {"dtype": "int64", "shape": [1], "names": None}
    assert feats["observation.state"] == {"dtype": "float32", "shape": [4], "names": STATE_NAMES}
    assert feats["action"] == {"dtype": "float32", "shape": [5], "names": ACTION_NAMES}
    front = feats["observation.images.front"]
    assert front["dtype"] == "video" and front["shape"] == [48, 64, 3]
    assert front["info"]["video.codec"] == "h264" and front["info"]["video.fps"] == FPS

    tasks = pd.read_parquet(out / L.TASKS_PATH)
    assert list(tasks.index) == ["pick up the red cube", "push the blue block"]
    assert tasks["task_index"].tolist() == [0, 1]
    subtasks = pd.read_parquet(out / L.SUBTASKS_PATH)  # written even without segments: only "no sub-task"
    assert list(subtasks.index) == [""] and subtasks["subtask_index"].tolist() == [0]

    eps = read_episodes(out)
    assert eps["episode_index"].tolist() == [0, 1, 2]
    assert eps["length"].tolist() == lengths
    pick, push = ["pick up the red cube"], ["push the blue block"]
    assert [list(t) for t in eps["tasks"]] == [pick, push, pick]
    assert eps["dataset_from_index"].tolist() == [0, 12, 32] and eps["dataset_to_index"].tolist() == [12, 32, 39]
    for key in ("observation.images.front", "observation.images.wrist"):
        assert eps[f"videos/{key}/from_timestamp"].tolist() == pytest.approx([0, 12 / FPS, 32 / FPS])
        assert eps[f"videos/{key}/to_timestamp"].tolist() == pytest.approx([12 / FPS, 32 / FPS, 39 / FPS])
        assert np.asarray(episode_cell(out, f"stats/{key}/mean", 0)).shape == (3, 1, 1)
    assert np.asarray(episode_cell(out, "stats/action/min", 1)) == pytest.approx(demo[1]["action"].min(axis=0))
    assert episode_cell(out, "stats/action/count", 1) == [20]
    assert eps["vla_dashboard/task"].tolist() == ["pick", "push", "pick"]
    assert eps["vla_dashboard/source"].tolist() == ["teleop", "scripted", "policy"]
    assert eps["vla_dashboard/operator"].tolist()[0] == "alice"

    stats = json.loads((out / L.STATS_PATH).read_text())
    all_state = np.concatenate([d["state"] for d in demo])
    assert np.asarray(stats["observation.state"]["mean"]) == pytest.approx(all_state.mean(axis=0), abs=1e-5)
    assert np.asarray(stats["observation.state"]["std"]) == pytest.approx(all_state.std(axis=0), abs=1e-5)
    assert stats["index"]["count"] == [39]

    data = read_data(out)
    assert list(data.columns) == EXPORT_COLUMNS
    assert data["subtask_index"].tolist() == [0] * 39  # no segments: every frame is row 0 ("") of subtasks.parquet
    assert np.array_equal(np.stack(data[F.OBS_STATE]), np.concatenate([d["state"] for d in demo]))
    assert data[F.INDEX].tolist() == list(range(39))
    assert data[F.TASK_INDEX].tolist() == [0] * 12 + [1] * 20 + [0] * 7


def test_lerobot_loads_export_offline(store: EpisodeStore, demo: list[dict], tmp_path: Path) -> None:
    """LeRobot 0.4.x's LeRobotDataset reads the folder offline and decodes every frame of every episode."""
    out = export_dataset(store, "demo", tmp_path / "export")
    d = lerobot_dump(out, tmp_path)
    lengths = [e[0] for e in EPISODES]
    assert str(d["_meta_lerobot_version"]).startswith("0.4.")
    assert int(d["_meta_num_episodes"]) == 3 and int(d["_meta_num_frames"]) == sum(lengths) == len(d["index"])
    assert np.array_equal(d["observation.state"], np.concatenate([x["state"] for x in demo]))
    assert np.array_equal(d["action"], np.concatenate([x["action"] for x in demo]))
    assert np.array_equal(d["frame_index"], np.concatenate([np.arange(n) for n in lengths]))
    assert np.array_equal(d["episode_index"], np.repeat([0, 1, 2], lengths))
    assert np.array_equal(d["index"], np.arange(sum(lengths)))
    assert np.allclose(d["timestamp"], np.concatenate([np.arange(n) / FPS for n in lengths]), atol=1e-6)
    assert d["task"].tolist() == [EPISODES[e][1] for e in np.repeat([0, 1, 2], lengths)]
    assert d["subtask"].tolist() == [""] * sum(lengths)  # LeRobot maps subtask_index through subtasks.parquet
    assert "vla_dashboard/task" in d["_meta_episode_columns"].tolist()  # LeRobot keeps our extra columns
    for cam in CAMERAS:
        got = d[f"observation.images.{cam.name}"].transpose(0, 2, 3, 1)  # (N, H, W, 3)
        # Remuxed, not re-encoded: LeRobot decodes exactly what the store decodes ...
        ours = np.concatenate([store.read_frames(x["id"], cam.name) for x in demo])
        assert np.abs(got.astype(np.int16) - ours).max() <= 1
        # ... which is the recorded frames within codec tolerance.
        assert_close_frames(got, np.concatenate([x["frames"][cam.name] for x in demo]))


def test_round_trip_export_import_export(store: EpisodeStore, demo: list[dict], tmp_path: Path) -> None:
    first = export_dataset(store, "demo", tmp_path / "first")
    before = {e.id for e in store.list_episodes()}
    t0 = time.perf_counter()
    ids = import_dataset(store, first, "demo_copy")
    print(f"import of 3 episodes: {time.perf_counter() - t0:.3f} s")
    assert len(ids) == 3 and not before & set(ids)
    originals, copies = store.list_episodes("demo"), store.list_episodes("demo_copy")
    assert [c.id for c in copies] == ids
    for a, b in zip(originals, copies, strict=True):
        fields = ("task", "instruction", "source", "operator", "seed", "auto_success", "human_success", "extra")
        assert {f: getattr(a, f) for f in fields} == {f: getattr(b, f) for f in fields}
        assert (a.fps, a.length, a.cameras, a.state_names, a.action_names) == (
            b.fps, b.length, b.cameras, b.state_names, b.action_names,
        )  # fmt: skip
        ta, tb = store.read_table(a.id), store.read_table(b.id)
        assert ta.select(tb.column_names).equals(tb)
        for cam in CAMERAS:
            assert_close_frames(store.read_frames(b.id, cam.name), store.read_frames(a.id, cam.name))

    second = export_dataset(store, "demo_copy", tmp_path / "second")
    d1, d2 = read_data(first), read_data(second)
    for col in EXPORT_COLUMNS:
        assert np.array_equal(np.stack(d1[col]), np.stack(d2[col]), equal_nan=col == F.UNCERTAINTY), col
    e1, e2 = read_episodes(first), read_episodes(second)
    same = [c for c in e1.columns if not c.startswith(("stats/observation.images", "vla_dashboard/episode_id"))]
    same = [c for c in same if c != "vla_dashboard/created_at"]
    assert list(e1.columns) == list(e2.columns)
    assert e1[same].astype(str).equals(e2[same].astype(str))
    for key in ("observation.images.front", "observation.images.wrist"):
        assert_close_frames(decode_export(second, key), decode_export(first, key))


def test_multi_file_export_imports(store: EpisodeStore, demo: list[dict], tmp_path: Path) -> None:
    """Tiny size limits: one data file and one video file per episode; the importer follows the indices."""
    out = export_dataset(store, "demo", tmp_path / "split", data_files_size_in_mb=0, video_files_size_in_mb=0)
    assert len(list((out / "data").glob("*/*.parquet"))) == 3
    assert len(list((out / "videos/observation.images.front").glob("*/*.mp4"))) == 3
    eps = read_episodes(out)
    assert eps["videos/observation.images.front/from_timestamp"].tolist() == [0, 0, 0]
    ids = import_dataset(store, out, "from_split")
    for x, eid in zip(demo, ids, strict=True):
        table = store.read_table(eid)
        assert np.array_equal(np.stack(table.column(F.ACTION).to_pylist()).astype(np.float32), x["action"])


def test_export_reencodes_when_remux_is_impossible(
    store: EpisodeStore, demo: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback path (episodes whose MP4s differ in codec parameters): decode + encode, same timestamps."""
    from storage.lerobot_v3 import export as export_mod

    monkeypatch.setattr(export_mod.mp4, "concat_remux", lambda *a, **k: False)
    out = export_dataset(store, "demo", tmp_path / "reencoded")
    for cam in CAMERAS:
        got = decode_export(out, f"observation.images.{cam.name}")  # frames found at from_timestamp + k / fps
        assert_close_frames(got, np.concatenate([x["frames"][cam.name] for x in demo]))
    assert len(import_dataset(store, out, "from_reencoded")) == 3


# -- bad input ---------------------------------------------------------------------------------------------------
def test_export_refuses_non_empty_destination(store: EpisodeStore, demo: list[dict], tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DestinationNotEmptyError, match="not empty"):
        export_dataset(store, "demo", out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "store"]  # no temp sibling left
    empty = tmp_path / "empty"
    empty.mkdir()
    export_dataset(store, "demo", empty)  # an existing empty folder is fine
    assert (empty / L.INFO_PATH).is_file()


def test_export_unknown_dataset(store: EpisodeStore, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        export_dataset(store, "nope", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _damage_missing_info(root: Path) -> None:
    (root / L.INFO_PATH).unlink()


def _damage_truncated_data(root: Path) -> None:
    _truncate(root / "data/chunk-000/file-000.parquet")


def _damage_garbled_data(root: Path) -> None:
    path = root / "data/chunk-000/file-000.parquet"
    data = bytearray(path.read_bytes())
    data[4:-12] = bytes(len(data) - 16)  # keep the magic bytes, zero the pages and most of the footer
    path.write_bytes(bytes(data))


def _damage_deleted_video(root: Path) -> None:
    (root / "videos/observation.images.wrist/chunk-000/file-000.mp4").unlink()


def _damage_truncated_video(root: Path) -> None:
    _truncate(root / "videos/observation.images.front/chunk-000/file-000.mp4", 0.6)


def _damage_short_video(root: Path) -> None:
    """A valid video that lacks the last episode's frames (re-encoded from the first 30 of 39)."""
    from storage import video
    from storage.lerobot_v3.mp4 import REENCODE_SETTINGS

    path = root / "videos/observation.images.front/chunk-000/file-000.mp4"
    frames = list(video.iter_frames(path))[:30]
    path.unlink()
    video.write_video(frames, path, fps=FPS, height=48, width=64, settings=REENCODE_SETTINGS)


def _damage_wrong_version(root: Path) -> None:
    info = json.loads((root / L.INFO_PATH).read_text())
    info["codebase_version"] = "v2.1"
    (root / L.INFO_PATH).write_text(json.dumps(info))


def _damage_length_mismatch(root: Path) -> None:
    path = root / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(path).to_pandas()
    table.loc[1, "length"] = 21  # total_frames still adds up: only the per-episode row count can tell
    table.loc[2, "length"] = 6
    table.to_parquet(path)


def _damage_missing_tasks(root: Path) -> None:
    (root / L.TASKS_PATH).unlink()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_damage_missing_info, "missing meta/info.json"),
        (_damage_truncated_data, "data/chunk-000/file-000.parquet is truncated or corrupt"),
        (_damage_garbled_data, "data/chunk-000/file-000.parquet is truncated or corrupt"),
        (_damage_deleted_video, "missing video file videos/observation.images.wrist/chunk-000/file-000.mp4"),
        (_damage_truncated_video, "videos/observation.images.front/chunk-000/file-000.mp4"),
        (_damage_short_video, "fewer frames than the episode needs"),
        (_damage_wrong_version, "codebase_version 'v2.1'"),
        (_damage_length_mismatch, "episode 1 has length 21"),
        (_damage_missing_tasks, "missing tasks file meta/tasks.parquet"),
    ],
)
def test_import_rejects_bad_folder(store: EpisodeStore, demo: list[dict], tmp_path: Path, damage, message) -> None:
    root = export_dataset(store, "demo", tmp_path / "export")
    damage(root)
    before = snapshot(store)
    with pytest.raises(FormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_dataset(store, root, "imported")
    assert snapshot(store) == before


def test_import_failure_mid_way_removes_what_it_added(
    store: EpisodeStore, demo: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = export_dataset(store, "demo", tmp_path / "export")
    before = snapshot(store)
    real_begin, calls = store.begin, []

    def flaky_begin(meta):
        calls.append(meta)
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        return real_begin(meta)

    monkeypatch.setattr(store, "begin", flaky_begin)
    with pytest.raises(OSError, match="disk full"):
        import_dataset(store, root, "half")
    assert len(calls) == 3
    assert snapshot(store) == before  # the 2 saved episodes and the new dataset row are gone


@pytest.mark.slow
def test_import_dataset_written_by_lerobot(store: EpisodeStore, tmp_path: Path) -> None:
    """A folder LeRobot recorded itself: AV1 video, a new data/video file per episode."""
    root = tmp_path / "native"
    run_lerobot("lerobot_write.py", root, tmp_path / "truth.npz", tmp_path=tmp_path)
    with np.load(tmp_path / "truth.npz") as t:
        truth = {k: t[k] for k in t.files}
    info = json.loads((root / L.INFO_PATH).read_text())
    assert info["features"]["observation.images.top"]["info"]["video.codec"] == "av1"
    assert len(list((root / "data").glob("*/*.parquet"))) == 2
    ids = import_dataset(store, root, "native")
    eps = store.list_episodes("native")
    assert [e.length for e in eps] == truth["lengths"].tolist()
    assert [e.instruction for e in eps] == ["stack the cubes", "open the drawer"]
    assert eps[0].cameras == [CameraSpec("top", 64, 64)] and eps[0].state_names == ["x", "y", "z"]
    state = np.concatenate([np.stack(store.read_table(i).column(F.OBS_STATE).to_pylist()) for i in ids])
    assert np.array_equal(state.astype(np.float32), truth["state"])
    frames = np.concatenate([store.read_frames(i, "top") for i in ids])
    assert_close_frames(frames, truth["frames"])  # AV1 CRF 30 then H.264 CRF 18


@pytest.mark.slow
def test_export_survives_lerobot_round_trip_of_imported_native(store: EpisodeStore, tmp_path: Path) -> None:
    """LeRobot-written -> import -> export -> LeRobot loads it again, with the same arrays."""
    root = tmp_path / "native"
    run_lerobot("lerobot_write.py", root, tmp_path / "truth.npz", tmp_path=tmp_path)
    import_dataset(store, root, "native")
    out = export_dataset(store, "native", tmp_path / "again")
    a, b = lerobot_dump(root, tmp_path), lerobot_dump(out, tmp_path)
    for col in ARRAY_COLUMNS:
        assert np.array_equal(a[col], b[col]), col
    assert a["task"].tolist() == b["task"].tolist()
    assert_close_frames(b["observation.images.top"], a["observation.images.top"])


def test_shim_is_not_importable_here() -> None:
    """The torchvision stand-in lives only in subprocesses; the real package must not be installed either."""
    import importlib.util

    assert importlib.util.find_spec("torchvision") is None
    assert not any("shims" in p for p in sys.path)


def test_intervention_and_actor_columns_survive_export_and_import(store: EpisodeStore, tmp_path: Path) -> None:
    """A correction take (policy, then an operator, then the policy) exports LeRobot's per-frame `intervention`
    flag, the actor index and the policy's uncertainty (NaN on the operator's frames); importing restores all
    three; an episode recorded without them exports False/unknown/NaN."""
    from helpers import synthetic_step

    actors = ["policy"] * 4 + ["teleop"] * 3 + ["policy"] * 2
    scores = [0.5 + 0.25 * i if a == "policy" else None for i, a in enumerate(actors)]  # exact in float32

    def step(i, cameras):
        return {**synthetic_step(i, cameras), "actor": actors[i], "intervention": actors[i] == "teleop" and i >= 4,
                "uncertainty": scores[i]}  # fmt: skip

    corrected = record_episode(store, len(actors), step=step, dataset="hitl")
    plain = record_episode(store, 5, dataset="hitl")
    out = export_dataset(store, "hitl", tmp_path / "hitl")
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["features"][F.INTERVENTION]["dtype"] == "bool"
    assert info["features"][F.ACTOR]["names"] == list(L.ACTOR_NAMES)
    data = pd.concat([pd.read_parquet(p) for p in sorted((out / "data").rglob("*.parquet"))])
    by_episode = {i: g for i, g in data.groupby("episode_index")}
    flags = [bool(v) for v in by_episode[0][F.INTERVENTION]]
    assert flags == [a == "teleop" for a in actors]
    assert [L.ACTOR_NAMES[i] for i in by_episode[0][F.ACTOR]] == actors
    assert not by_episode[1][F.INTERVENTION].any() and (by_episode[1][F.ACTOR] == 0).all()
    assert [None if np.isnan(v) else float(v) for v in by_episode[0][F.UNCERTAINTY]] == scores
    assert by_episode[1][F.UNCERTAINTY].isna().all()
    stats_json = json.loads((out / "meta" / "stats.json").read_text())
    assert stats_json[F.UNCERTAINTY]["max"] == [max(s for s in scores if s is not None)]  # finite: scored frames only

    ids = import_dataset(store, out, "hitl_copy")
    copy = store.read_table(ids[0])
    assert copy.column(F.ACTOR).to_pylist() == actors == store.read_table(corrected).column(F.ACTOR).to_pylist()
    assert copy.column(F.INTERVENTION).to_pylist() == flags
    assert [None if np.isnan(v) else v for v in copy.column(F.UNCERTAINTY).to_pylist()] == scores
    assert F.ACTOR not in store.read_table(ids[1]).column_names and F.ACTOR not in store.read_table(plain).column_names


def test_grounding_signal_survives_trim_export_and_import(store: EpisodeStore, tmp_path: Path) -> None:
    """The sim's training-only grounding column (features.grounding_key) is stored per frame, kept by a trim,
    exported as a (2,) float32 LeRobot feature (NaN where out of view; stats over the known frames) and restored by
    an import; a signal of the wrong name or size is refused before anything is stored."""
    from helpers import synthetic_step

    from storage.annotations import AnnotationService
    from storage.episode_edit import trim_episode

    key = F.grounding_key("front")
    xy = [[0.1 * i, -0.05 * i] if i != 3 else [np.nan, np.nan] for i in range(8)]

    def step(i, cameras):
        return {**synthetic_step(i, cameras), "signals": {key: xy[i]}}

    eid = record_episode(store, 8, step=step, dataset="sig")
    table = store.read_table(eid)
    assert F.grounding_key("wrist") not in table.column_names
    stored = np.asarray(table.column(key).to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(stored, np.asarray(xy, dtype=np.float32))

    trimmed = trim_episode(store, AnnotationService(store.session_factory), eid, 2, 6, user="t")
    kept = np.asarray(store.read_table(trimmed).column(key).to_pylist(), np.float32)
    np.testing.assert_array_equal(kept, stored[2:7])

    out = export_dataset(store, "sig", tmp_path / "sig")
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["features"][key] == L.GROUNDING_FEATURE
    data = read_data(out)
    np.testing.assert_array_equal(np.stack(data[key].to_numpy()).astype(np.float32), stored[2:7])
    stats_json = json.loads((out / "meta" / "stats.json").read_text())
    assert stats_json[key]["max"] == pytest.approx([0.6, -0.1])  # frames 2, 4, 5, 6: NaN left out

    ids = import_dataset(store, out, "sig_copy")
    np.testing.assert_array_equal(np.asarray(store.read_table(ids[0]).column(key).to_pylist(), np.float32), stored[2:7])

    from helpers import make_meta

    rec = store.begin(make_meta(dataset="sig"))
    with pytest.raises(ValueError, match="unknown training signal"):
        rec.add_frame(**synthetic_step(0), signals={"grounding.front": [0, 0]})
    with pytest.raises(ValueError, match="2 numbers"):
        rec.add_frame(**synthetic_step(0), signals={key: [0, 0, 0]})
    assert rec.num_frames == 0
    rec.discard()
