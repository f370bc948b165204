"""VLATinyConfig: every size and switch of the default policy (normalisation stats are buffers, not config).

Defaults are chosen for 2 CPU cores and a few dozen demonstrations (≈15k frames): a 3-layer conv stem (patchify
4x4 + two stride-2 3x3 convs, 6x6 tokens per camera at 96 px) because convolutions learn colour/position from few
frames far better than a ViT from scratch and a patchify first layer is the cheapest conv on CPU; d_model 128 with
2 fusion + 1 decoder layers; 8 ensemble heads for uncertainty. A GPU user scales `d_model`, `n_layers`,
`vision_channels`, `image_size` or swaps in pretrained encoders with `vision_backbone` / `text_backbone`.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VLATinyConfig(PretrainedConfig):
    """Config of the `vla_tiny` policy.

    Args (all keyword):
        cameras: camera names, one image encoder pass (shared weights + a camera embedding) per camera.
        image_size: square input size; observations of other sizes are resized inside `predict_chunk`.
        state_dim / action_dim: proprioceptive state and action sizes (6 joints + gripper).
        chunk_size: T, actions predicted per inference (action chunking, executed with temporal ensembling).
        d_model, n_heads, n_layers (fusion), n_decoder_layers, intermediate_size, dropout: transformer sizes.
        layer_scale: initial LayerScale gain of the fusion layers' residual branches (small = near identity).
        vision_backbone: None = conv stem from scratch; else an HF id or local path of a vision model whose
            `last_hidden_state` is (B, C, h, w) (ResNet/ConvNeXt...) or (B, N, C) tokens (ViT...), pooled to
            `patch_grid` x `patch_grid`.
        vision_channels: conv stem widths (patchify 4x4, then 3x3 stride 2 per further entry).
        patch_grid: token grid side per camera; None = image_size // 16 (the stem's stride).
        text_backbone: None = character tokenizer + a small BERT encoder trained from scratch; else an HF id or
            local path of a text encoder (its tokenizer is loaded from the same place and saved with the policy).
        n_text_layers, max_text_len (tokens), max_words: language encoder size and truncation.
        spatial_keypoints: k spatial-softmax keypoints per camera on the conv map before the last layer (0 = off):
            each is an expected (x, y), so positions come out finer than the token grid.
        grounding_loss_weight: weight of the grounding loss, applied only to batches that carry the training-only
            `grounding_key(camera)` signal: cross-entropy between the shown attention map (decoder cross-attention,
            mean over heads and queries, renormalised over the camera's tokens) and a Gaussian of `grounding_sigma`
            token cells around the instructed object's centre. Without it the action can be decoded from tokens the
            map does not peak on, and the map is decoration (measured: peak on the named square at chance).
        film: FiLM-modulate image tokens by the instruction embedding (makes colour words decide which cube).
        uncertainty_samples: K ensemble heads (K samples per prediction); bootstrap_p: chance a training sample
            is seen by a given head (bootstrap-ish masking so the heads disagree off-distribution).
        head_hidden: hidden width of each ensemble head.
        head_prior_scale: weight of each head's frozen random prior function (0 = plain ensemble).
        relative_action_dims: n > 0 predicts the first n action dims (the arm's joint targets) relative to the
            same dims of the state at prediction time, action[t + k, :n] - state[t, :n], and adds the state back at
            inference; the rest stays absolute. None (default) = every action dim but the last (the gripper).
            Absolute joint targets have a spread over the whole workspace (std ~0.3 rad) that dwarfs one step's
            motion (~0.01 rad), so a 5% error in normalised units already points the arm the wrong way; relative
            targets are normalised by the motion itself.
            Assumes the state's first n entries are the joints in action order (true for SimRobot).
        state_input: which state entries the state token carries: "all"; "unanchored" (default: those that are
            not anchors of relative actions, i.e. the gripper closure); "none" (the token is a learned constant).
            Measured on pick150 (6 min of training, 30 held-out rollouts): with every joint fed in, the policy
            copied the demos' progress from the joint angles and reached for the average cube (4% success, 90
            rollouts); without them it has to look (20%). Joint angles anchor the relative actions either way.
        temporal_ensemble_coeff: ACT-style weight exp(-coeff * age) when executing overlapping chunks;
            None = execute `n_action_steps` of each chunk open-loop.
        uncertainty_threshold: set by the trainer from held-out calibration (None = not calibrated).
        vision_backbone_config / text_backbone_config: filled in automatically when a pretrained backbone is
            used, so a saved policy rebuilds the architecture without the original backbone path.
    """

    model_type = "vla_tiny"

    cameras: Any = ("front", "wrist")
    image_size: int = 96
    state_dim: int = 7
    action_dim: int = 7
    chunk_size: int = 10
    d_model: int = 128
    n_heads: int = 8
    n_layers: int = 2
    n_decoder_layers: int = 1
    intermediate_size: int = 256
    dropout: float = 0.1
    layer_scale: float = 0.1
    vision_backbone: str | None = None
    vision_channels: Any = (32, 64, 128)
    patch_grid: int | None = None
    image_mean: Any = IMAGENET_MEAN
    image_std: Any = IMAGENET_STD
    text_backbone: str | None = None
    n_text_layers: int = 2
    max_text_len: int = 64
    max_words: int = 16
    lowercase: bool = True
    film: bool = True
    attention_keypoints: bool = True
    spatial_keypoints: int = 16
    grounding_loss_weight: float = 0.1
    grounding_sigma: float = 0.5
    uncertainty_samples: int = 8
    head_hidden: int = 128
    head_prior_scale: float = 1.0
    bootstrap_p: float = 0.8
    relative_action_dims: int | None = None
    state_input: str = "unanchored"
    temporal_ensemble_coeff: float | None = 0.01
    n_action_steps: int = 1
    uncertainty_threshold: float | None = None
    vision_backbone_config: dict | None = None
    text_backbone_config: dict | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        # JSON turns tuples into lists; keep one type so configs compare equal after a round trip.
        self.cameras = tuple(str(c) for c in self.cameras)
        self.vision_channels = tuple(int(c) for c in self.vision_channels)
        self.image_mean = tuple(float(x) for x in self.image_mean)
        self.image_std = tuple(float(x) for x in self.image_std)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        if self.uncertainty_samples < 1 or self.chunk_size < 1:
            raise ValueError("uncertainty_samples and chunk_size must be >= 1")
        if not self.cameras:
            raise ValueError("at least one camera is needed")
        if self.state_input not in ("all", "unanchored", "none"):
            raise ValueError(f"state_input must be 'all', 'unanchored' or 'none', got {self.state_input!r}")
        if self.relative_action_dims is not None and not (
            0 <= self.relative_action_dims <= min(self.state_dim, self.action_dim)
        ):
            raise ValueError(
                f"relative_action_dims must be in [0, min(state_dim, action_dim)], got {self.relative_action_dims}"
            )
        super().__post_init__(**kwargs)

    def state_input_mask(self):
        """(state_dim,) float tensor, 1 where the state token sees the entry (see `state_input`)."""
        import torch

        mask = torch.ones(self.state_dim)
        if self.state_input == "none":
            mask[:] = 0.0
        elif self.state_input == "unanchored":
            mask[: self.n_relative_action_dims] = 0.0
        return mask

    @property
    def n_relative_action_dims(self) -> int:
        """How many leading action dims are predicted relative to the state (see `relative_action_dims`)."""
        if self.relative_action_dims is not None:
            return int(self.relative_action_dims)
        return max(0, min(self.action_dim - 1, self.state_dim))

    @property
    def grid(self) -> int:
        """Token grid side per camera (h = w)."""
        if self.patch_grid is not None:
            return int(self.patch_grid)
        return max(1, self.image_size // (4 * 2 ** (len(self.vision_channels) - 1)))


__all__ = ["VLATinyConfig"]
