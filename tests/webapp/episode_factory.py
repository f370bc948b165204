"""The web app tests' episode: the shared factory (tests/helpers.py) with 12 small frames, a 2-D zero state and
action, and a human success label."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from helpers import record_episode as _record_episode

from storage.episode_store import CameraSpec

CAMERAS = [CameraSpec("front", 48, 48), CameraSpec("wrist", 32, 32)]


def still_step(i: int, cameras: Sequence[CameraSpec]) -> dict:
    """Frame i: a flat grey level 10*i per camera, the arm at rest."""
    images = {c.name: np.full((c.height, c.width, 3), (10 * i) % 255, np.uint8) for c in cameras}
    return dict(images=images, state=np.zeros(2, np.float32), action=np.zeros(2, np.float32))


def record_episode(store, *, n: int = 12, dataset: str = "teleop", source: str = "teleop", operator="alice") -> int:
    """A tiny two-camera episode saved through the real store (auto and human success)."""
    return _record_episode(
        store, n, step=still_step, dataset=dataset, source=source, operator=operator, seed=3, cameras=CAMERAS,
        state_names=["a", "b"], action_names=["a", "b"], extra={}, human_success=True,
    )  # fmt: skip
