"""`torchvision.transforms.ToTensor` only (LeRobot uses it for image-dtype features, which our exports don't have)."""

from __future__ import annotations

import numpy as np
import torch


class ToTensor:
    """PIL image or (H, W, C) uint8 array -> (C, H, W) float32 tensor in [0, 1], like torchvision's."""

    def __call__(self, pic) -> torch.Tensor:
        arr = np.asarray(pic)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()
        return t.float().div(255) if t.dtype == torch.uint8 else t.float()
