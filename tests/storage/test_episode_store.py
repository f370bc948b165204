"""Episode store: record -> save -> read back, validation, discard, recovery and tampering."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import delete, func, select

from storage.episode_files import sha256_file
from storage.episode_meta import MANIFEST_FILE
from storage.episode_store import CameraSpec, EpisodeStore
from storage.errors import EmptyEpisodeError, InvalidNameError, NotFoundError, RecorderClosedError, RecordingError
from storage.models import Episode


def all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def episode_files_on_disk(data_dir: Path) -> list[str]:
    return [f for f in all_files(data_dir) if not f.startswith("vla.db")]


def count_rows(store: EpisodeStore) -> int:
    with store.session_factory() as s:
        return s.scalar(select(func.count(Episode.id)))


def test_round_trip(h, store: EpisodeStore) -> None:
    n = 40
    rec = store.begin(h.make_meta())
    steps = [h.synthetic_step(i) for i in range(n)]
    for step in steps:
        rec.add_frame(**step)
    assert rec.num_frames == n and rec.frames_dropped == 0 and rec.elapsed > 0
    episode_id = rec.save(auto_success=True, human_success=False)

    info = store.get_episode(episode_id)
    assert (info.dataset, info.task, info.source, info.operator, info.seed) == ("demo", "pick", "teleop", "alice", 1234)
    assert info.length == n and info.fps == 30 and info.duration == pytest.approx(n / 30)
    assert info.auto_success is True and info.human_success is False
    assert info.cameras == h.CAMERAS and info.state_names == h.STATE_NAMES and info.action_names == h.ACTION_NAMES
    assert info.extra == {"colour": "red", "cube_size": 0.04}
    assert info.created_at.tzinfo is not None
    assert [e.id for e in store.list_episodes()] == [episode_id] == [e.id for e in store.list_episodes("demo")]

    table = store.read_table(episode_id)
    assert table.column_names == ["timestamp", "frame_index", "observation.state", "action"]
    assert table.schema.field("timestamp").type == pa.float32()
    assert table.schema.field("frame_index").type == pa.int64()
    assert table.schema.field("observation.state").type == pa.list_(pa.float32(), len(h.STATE_NAMES))
    assert table.schema.field("action").type == pa.list_(pa.float32(), len(h.ACTION_NAMES))
    np.testing.assert_array_equal(table["frame_index"].to_numpy(), np.arange(n))
    np.testing.assert_array_equal(table["timestamp"].to_numpy(), (np.arange(n) / 30).astype(np.float32))
    state = np.stack(table["observation.state"].to_numpy(zero_copy_only=False))
    action = np.stack(table["action"].to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(state, np.stack([s["state"] for s in steps]))
    np.testing.assert_array_equal(action, np.stack([s["action"] for s in steps]))

    files = store.episode_files(episode_id)
    assert files.root == store.data_dir / info.path and files.root.is_dir()
    assert set(files.videos) == {"front", "wrist"}
    for cam in h.CAMERAS:
        frames = store.read_frames(episode_id, cam.name)
        assert frames.shape == (n, cam.height, cam.width, 3) and frames.dtype == np.uint8
        expected = np.stack([s["images"][cam.name] for s in steps]).astype(np.int16)
        err = np.abs(frames.astype(np.int16) - expected).mean(axis=(1, 2, 3))
        assert err.max() < 3.0, f"{cam.name}: per-frame mean abs error {err.max():.2f}"
        # frames are in order: each decoded frame is closest to its own source frame
        assert err.max() < np.abs(frames[5].astype(np.int16) - expected[6]).mean()

    assert info.checksums == {
        rel: sha256_file(files.root / rel) for rel in ("data.parquet", "videos/front.mp4", "videos/wrist.mp4")
    }
    manifest = json.loads(files.manifest.read_text())
    assert manifest["uid"] == info.uid and manifest["checksums"] == info.checksums and manifest["length"] == n
    assert store.check() == []
    assert list(store.tmp_dir.iterdir()) == []


def test_video_encoding_settings(h, store: EpisodeStore) -> None:
    import av

    episode_id = h.record_episode(store, n=70)
    path = store.episode_files(episode_id).videos["front"]
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 30
        pts, keys = [], []
        for packet in c.demux(stream):
            if packet.pts is not None:
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(round(packet.pts * packet.time_base * 30))
    step = sorted(pts)[1] - sorted(pts)[0]
    assert sorted(pts) == [i * step for i in range(70)]  # one pts per frame index, no gaps
    assert keys[:3] == [0, 30, 60]  # a keyframe every second


def test_custom_timestamps_and_buffer_reuse(h, store: EpisodeStore) -> None:
    """Timestamps are taken as given; the caller may reuse its image buffers right after add_frame."""
    rec = store.begin(h.make_meta(cameras=[CameraSpec("front", 64, 64)]))
    buf = np.zeros((64, 64, 3), np.uint8)
    stamps = [0.0, 0.031, 0.07, 0.1, 0.135]
    for i, t in enumerate(stamps):
        buf[...] = h.synthetic_image(i, 64, 64)  # same array, new content
        rec.add_frame(images={"front": buf}, state=np.zeros(4), action=[1, 2, 3, 4], timestamp=t)
    episode_id = rec.save(auto_success=None)
    np.testing.assert_array_equal(store.read_table(episode_id)["timestamp"].to_numpy(), np.float32(stamps))
    frames = store.read_frames(episode_id, "front").astype(np.int16)
    for i in range(len(stamps)):
        assert np.abs(frames[i] - h.synthetic_image(i, 64, 64)).mean() < 3.0
    with pytest.raises(ValueError, match="not after"):
        rec2 = store.begin(h.make_meta())
        rec2.add_frame(**h.synthetic_step(0), timestamp=1.0)
        rec2.add_frame(**h.synthetic_step(1), timestamp=1.0)
    rec2.discard()


def test_discard_leaves_nothing(h, store: EpisodeStore) -> None:
    kept = h.record_episode(store, n=5)
    before = episode_files_on_disk(store.data_dir)
    rec = store.begin(h.make_meta(dataset="other"))
    for i in range(10):
        rec.add_frame(**h.synthetic_step(i))
    assert list(store.tmp_dir.iterdir())  # the take lives in tmp/ while recording
    assert store.check() == []  # a live take is not a problem
    rec.discard()
    assert episode_files_on_disk(store.data_dir) == before
    assert list(store.tmp_dir.iterdir()) == []
    assert [e.id for e in store.list_episodes()] == [kept] and count_rows(store) == 1
    assert store.check() == []
    with pytest.raises(RecorderClosedError):
        rec.add_frame(**h.synthetic_step(0))
    with pytest.raises(RecorderClosedError):
        rec.save(auto_success=True)
    with pytest.raises(RecorderClosedError):
        rec.discard()


def test_context_manager_discards_on_error(h, store: EpisodeStore) -> None:
    with pytest.raises(KeyError):
        with store.begin(h.make_meta()) as rec:
            rec.add_frame(**h.synthetic_step(0))
            raise KeyError("teleop client vanished")
    assert rec.status == "discarded" and list(store.tmp_dir.iterdir()) == [] and count_rows(store) == 0


def test_recorder_closed_after_save(h, store: EpisodeStore) -> None:
    rec = store.begin(h.make_meta())
    rec.add_frame(**h.synthetic_step(0))
    rec.save(auto_success=False)
    with pytest.raises(RecorderClosedError, match="begin"):
        rec.add_frame(**h.synthetic_step(1))
    with pytest.raises(RecorderClosedError):
        rec.save(auto_success=False)
    with pytest.raises(RecorderClosedError):
        rec.discard()


def test_save_without_frames(h, store: EpisodeStore) -> None:
    rec = store.begin(h.make_meta())
    with pytest.raises(EmptyEpisodeError, match="discard"):
        rec.save(auto_success=True)
    rec.discard()  # still possible
    assert list(store.tmp_dir.iterdir()) == [] and count_rows(store) == 0


@pytest.mark.parametrize("name", ["a/b", "..", "../x", "", "x" * 65, "a\\b", ".hidden", "a b", "x/../y", "naïve"])
def test_bad_dataset_names_rejected_before_writing(h, data_dir: Path, session_factory, name: str) -> None:
    store = EpisodeStore(data_dir, session_factory)  # no recover(): nothing created yet
    with pytest.raises(InvalidNameError, match="letters, digits"):
        store.begin(h.make_meta(dataset=name))
    with pytest.raises(InvalidNameError):
        store.ensure_dataset(name)
    assert not (data_dir / "tmp").exists() and not (data_dir / "episodes").exists()
    assert episode_files_on_disk(data_dir) == [] and store.list_episodes() == []


@pytest.mark.parametrize("name", ["pick_v2", "Demo-1", "a.b", "x" * 64, "0"])
def test_good_dataset_names(h, store: EpisodeStore, name: str) -> None:
    assert store.ensure_dataset(name) == store.ensure_dataset(name, "again")


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (dict(source="human"), "source 'human' is not one of"),
        (dict(fps=0), "fps"),
        (dict(fps=29.97), "fps must be an integer"),
        (dict(cameras=[]), "cameras"),
        (dict(cameras=[CameraSpec("front", 63, 64)]), "even"),
        (dict(cameras=[CameraSpec("front", 64, 64), CameraSpec("front", 32, 32)]), "unique"),
        (dict(cameras=[CameraSpec("../front", 64, 64)]), "camera name"),
        (dict(task="pick/place"), "task name"),
        (dict(state_names=[]), "state_names"),
        (dict(action_names=["a", "a"]), "duplicates"),
        (dict(extra={"obj": object()}), "JSON"),
        (dict(seed="7"), "seed"),
    ],
)
def test_bad_meta_rejected_before_writing(h, data_dir: Path, session_factory, overrides: dict, match: str) -> None:
    store = EpisodeStore(data_dir, session_factory)
    with pytest.raises(ValueError, match=match):
        store.begin(h.make_meta(**overrides))
    assert not (data_dir / "tmp").exists()


def _bad(h, kind: str) -> tuple[dict, str]:
    step = h.synthetic_step(0)
    if kind == "shape":
        step["images"]["front"] = np.zeros((64, 96, 3), np.uint8)
        return step, r"shape \(96, 96, 3\)"
    if kind == "gray":
        step["images"]["front"] = np.zeros((96, 96), np.uint8)
        return step, "shape"
    if kind == "dtype":
        step["images"]["wrist"] = step["images"]["wrist"].astype(np.float32)
        return step, "uint8"
    if kind == "missing_camera":
        del step["images"]["wrist"]
        return step, "exactly the cameras"
    if kind == "extra_camera":
        step["images"]["top"] = step["images"]["wrist"]
        return step, "exactly the cameras"
    if kind == "state_len":
        step["state"] = np.zeros(3)
        return step, r"state must have shape \(4,\)"
    if kind == "action_len":
        step["action"] = np.zeros((1, 4))
        return step, r"action must have shape \(4,\)"
    if kind == "nan_action":
        step["action"][2] = np.nan
        return step, r"NaN.*\['dz'\]"
    if kind == "inf_state":
        step["state"][0] = np.inf
        return step, "NaN/inf"
    if kind == "text_state":
        step["state"] = ["a", "b", "c", "d"]
        return step, "numeric"
    raise AssertionError(kind)


BAD_KINDS = [
    "shape", "gray", "dtype", "missing_camera", "extra_camera", "state_len", "action_len", "nan_action", "inf_state",
    "text_state",
]  # fmt: skip


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_frames_rejected_and_take_stays_usable(h, store: EpisodeStore, kind: str) -> None:
    rec = store.begin(h.make_meta())
    rec.add_frame(**h.synthetic_step(0))
    step, match = _bad(h, kind)
    with pytest.raises(ValueError, match=match):
        rec.add_frame(**step)
    assert rec.num_frames == 1
    rec.add_frame(**h.synthetic_step(1))
    episode_id = rec.save(auto_success=None)
    assert store.get_episode(episode_id).length == 2
    assert store.read_frames(episode_id, "front").shape[0] == 2
    assert store.read_table(episode_id).num_rows == 2
    assert store.check() == []


def test_lookups(h, store: EpisodeStore) -> None:
    a = h.record_episode(store, n=3, dataset="alpha", source="scripted", operator=None, seed=None)
    b = h.record_episode(store, n=4, dataset="beta", source="policy")
    assert [e.id for e in store.list_episodes()] == [a, b]
    assert [e.id for e in store.list_episodes("beta")] == [b]
    assert store.get_episode(a).operator is None and store.get_episode(a).seed is None
    store.ensure_dataset("empty")
    assert store.list_episodes("empty") == []
    assert {d.name: d.num_episodes for d in store.list_datasets()} == {"alpha": 1, "beta": 1, "empty": 0}
    with pytest.raises(NotFoundError, match="nope"):
        store.list_episodes("nope")
    with pytest.raises(NotFoundError):
        store.get_episode(999)
    with pytest.raises(NotFoundError, match="camera 'top'"):
        store.read_frames(a, "top")


def test_delete_episode(h, store: EpisodeStore) -> None:
    a = h.record_episode(store, n=3)
    b = h.record_episode(store, n=3)
    root = store.episode_files(a).root
    store.delete_episode(a)
    assert not root.exists() and [e.id for e in store.list_episodes()] == [b]
    assert list(store.tmp_dir.iterdir()) == [] and store.check() == []
    c = h.record_episode(store, n=2)
    assert c > b  # ids are never reused


# -- tampering and recovery ---------------------------------------------------------------------------------------


def test_flipped_byte_in_video_is_reported(h, store: EpisodeStore) -> None:
    episode_id = h.record_episode(store, n=10)
    video = store.episode_files(episode_id).videos["wrist"]
    data = bytearray(video.read_bytes())
    data[len(data) // 2] ^= 0x01
    video.write_bytes(bytes(data))
    problems = store.check()
    assert len(problems) == 1 and "videos/wrist.mp4" in problems[0] and "sha256" in problems[0]


def test_stray_folder_and_files_are_reported(h, store: EpisodeStore) -> None:
    episode_id = h.record_episode(store, n=5)
    root = store.episode_files(episode_id).root
    (store.episodes_dir / "demo" / "stray").mkdir()
    (store.episodes_dir / "README.txt").write_text("hi")
    (root / "notes.txt").write_text("x")
    problems = store.check()
    assert any("orphan" in p and "episodes/demo/stray" in p for p in problems)
    assert any("orphan" in p and "episodes/README.txt" in p for p in problems)
    assert any("unexpected file notes.txt" in p for p in problems)
    assert len(problems) == 3
    # recover() never deletes what does not look like an episode folder of ours
    store.recover()
    assert (store.episodes_dir / "demo" / "stray").is_dir()


def test_missing_files_are_reported(h, store: EpisodeStore) -> None:
    a = h.record_episode(store, n=5)
    b = h.record_episode(store, n=5)
    (store.episode_files(a).table).unlink()
    shutil.rmtree(store.episode_files(b).root)
    problems = store.check()
    assert any(f"episode {a}" in p and "data.parquet is missing" in p for p in problems)
    assert any(f"episode {b}" in p and "folder is missing" in p for p in problems)


def test_recover_cleans_temp_and_registers_moved_folder(h, store: EpisodeStore, session_factory) -> None:
    kept = h.record_episode(store, n=5)
    moved = h.record_episode(store, n=7, dataset="other")
    info = store.get_episode(moved)
    with session_factory.begin() as s:  # as if killed between rename and commit
        s.execute(delete(Episode).where(Episode.id == moved))
    leftover = store.tmp_dir / ("f" * 32)
    (leftover / "videos").mkdir(parents=True)
    (leftover / "videos" / "front.mp4").write_bytes(b"\0" * 100)
    problems = store.check()
    assert any("stale temporary" in p for p in problems) and any("orphan" in p for p in problems)
    assert [e.id for e in store.list_episodes()] == [kept]  # never listed half-way

    fresh = EpisodeStore(store.data_dir, session_factory)  # a restarted process
    report = fresh.recover()
    assert report.removed_temp == [f"tmp/{'f' * 32}"]
    assert len(report.recovered) == 1 and report.quarantined == []
    again = fresh.get_episode(report.recovered[0])
    assert (again.uid, again.path, again.length, again.checksums) == (info.uid, info.path, 7, info.checksums)
    assert again.created_at == info.created_at and again.extra == info.extra
    assert fresh.check() == []
    assert not fresh.recover().changed


def test_database_failure_after_move_keeps_the_take_for_recovery(
    h, store: EpisodeStore, session_factory, monkeypatch
) -> None:
    rec = store.begin(h.make_meta())
    for i in range(6):
        rec.add_frame(**h.synthetic_step(i))

    def database_down(*args, **kwargs):
        raise ConnectionError("database is down")

    monkeypatch.setattr(store, "register", database_down)
    with pytest.raises(RecordingError, match="registered by the store's recovery"):
        rec.save(auto_success=True)
    assert store.list_episodes() == [] and any("orphan" in p for p in store.check())

    fresh = EpisodeStore(store.data_dir, session_factory)  # the next start
    report = fresh.recover()
    assert len(report.recovered) == 1
    assert fresh.get_episode(report.recovered[0]).length == 6
    assert fresh.check() == []


def test_recover_quarantines_corrupt_unregistered_folder(h, store: EpisodeStore, session_factory) -> None:
    episode_id = h.record_episode(store, n=5)
    files = store.episode_files(episode_id)
    with session_factory.begin() as s:
        s.execute(delete(Episode).where(Episode.id == episode_id))
    with open(files.table, "r+b") as f:
        f.seek(10)
        f.write(b"XX")
    report = store.recover()
    assert report.recovered == [] and len(report.quarantined) == 1 and "sha256" in report.quarantined[0]
    assert not files.root.exists() and store.list_episodes() == []
    problems = store.check()
    assert len(problems) == 1 and "lost+found" in problems[0]


def test_recover_finishes_interrupted_delete(h, store: EpisodeStore) -> None:
    episode_id = h.record_episode(store, n=3)
    info = store.get_episode(episode_id)
    os.rename(store.data_dir / info.path, store.tmp_dir / f"{info.uid}.trash")  # killed right after this step
    report = EpisodeStore(store.data_dir, store.session_factory).recover()
    assert report.finished_deletes == [info.uid]
    assert store.list_episodes() == [] and store.check() == []


def test_manifest_is_self_describing(h, store: EpisodeStore) -> None:
    episode_id = h.record_episode(store, n=3)
    manifest = json.loads((store.episode_files(episode_id).root / MANIFEST_FILE).read_text())
    assert manifest["format"] == "vla-episode" and manifest["version"] == 1
    assert manifest["cameras"] == [c.to_dict() for c in h.CAMERAS]
    assert manifest["dataset"] == "demo" and manifest["source"] == "teleop" and manifest["auto_success"] is True


def test_encoder_failure_surfaces_and_discard_cleans_up(h, store: EpisodeStore) -> None:
    """An encoder dying on its thread (disk full, codec error) is reported to the caller, never swallowed."""
    import time

    from storage.errors import RecordingError

    rec = store.begin(h.make_meta())
    rec.add_frame(**h.synthetic_step(0))
    rec._encoders["front"].put(np.zeros((8, 8), np.uint8))  # bypasses validation: not RGB, the encoder fails
    deadline = time.monotonic() + 10
    while rec._encoders["front"].error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(RecordingError, match="front"):
        rec.add_frame(**h.synthetic_step(1))
    with pytest.raises(RecordingError):
        rec.save(auto_success=True)
    rec.discard()
    assert list(store.tmp_dir.iterdir()) == [] and count_rows(store) == 0 and store.check() == []
