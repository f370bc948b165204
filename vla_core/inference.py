"""Inference wrapper: load a saved policy folder once, then predict at batch 1 from robot observations.

    policy = Policy.load("models/pick_red")
    out = policy.predict(observation, "pick up the red cube")   # PolicyOutput of numpy arrays, batch axis 1
    out.actions[0]            # (T, D_action) raw joint targets + gripper
    out.attention["front"][0] # (g, g) in [0, 1]; overlay with vla_core.attention.overlay_heatmap
    out.uncertainty[0]        # scalar; compare with policy.uncertainty_threshold (calibrated by the trainer)
    action = policy.select_action(observation, instruction)   # (D_action,) with temporal ensembling

`observation` is anything with `.images` ({camera: (H, W, 3) uint8}) and `.state` ((D_state,)), such as
backend.robot.Observation, or a dict with those two keys, or a dict of batch keys (image_key(cam), OBS_STATE).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from storage.features import OBS_STATE, image_key
from vla_core.policies.base import PolicyOutput, load_policy, load_training_metadata


def observation_to_batch(observation: Any, cameras: tuple[str, ...]) -> dict[str, Any]:
    """An Observation-like object or dict -> {image_key(cam): (1, H, W, 3) uint8, OBS_STATE: (1, D)}."""
    if isinstance(observation, Mapping) and OBS_STATE in observation:
        images = {cam: observation[image_key(cam)] for cam in cameras}
        state = observation[OBS_STATE]
    else:
        get = observation.get if isinstance(observation, Mapping) else lambda k: getattr(observation, k)
        images, state = get("images"), get("state")
    batch: dict[str, Any] = {}
    for cam in cameras:
        if cam not in images:
            raise KeyError(f"observation has no image from camera {cam!r} (has {sorted(images)})")
        img = np.asarray(images[cam]) if not isinstance(images[cam], torch.Tensor) else images[cam]
        batch[image_key(cam)] = img[None] if img.ndim == 3 else img
    state = np.asarray(state, dtype=np.float32)
    batch[OBS_STATE] = state[None] if state.ndim == 1 else state
    return batch


class Policy:
    """A loaded policy in eval mode on one device, with its training metadata."""

    def __init__(self, model, *, path: str | Path | None = None, metadata: dict | None = None) -> None:
        self.model = model.eval()
        self.path = Path(path) if path is not None else None
        self.metadata = metadata or {}

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu", num_threads: int | None = None) -> Policy:
        """Load a folder written by save_pretrained (any registered policy type; ValueError if it is not one) with
        `load_policy`. `num_threads` sets torch's intra-op threads (None leaves them)."""
        if num_threads is not None:
            torch.set_num_threads(int(num_threads))
        model = load_policy(path).to(device)
        return cls(model, path=path, metadata=load_training_metadata(path))

    @property
    def config(self):
        return self.model.config

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(self.model.config.cameras)

    @property
    def uncertainty_threshold(self) -> float | None:
        """Calibrated threshold on `uncertainty` (above = hand over to the operator), None if not calibrated."""
        t = getattr(self.model.config, "uncertainty_threshold", None)
        return None if t is None else float(t)

    def predict(self, observation: Any, instruction: str) -> PolicyOutput:
        """Chunk, attention maps and uncertainty for one observation (numpy arrays, batch axis of size 1)."""
        batch = observation_to_batch(observation, self.cameras)
        return self.model.predict_chunk(batch, [instruction]).numpy()

    def reset(self) -> None:
        self.model.reset()

    def select_action(self, observation: Any, instruction: str) -> np.ndarray:
        """(D_action,) action for this control step (temporal ensembling over overlapping chunks)."""
        return self.model.select_action(observation_to_batch(observation, self.cameras), instruction)

    @property
    def last_output(self) -> PolicyOutput | None:
        """The prediction behind the latest select_action (numpy)."""
        return self.model.last_output


__all__ = ["Policy", "PolicyOutput", "observation_to_batch"]
