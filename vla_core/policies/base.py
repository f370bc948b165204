"""What every registered policy shares: the prediction type, the training-metadata file and the one loader.

Nothing here knows a particular policy. A policy package (`vla_core/policies/<name>/`) returns a `PolicyOutput`
from `predict_chunk`; the trainer writes `training_metadata.json` beside the weights with `save_training_metadata`;
every caller (`vla_core.inference.Policy.load`, the evaluation CLI, the benchmarks) opens a saved folder with
`load_policy`, which picks the registered class named by the folder's config.json.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla_core.constants import CONFIG_FILE, TRAINING_METADATA_FILE


@dataclass
class PolicyOutput:
    """What one prediction gives (torch tensors from `predict_chunk`; `.numpy()` for numpy arrays).

    actions: (B, T, D_action) raw units (absolute joint targets + gripper), the ensemble mean.
    attention: {cam: (B, g, g)} in [0, 1], where the action queries look (in vla_tiny: decoder cross-attention onto
        that camera's tokens, mean over heads, queries and decoder layers; min-max normalised per map).
    attention_rollout: {cam: (B, g, g)} in [0, 1], attention rollout (Abnar & Zuidema) through the fusion layers
        (0.5 * A + 0.5 * I per layer) followed by the decoder cross-attention.
    token_attention: {cam: (B, W, g, g)} in [0, 1], for each instruction word, the rolled-out fusion attention of
        that word's token onto the camera's image tokens (which image patches flowed into the word's
        representation); rows past a sentence's last word are 0.
    tokens: the words of each instruction (W = the longest), matching token_attention's second axis.
    action_std: (B, T, D_action) raw units, std across the K ensemble heads.
    uncertainty: (B,) mean of the per-step std in normalised action units (higher = less sure).
    action_samples: (K, B, T, D_action) raw units, every head's chunk.
    camera_weight: {cam: (B,)} share of the queries' image attention that goes to each camera (sums to 1).
    keypoint_attention: {cam: (B, h, w)} in [0, 1] (h = w = image_size / 8), where the spatial-softmax keypoints sit:
        their softmax maps averaged, each weighted by how much the action reads it; empty without keypoints.
    """

    actions: Any
    attention: dict[str, Any]
    attention_rollout: dict[str, Any]
    token_attention: dict[str, Any]
    tokens: list[list[str]]
    action_std: Any
    uncertainty: Any
    action_samples: Any = None
    camera_weight: dict[str, Any] = field(default_factory=dict)
    keypoint_attention: dict[str, Any] = field(default_factory=dict)

    def numpy(self) -> PolicyOutput:
        """A copy with every tensor as a float32 numpy array."""

        def conv(v):
            if isinstance(v, torch.Tensor):
                return v.detach().float().cpu().numpy()
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            return v

        return PolicyOutput(**{f.name: conv(getattr(self, f.name)) for f in fields(self)})


def load_policy(path: str | Path, **kwargs: Any):
    """The policy saved in `path` (a save_pretrained folder), as the registered class its config.json names, in
    eval mode. `kwargs` go to that class's `from_pretrained`.

    Raises ValueError when `path` has no config.json or names a policy type that nobody registered.
    """
    path = Path(path)
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        raise ValueError(f"{path} is not a saved model (no {CONFIG_FILE})")
    from vla_core.policies import get_policy_class  # imported here: the registry package re-exports this module

    try:
        policy_class = get_policy_class(json.loads(config_file.read_text()).get("model_type"))
    except KeyError as error:
        raise ValueError(f"{path}: {error.args[0]}") from None
    return policy_class.from_pretrained(path, **kwargs).eval()


def json_default(o: Any) -> Any:
    """`json.dumps(default=...)` for what training records hold besides plain JSON: paths and numpy values."""
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_training_metadata(model_dir: str | Path, metadata: Mapping[str, Any]) -> None:
    """Write training_metadata.json into a saved policy folder (the trainer's record: data, steps, metrics).

    Written to a temporary file and renamed, so a reader never sees half a file.
    """
    path = Path(model_dir) / TRAINING_METADATA_FILE
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(dict(metadata), indent=2, default=json_default) + "\n")
    os.replace(tmp, path)


def load_training_metadata(model_dir: str | Path) -> dict:
    """training_metadata.json of a saved policy folder, {} when there is none."""
    path = Path(model_dir) / TRAINING_METADATA_FILE
    return json.loads(path.read_text()) if path.exists() else {}


__all__ = [
    "CONFIG_FILE",
    "PolicyOutput",
    "json_default",
    "load_policy",
    "load_training_metadata",
    "save_training_metadata",
]
