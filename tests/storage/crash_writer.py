"""Helper process for test_crash.py: records an episode into a store and gets SIGKILLed by the test.

    python crash_writer.py DATA_DIR DB_URL MODE [POINT]

MODE ``record``: records frames forever, printing ``RECORDING <n>`` after the first 20.
MODE ``pause``: records 30 frames and saves, but stops dead at the named save step POINT (before_move,
after_move, after_commit), printing ``AT <POINT>``.
MODE ``save``: records 30 frames, prints ``SAVING``, saves, prints ``SAVED <id>`` (the test kills it at a random
moment in between).
Lines go to stdout, flushed, so the test knows where the process is before it kills it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from storage import episode_recorder
from storage.db import make_engine, make_session_factory
from storage.episode_store import CameraSpec, EpisodeMeta, EpisodeStore


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def frame(i: int, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([(xx + 3 * i) % 256, (yy + i) % 256, np.full_like(xx, (7 * i) % 256)], axis=-1).astype(np.uint8)


def main() -> None:
    data_dir, url, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    point = sys.argv[4] if len(sys.argv) > 4 else None
    if mode == "pause":

        def fault_point(name: str) -> None:
            if name == point:
                say(f"AT {name}")
                time.sleep(3600)

        episode_recorder._fault_point = fault_point

    store = EpisodeStore(data_dir, make_session_factory(make_engine(url)))
    cams = [CameraSpec("front", 96, 96), CameraSpec("wrist", 64, 64)]
    rec = store.begin(
        EpisodeMeta(
            dataset="crash",
            task="pick",
            instruction="pick up the cube",
            source="scripted",
            fps=30,
            cameras=cams,
            state_names=["x", "y", "z", "gripper"],
            action_names=["dx", "dy", "dz", "grip"],
            seed=7,
        )
    )
    i = 0
    while True:
        rec.add_frame(
            images={c.name: frame(i, c.height, c.width) for c in cams},
            state=np.full(4, i, np.float32),
            action=np.full(4, -i, np.float32),
        )
        i += 1
        if mode == "record":
            if i == 20:
                say("RECORDING 20")
            time.sleep(0.002)
        elif i == 30:
            break
    if mode == "save":
        say("SAVING")
    episode_id = rec.save(auto_success=True)
    say(f"SAVED {episode_id}")


if __name__ == "__main__":
    main()
