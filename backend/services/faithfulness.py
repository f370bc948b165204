"""Is the attention map faithful? Occlude what it points at and see whether the action changes (issue 15).

* `occlusion_test`: for held-out frames, grey out the map's most-attended cell of the image and, separately, a random
  cell of the same size elsewhere; compare how far each moves the predicted action chunk. A map that shows what the
  action uses gives a ratio (median change, peak / random) well above 1; a decorative map gives ~1.
* `mask_cube`: paint a cube's projected box grey in every camera image before the policy sees it (closed loop:
  masking the instructed cube should hurt success far more than masking another one).

Frames are batch-1 observation dicts as the policy takes them ({image_key(cam): (H, W, 3) uint8, OBS_STATE}).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from backend.sim.projection import cube_bbox
from storage.features import image_key

GREY = 128  # the occluder: mid-grey, no colour a cube could have


@dataclass
class OcclusionFrame:
    obs: dict  # batch-1 observation dict (copied images)
    instruction: str


def grey_box(image: np.ndarray, box) -> np.ndarray:
    """A copy of (H, W, 3) uint8 `image` with the pixel box (x0, y0, x1, y1) painted GREY."""
    out = image.copy()
    x0, y0, x1, y1 = (int(np.floor(box[0])), int(np.floor(box[1])), int(np.ceil(box[2])), int(np.ceil(box[3])))
    out[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = GREY
    return out


def _cell_box(i: int, j: int, grid_hw, image_hw):
    h, w = grid_hw
    H, W = image_hw
    return (j * W / w, i * H / h, (j + 1) * W / w, (i + 1) * H / h)


def _chunk(policy, obs: dict, instruction: str) -> np.ndarray:
    with torch.inference_mode():
        out = policy.predict_chunk({k: (v[None] if isinstance(v, np.ndarray) else v) for k, v in obs.items()},
                                   [instruction])  # fmt: skip
    return np.asarray(out.actions[0], dtype=np.float64), out


def occlusion_test(
    policy, frames: Sequence[OcclusionFrame], *, camera: str = "front", seed: int = 0, map_name: str = "attention"
) -> dict:
    """Median change of the action chunk (L2 over the (T, A) chunk, raw units) when the peak cell of `map_name` in
    `camera` is greyed out, against a random other cell of the same size, over `frames`; with the ratio."""
    rng = np.random.default_rng(seed)
    key = image_key(camera)
    peak_d, rand_d = [], []
    for f in frames:
        base, out = _chunk(policy, f.obs, f.instruction)
        maps = getattr(out, map_name, None) or {}
        if camera not in maps:
            continue
        heat = np.asarray(torch.as_tensor(maps[camera]).float())[0]  # (h, w)
        image = f.obs[key]
        hw = image.shape[:2]
        i, j = np.unravel_index(int(np.argmax(heat)), heat.shape)
        others = [(a, b) for a in range(heat.shape[0]) for b in range(heat.shape[1]) if (a, b) != (i, j)]
        a, b = others[int(rng.integers(len(others)))]
        for cell, out_list in (((i, j), peak_d), ((a, b), rand_d)):
            masked = {**f.obs, key: grey_box(image, _cell_box(*cell, heat.shape, hw))}
            chunk, _ = _chunk(policy, masked, f.instruction)
            out_list.append(float(np.linalg.norm(chunk - base)))
    return _occlusion_summary(peak_d, rand_d, map_name, camera)


def _occlusion_summary(peak_d: list[float], rand_d: list[float], map_name: str, camera: str) -> dict:
    if not peak_d:
        return {"frames": 0, "map": map_name, "camera": camera}
    peak, rand = float(np.median(peak_d)), float(np.median(rand_d))
    return {
        "frames": len(peak_d),
        "map": map_name,
        "camera": camera,
        "median_change_peak": peak,
        "median_change_random": rand,
        "ratio": peak / rand if rand > 0 else None,  # None: random cells never changed the action
        "changes_peak": peak_d,  # per frame, so results of several groups can be pooled (pool_occlusion)
        "changes_random": rand_d,
    }


def pool_occlusion(results: Sequence[dict | None]) -> dict | None:
    """One occlusion summary over the frames of several `occlusion_test` results (None when there are none)."""
    done = [r for r in results if r and r.get("frames")]
    if not done:
        return None
    peak = [x for r in done for x in r["changes_peak"]]
    rand = [x for r in done for x in r["changes_random"]]
    return _occlusion_summary(peak, rand, done[0]["map"], done[0]["camera"])


def brief(occlusion: dict | None) -> dict | None:
    """The summary without the per-frame lists (what a job's result and the registry keep)."""
    if occlusion is None:
        return None
    return {k: v for k, v in occlusion.items() if k not in ("changes_peak", "changes_random")}


def mask_cube(robot, images: dict[str, np.ndarray], colour: str) -> dict[str, np.ndarray]:
    """`images` ({camera: (H, W, 3) uint8}) with `colour`'s cube greyed out wherever it is in view."""
    out = {}
    for cam, img in images.items():
        box = cube_bbox(robot, colour, cam, img.shape[:2])
        out[cam] = img if box is None else grey_box(img, box)
    return out
