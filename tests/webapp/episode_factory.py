"""Helpers shared by the web app tests."""

from __future__ import annotations

import numpy as np

from storage.episode_store import CameraSpec, EpisodeMeta


def record_episode(store, *, n: int = 12, dataset: str = "teleop", source: str = "teleop", operator="alice") -> int:
    """A tiny synthetic two-camera episode saved through the real store."""
    cams = [CameraSpec("front", 48, 48), CameraSpec("wrist", 32, 32)]
    meta = EpisodeMeta(
        dataset=dataset,
        task="pick",
        instruction="pick up the red cube",
        source=source,
        fps=30,
        cameras=cams,
        state_names=["a", "b"],
        action_names=["a", "b"],
        operator=operator,
        seed=3,
    )
    rec = store.begin(meta)
    for i in range(n):
        images = {c.name: np.full((c.height, c.width, 3), (10 * i) % 255, np.uint8) for c in cams}
        rec.add_frame(images=images, state=np.zeros(2, np.float32), action=np.zeros(2, np.float32))
    return rec.save(auto_success=True, human_success=True)
