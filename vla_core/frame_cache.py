"""Decoded training frames on disk, memory-mapped, so a dataset larger than memory trains with flat private memory.

Decoding every episode into RAM cost ~17 MB per 100-step episode at 96 px with two cameras (150 episodes peaked at
2.5 GB; a few thousand would not fit in 24 GiB). Instead each (episode, camera) is decoded once into an .npy file
and opened with ``np.load(mmap_mode="r")``: a batch copies only its rows out of the map, and the pages the kernel
keeps resident are clean page cache it can drop under pressure (they count as RssFile, never as RssAnon).

A file is named by everything its content depends on -- episode id, camera, image size, the video's content
checksum and CACHE_VERSION (bumped when decoding changes) -- so a changed episode or size gets a new file and a
stale one is never read. Files are written to a temporary name and renamed into place, and a file that does not
open with the expected shape (torn by a crash) is decoded again, so concurrent or killed writers (DDP ranks, a
SIGKILLed job) cannot leave a bad frame behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

CACHE_VERSION = 1
FRAMES_SUBDIR = Path("cache") / "frames"
# Open files a process keeps beyond the frame maps (sockets, logs, the database, torch's own).
_FD_HEADROOM = 256

TMP_MAX_AGE_S = 3600  # a temporary file this old was left by a killed writer
_NAME_RE = re.compile(r"^ep(\d{8})_(.+)_\d+px_([0-9a-f]{16})_v(\d+)\.npy$")

__all__ = [
    "CACHE_VERSION",
    "cache_file",
    "default_cache_dir",
    "ensure_open_files",
    "load_or_decode",
    "prune",
    "video_key",
]


def default_cache_dir(data_dir: Path | str) -> Path:
    """Where training caches decoded frames when TrainConfig.cache_dir is None: <data_dir>/cache/frames."""
    return Path(data_dir) / FRAMES_SUBDIR


def cache_file(cache_dir: Path | str, *, episode_id: int, camera: str, size: int, checksum: str) -> Path:
    """The .npy holding one camera of one episode at `size` px, for the video whose content hash is `checksum`."""
    return Path(cache_dir) / f"ep{episode_id:08d}_{camera}_{size}px_{_digest(checksum)}_v{CACHE_VERSION}.npy"


def _digest(checksum: str) -> str:
    return hashlib.sha256(checksum.encode()).hexdigest()[:16]  # any checksum format -> a fixed-width name part


def video_key(camera: str, checksum: str) -> str:
    """What prune() matches a file against: the camera and the video's content, whatever the size."""
    return f"{camera}_{_digest(checksum)}"


def prune(cache_dir: Path | str, live: Mapping[int, set[str]], *, now: float | None = None) -> list[Path]:
    """Delete the files no training will read again: those of episodes not in `live` (purged), of videos an
    episode no longer has (`live[id]`: the video_key of each of its current videos; a trim rewrites them), of
    another CACHE_VERSION, and temporary files older than TMP_MAX_AGE_S (a killed writer's). A file a running job
    has mapped stays readable by it (unlinking keeps an open mapping). Returns what was deleted."""
    root = Path(cache_dir)
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
    for path in root.iterdir():
        m = _NAME_RE.match(path.name)
        if m is None:
            stale = ".tmp" in path.name and now - path.stat().st_mtime > TMP_MAX_AGE_S
        else:
            episode_id, key, version = int(m.group(1)), f"{m.group(2)}_{m.group(3)}", int(m.group(4))
            stale = version != CACHE_VERSION or key not in live.get(episode_id, ())
        if stale:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def load_or_decode(path: Path, *, size: int, video: Path, decode: Callable[[Path, int], np.ndarray]) -> np.ndarray:
    """The frames (T, 3, size, size) uint8 of `path` as a read-only memory map, decoding `video` first if needed."""
    frames = _open(path, size)
    if frames is not None:
        return frames
    decoded = decode(video, size)  # one episode in memory at a time: (T, 3, size, size) uint8
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(decoded, dtype=np.uint8))
        os.replace(tmp, path)  # atomic: readers see the old state or the whole file
    finally:
        tmp.unlink(missing_ok=True)
    frames = _open(path, size)
    if frames is None:
        raise OSError(f"the frame cache file {path} did not read back after writing it")
    return frames


def _open(path: Path, size: int) -> np.ndarray | None:
    """The memory map, or None when the file is missing, torn or of the wrong shape (then it is decoded again)."""
    if not path.is_file():
        return None
    try:
        frames = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return None  # a short or garbled file, e.g. renamed into place by a filesystem that lost its tail
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (3, size, size):
        return None
    return frames


def ensure_open_files(maps: int) -> None:
    """Raise this process's soft open-file limit so `maps` memory maps fit (each holds a file descriptor).

    1,500 episodes x 2 cameras is 3,000 maps, beyond the usual soft limit of 1,024; the hard limit (often 2^20) is
    what a process may raise itself to. A ValueError says what to do when even the hard limit is too low.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = maps + _FD_HEADROOM
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    if hard != resource.RLIM_INFINITY and hard < want:
        raise ValueError(
            f"the frame cache keeps one open file per episode and camera ({maps} here), but this process may open "
            f"at most {hard}; raise the limit (ulimit -n {want}) or train on fewer episodes"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
