"""Where an attention map puts its mass in a sim scene: on the instructed cube, on the other cubes, on the gripper and
the bowl, or elsewhere; and which cube a rollout went for. Issue 15's measures, computed by every evaluation.

Maps are (h, w) over the image (any grid: 6 x 6 cross-attention, 12 x 12 keypoint maps); regions are pixel boxes
(x0, y0, x1, y1) of the camera image. A cell's share of a box is the fraction of the cell's area the box covers, so
a cube smaller than a cell takes only its part of that cell's mass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from backend.sim.physics import COLOURS
from backend.sim.projection import cube_bbox, points_bbox

Box = tuple[float, float, float, float]

# A cube counts as "gone for" once lifted this far above the table or pushed this far from where it started.
LIFTED_M = 0.02
PUSHED_M = 0.02


def cell_coverage(box: Box | None, grid_hw: tuple[int, int], image_hw: tuple[int, int]) -> np.ndarray:
    """(h, w) fraction of each map cell's area inside `box` (zeros for None)."""
    h, w = grid_hw
    out = np.zeros((h, w))
    if box is None:
        return out
    H, W = image_hw
    x0, y0, x1, y1 = box
    xs = np.arange(w + 1) * W / w  # cell edges
    ys = np.arange(h + 1) * H / h
    fx = np.clip(np.minimum(xs[1:], x1) - np.maximum(xs[:-1], x0), 0, None) / (W / w)  # (w,)
    fy = np.clip(np.minimum(ys[1:], y1) - np.maximum(ys[:-1], y0), 0, None) / (H / h)  # (h,)
    return np.outer(fy, fx)


def mass_shares(heat: np.ndarray, regions: Mapping[str, Iterable[Box | None]], image_hw: tuple[int, int]) -> dict:
    """{region: share of the map's mass on it} plus "outside" (on none of them); overlapping boxes count once
    (their coverage is capped at 1 per cell), so shares of disjoint regions sum with "outside" to 1."""
    heat = np.clip(np.asarray(heat, dtype=float), 0, None)
    total = heat.sum()
    if total <= 0:
        return {**{name: 0.0 for name in regions}, "outside": 1.0}
    union = np.zeros(heat.shape)
    out = {}
    for name, boxes in regions.items():
        cover = np.zeros(heat.shape)
        for box in boxes:
            cover = np.maximum(cover, cell_coverage(box, heat.shape, image_hw))
        out[name] = float((heat * cover).sum() / total)
        union = np.maximum(union, cover)
    out["outside"] = float((heat * (1.0 - union)).sum() / total)
    return out


_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=float)  # (8, 3)


def geoms_bbox(robot, geoms: Sequence[int], camera: str, image_hw: tuple[int, int]) -> Box | None:
    """Pixel box of some geoms' bounding spheres (each a cube of side 2 * rbound) in `camera`, clipped to the
    image; None when none of it is in view."""
    if not len(geoms):
        return None
    g = np.asarray(geoms)
    corners = robot.data.geom_xpos[g][:, None] + _SIGNS[None] * robot.model.geom_rbound[g][:, None, None]
    return points_bbox(robot, corners.reshape(-1, 3), camera, image_hw)


def scene_regions(robot, colour: str, camera: str, image_hw: tuple[int, int]) -> dict[str, list[Box | None]]:
    """The boxes `mass_shares` weighs: the instructed cube, the other cubes, the gripper and the bowl."""
    return {
        "instructed": [cube_bbox(robot, colour, camera, image_hw)],
        "other_cubes": [cube_bbox(robot, c, camera, image_hw) for c in COLOURS if c != colour],
        "gripper": [geoms_bbox(robot, sorted(robot.physics.finger_geoms), camera, image_hw)],
        "bowl": [geoms_bbox(robot, sorted(robot.physics.geoms_of("bowl")), camera, image_hw)],
    }


class CubeWatcher:
    """Which cubes a rollout went for: call `start` at the episode's first step and `update` at every step after;
    a cube is 'touched' once it was lifted LIFTED_M or pushed PUSHED_M from where it started."""

    def __init__(self, colours: Sequence[str] = COLOURS) -> None:
        self.colours = tuple(colours)
        self._start: dict[str, np.ndarray] = {}
        self.touched: set[str] = set()

    def start(self, robot) -> None:
        self._start = {c: robot.object_position(c).copy() for c in self.colours}
        self.touched = set()

    def update(self, robot) -> None:
        for c, p0 in self._start.items():
            p = robot.object_position(c)
            if p[2] - p0[2] >= LIFTED_M or np.linalg.norm(p[:2] - p0[:2]) >= PUSHED_M:
                self.touched.add(c)

    def wrong_object(self, colour: str) -> bool:
        """Whether the rollout lifted or pushed a cube it was not told about."""
        return bool(self.touched - {colour})
