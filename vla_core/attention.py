"""Attention-map helpers: rollout, per-map normalisation, upsampling, and the heatmap overlay for the UI.

Rollout follows Abnar & Zuidema (2020): each layer's head-averaged attention A is mixed with the identity for the
residual connection, 0.5 * A + 0.5 * I, rows renormalised, and the layers multiplied, so R[i, j] says how much of
input token j reaches output token i through all layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def attention_rollout(attentions: Sequence[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """Per-layer attention (B, H, N, N) (first layer first) -> rolled-out (B, N, N); identity if no layers."""
    if not attentions:
        raise ValueError("attention_rollout needs at least one layer")
    B, _, N, _ = attentions[0].shape
    eye = torch.eye(N, dtype=attentions[0].dtype, device=attentions[0].device)
    result = eye.expand(B, N, N)
    for a in attentions:
        a = (1.0 - residual) * a.mean(1) + residual * eye
        a = a / a.sum(-1, keepdim=True)
        result = a @ result
    return result


def normalize_maps(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Min-max normalise over the last axis to [0, 1] (a flat map becomes all zeros)."""
    lo = x.amin(-1, keepdim=True)
    hi = x.amax(-1, keepdim=True)
    return ((x - lo) / (hi - lo).clamp_min(eps)).clamp(0.0, 1.0)


def upsample_heatmap(heatmap, size: tuple[int, int]) -> np.ndarray:
    """(h, w) map -> (H, W) float32 by bilinear interpolation, clipped to [0, 1]."""
    t = torch.as_tensor(np.asarray(heatmap, dtype=np.float32))[None, None]
    out = F.interpolate(t, size=tuple(int(s) for s in size), mode="bilinear", align_corners=False)
    return out[0, 0].clamp(0.0, 1.0).numpy()


def overlay_heatmap(frame, heatmap, cmap: str = "jet", alpha: float = 0.5) -> np.ndarray:
    """Blend a [0, 1] heatmap (h, w) over an RGB frame (H, W, 3) uint8 with a matplotlib colormap.

    The heatmap is upsampled bilinearly to the frame size; the result is (H, W, 3) uint8.
    """
    from matplotlib import colormaps  # imported here: only the UI/bench pay for matplotlib

    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"frame must be (H, W, 3), got {frame.shape}")
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    hm = np.asarray(heatmap, dtype=np.float32)
    if hm.ndim != 2:
        raise ValueError(f"heatmap must be (h, w), got {hm.shape}")
    hm = np.nan_to_num(np.clip(hm, 0.0, 1.0))
    if hm.shape != frame.shape[:2]:
        hm = upsample_heatmap(hm, frame.shape[:2])
    colour = colormaps[cmap](hm)[..., :3] * 255.0  # (H, W, 3) float
    alpha = float(np.clip(alpha, 0.0, 1.0))
    out = (1.0 - alpha) * frame.astype(np.float32) + alpha * colour
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


__all__ = ["attention_rollout", "normalize_maps", "overlay_heatmap", "upsample_heatmap"]
