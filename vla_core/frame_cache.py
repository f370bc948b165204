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
import resource
from collections.abc import Callable
from pathlib import Path

import numpy as np

CACHE_VERSION = 1
FRAMES_SUBDIR = Path("cache") / "frames"
# Open files a process keeps beyond the frame maps (sockets, logs, the database, torch's own).
_FD_HEADROOM = 256

__all__ = ["CACHE_VERSION", "cache_file", "default_cache_dir", "ensure_open_files", "load_or_decode"]


def default_cache_dir(data_dir: Path | str) -> Path:
    """Where training caches decoded frames when TrainConfig.cache_dir is None: <data_dir>/cache/frames."""
    return Path(data_dir) / FRAMES_SUBDIR


def cache_file(cache_dir: Path | str, *, episode_id: int, camera: str, size: int, checksum: str) -> Path:
    """The .npy holding one camera of one episode at `size` px, for the video whose content hash is `checksum`."""
    digest = hashlib.sha256(checksum.encode()).hexdigest()[:16]  # any checksum format -> a fixed-width name part
    return Path(cache_dir) / f"ep{episode_id:08d}_{camera}_{size}px_{digest}_v{CACHE_VERSION}.npy"


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
