"""Write a small dataset with LeRobot's own recorder (LeRobotDataset.create/add_frame/save_episode), so tests can
import a folder that LeRobot produced rather than one we exported: AV1 video (libsvtav1, LeRobot's default
codec), and a new data/video file per episode (tiny size limits) so several chunk/file paths are exercised.

    python tests/shims/lerobot_write.py <new dataset root> <truth.npz>

Run it in a subprocess (it imports lerobot through the torchvision shim). truth.npz holds the raw frames, states,
actions and tasks that were recorded.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

LENGTHS = (9, 14)
TASKS = ("stack the cubes", "open the drawer")
H, W = 64, 64


def frames(t_len: int, seed: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    out = np.empty((t_len, H, W, 3), np.uint8)
    for t in range(t_len):
        out[t, ..., 0] = (xx * 4 + 6 * t + 30 * seed) % 256
        out[t, ..., 1] = (yy * 4) % 256
        out[t, ..., 2] = 90
        x = (5 + 3 * t) % (W - 12)
        out[t, 20:32, x : x + 12] = (20, 220, 40)
    return out


def main(root: str, truth: str) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    features = {
        "observation.images.top": {"dtype": "video", "shape": (H, W, 3), "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": (3,), "names": ["x", "y", "z"]},
        "action": {"dtype": "float32", "shape": (2,), "names": ["vx", "vy"]},
    }
    ds = LeRobotDataset.create("local/native", fps=10, features=features, root=root, vcodec="libsvtav1")
    # Force a new parquet/mp4 file for every episode (the writer compares sizes in MB against these).
    ds.meta.info["data_files_size_in_mb"] = 1e-6
    ds.meta.info["video_files_size_in_mb"] = 1e-6
    rng = np.random.default_rng(0)
    out: dict[str, list] = {"frames": [], "state": [], "action": [], "task": []}
    for e, (n, task) in enumerate(zip(LENGTHS, TASKS, strict=True)):
        imgs = frames(n, e)
        state = rng.standard_normal((n, 3)).astype(np.float32)
        action = rng.standard_normal((n, 2)).astype(np.float32)
        for t in range(n):
            ds.add_frame(
                {"observation.images.top": imgs[t], "observation.state": state[t], "action": action[t], "task": task}
            )
        ds.save_episode()
        out["frames"].append(imgs)
        out["state"].append(state)
        out["action"].append(action)
        out["task"].extend([task] * n)
    ds.finalize()
    np.savez(
        truth,
        frames=np.concatenate(out["frames"]),
        state=np.concatenate(out["state"]),
        action=np.concatenate(out["action"]),
        task=np.array(out["task"]),
        lengths=np.array(LENGTHS),
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
