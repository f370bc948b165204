"""The memory-mapped frame cache: one file per episode and camera, re-decoded when its key changes or the file is
torn, batches equal to decoding into RAM, and a window dataset that never copies the frames into private memory."""

from __future__ import annotations

import dataclasses
import resource
from pathlib import Path

import numpy as np
import pytest
from helpers import record_episode

from storage.features import image_key
from vla_core import data as vdata
from vla_core import frame_cache


def _count_decodes(monkeypatch) -> list[int]:
    """Wrap vdata.decode_video so a test can see how often the cache decoded a video."""
    calls: list[int] = []
    real = vdata.decode_video

    def counting(path, size):
        calls.append(size)
        return real(path, size)

    monkeypatch.setattr(vdata, "decode_video", counting)
    return calls


def test_frames_are_read_only_maps_of_one_file_per_episode_and_camera(store, tmp_path, monkeypatch):
    ids = [record_episode(store, 6, dataset="ds"), record_episode(store, 4, dataset="ds")]
    infos = vdata.list_dataset_episodes(store, "ds")
    cams, cache = ["front", "wrist"], tmp_path / "cache"
    in_ram = vdata.load_episodes(store, infos, cameras=cams, image_size=16)
    mapped = vdata.load_episodes(store, infos, cameras=cams, image_size=16, cache_dir=cache)

    names = sorted(p.name for p in cache.iterdir())
    assert len(names) == 4 and all(n.endswith(".npy") for n in names)  # nothing temporary left behind
    assert all(any(n.startswith(f"ep{i:08d}_{c}_16px_") for n in names) for i in ids for c in cams)
    for ram_ep, map_ep in zip(in_ram, mapped, strict=True):
        for c in cams:
            frames = map_ep.images[c]
            assert isinstance(frames, np.memmap) and not frames.flags.writeable
            assert frames.shape == (len(ram_ep), 3, 16, 16) and np.array_equal(frames, ram_ep.images[c])

    # Batches gathered out of the maps are exactly those of the in-RAM dataset, across the episode boundary.
    idx = np.array([0, 5, 6, 9, 3])
    a = vdata.WindowDataset(in_ram, chunk_size=3, cameras=cams).sample_batch(idx)
    b = vdata.WindowDataset(mapped, chunk_size=3, cameras=cams).sample_batch(idx)
    for key in a:
        assert a[key] == b[key] if isinstance(a[key], list) else bool((a[key] == b[key]).all()), key

    # A second load maps the same files without decoding anything.
    decodes = _count_decodes(monkeypatch)
    again = vdata.load_episodes(store, infos, cameras=cams, image_size=16, cache_dir=cache)
    assert decodes == [] and np.array_equal(again[1].images["wrist"], in_ram[1].images["wrist"])


