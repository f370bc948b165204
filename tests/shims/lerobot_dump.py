"""Load a dataset folder with LeRobot's own LeRobotDataset (offline, pyav backend via the torchvision shim) and
dump every item to an .npz, so tests can compare what LeRobot sees with what the store holds.

    python tests/shims/lerobot_dump.py <dataset root> <out.npz>

Run it in a subprocess: it puts the shim on sys.path and imports lerobot, which must not leak into the test
process. Video frames are stored as uint8 (LeRobot returns float32 in [0, 1], C x H x W).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/shims: the torchvision stand-in

import numpy as np  # noqa: E402


def main(root: str, out: str) -> None:
    t0 = time.perf_counter()
    import lerobot
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(repo_id="local/export", root=root, video_backend="pyav")
    t_load = time.perf_counter() - t0
    cols: dict[str, list] = {}
    for i in range(len(ds)):
        item = ds[i]
        for key, value in item.items():
            if key in ds.meta.video_keys:
                value = (value.numpy() * 255).round().astype(np.uint8)  # (C, H, W)
            elif hasattr(value, "numpy"):
                value = value.numpy()
            cols.setdefault(key, []).append(value)
    arrays = {k: np.stack(v) if not isinstance(v[0], str) else np.array(v) for k, v in cols.items()}
    arrays["_meta_num_episodes"] = np.array(ds.num_episodes)
    arrays["_meta_num_frames"] = np.array(ds.num_frames)
    arrays["_meta_fps"] = np.array(ds.fps)
    arrays["_meta_video_keys"] = np.array(ds.meta.video_keys)
    arrays["_meta_tasks"] = np.array(list(ds.meta.tasks.index))
    arrays["_meta_lerobot_version"] = np.array(getattr(lerobot, "__version__", "?"))
    arrays["_meta_episode_columns"] = np.array(list(ds.meta.episodes.column_names))
    arrays["_time_load_s"] = np.array(t_load)
    arrays["_time_total_s"] = np.array(time.perf_counter() - t0)
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