def test_a_new_size_or_checksum_decodes_again_and_a_torn_file_is_repaired(store, tmp_path, monkeypatch):
    record_episode(store, 5, dataset="ds")
    (info,) = vdata.list_dataset_episodes(store, "ds")
    cache = tmp_path / "cache"
    decodes = _count_decodes(monkeypatch)

    def load(i=info, size=16):
        return vdata.load_episode(store, i, ["front"], size, cache_dir=cache).images["front"]

    first = np.array(load())
    assert decodes == [16] and len(list(cache.glob("*.npy"))) == 1
    assert load(size=12).shape == (5, 3, 12, 12) and decodes == [16, 12]
    changed = dataclasses.replace(info, checksums={**info.checksums, "videos/front.mp4": "another video"})
    load(changed)
    assert decodes == [16, 12, 16] and len(list(cache.glob("*.npy"))) == 3  # a changed episode: its own file
    load()
    assert decodes == [16, 12, 16]  # the original key still hits

    path = frame_cache.cache_file(
        cache, episode_id=info.id, camera="front", size=16, checksum=info.checksums["videos/front.mp4"]
    )
    size = path.stat().st_size
    with open(path, "r+b") as f:  # what a crash can leave: the header, half the frames
        f.truncate(size // 2)
    assert np.array_equal(load(), first) and decodes == [16, 12, 16, 16] and path.stat().st_size == size


def _rss_anon_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise LookupError("no RssAnon in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc for RssAnon")
def test_window_dataset_reads_batches_without_copying_frames_into_private_memory(tmp_path):
    """~110 MB of frames on disk: building the dataset and drawing batches grows private memory by far less (the
    pages read are page cache, RssFile). Concatenating the frames, as before the cache, would add all 110 MB."""
    rng = np.random.default_rng(0)
    episodes, n, size = [], 100, 96
    for e in range(40):
        path = tmp_path / f"ep{e}.npy"
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 3, size, size))
        out[:, 0] = e  # the episode number in the red channel, the step in the green one
        out[:, 1] = np.arange(n, dtype=np.uint8)[:, None, None]
        out.flush()
        del out
        frames = np.load(path, mmap_mode="r")
        state = np.zeros((n, 2), np.float32)
        episodes.append(vdata.EpisodeData(e, "pick", "x", "red", True, {"front": frames}, state, state.copy()))
    before = _rss_anon_bytes()
    ds = vdata.WindowDataset(episodes, chunk_size=4, cameras=["front"])
    for _ in range(20):
        idx = rng.integers(0, len(ds), 32)
        imgs = ds.sample_batch(idx)[image_key("front")]  # (32, 3, 96, 96) uint8
        assert imgs[:, 0, 0, 0].tolist() == (idx // n).tolist() and imgs[:, 1, 5, 5].tolist() == (idx % n).tolist()
    grown = _rss_anon_bytes() - before
    assert grown < 25 * 2**20, f"private memory grew by {grown / 2**20:.0f} MB for 110 MB of frames on disk"


def test_the_open_file_limit_is_raised_for_the_maps_or_a_clear_error(monkeypatch):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1300:
        pytest.skip(f"the hard open-file limit ({hard}) is too low to try")
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
    try:
        frame_cache.ensure_open_files(1000)  # 1,000 maps need more than 512 descriptors
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 1000
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    monkeypatch.setattr(frame_cache.resource, "getrlimit", lambda _: (1024, 2000))
    with pytest.raises(ValueError, match=r"one open file per episode and camera \(5000 here\).*ulimit -n"):
        frame_cache.ensure_open_files(5000)
    assert frame_cache.default_cache_dir("/data") == Path("/data/cache/frames")


def test_prune_removes_only_what_no_live_episode_will_read(store, tmp_path, monkeypatch):
    import os
    import time

    record_episode(store, 4, dataset="ds")
    live_id = record_episode(store, 3, dataset="ds")
    infos = vdata.list_dataset_episodes(store, "ds")
    cache = tmp_path / "cache"
    for size in (16, 24):
        vdata.load_episodes(store, infos, cameras=["front", "wrist"], image_size=size, cache_dir=cache)
    kept = sorted(cache.iterdir())
    assert len(kept) == 8
    name = kept[-1].name  # one of the last episode's files
    purged = cache / name.replace(f"ep{live_id:08d}", "ep99999999")  # an episode deleted since
    old_version = cache / name.replace(f"_v{frame_cache.CACHE_VERSION}.npy", "_v0.npy")
    rewritten = frame_cache.cache_file(cache, episode_id=live_id, camera="front", size=16, checksum="before a trim")
    fresh_tmp, stale_tmp = cache / f".{name}.123.tmp", cache / f".{name}.456.tmp"
    for path in (purged, old_version, rewritten, fresh_tmp, stale_tmp):
        path.write_bytes(b"x")
    hour_ago = time.time() - frame_cache.TMP_MAX_AGE_S - 60
    os.utime(stale_tmp, (hour_ago, hour_ago))

    removed = vdata.prune_frame_cache(store, cache)
    assert sorted(removed) == sorted([purged, old_version, rewritten, stale_tmp])
    assert sorted(cache.iterdir()) == sorted([*kept, fresh_tmp])  # a writer may still be renaming that one
    decodes = _count_decodes(monkeypatch)
    vdata.load_episodes(store, infos, cameras=["front", "wrist"], image_size=24, cache_dir=cache)
    assert decodes == []  # nothing a live episode reads was removed
