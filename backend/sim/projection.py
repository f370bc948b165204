"""Project world points into a MuJoCo camera image: where a cube appears in the `front` frame (grounding checks)."""

from __future__ import annotations

import mujoco
import numpy as np


def project_points(
    model: mujoco.MjModel, data: mujoco.MjData, camera: str, points: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole projection of world `points` (N, 3) into `camera`'s (height, width) image.

    Returns (uv (N, 2) float pixel coordinates, x right / y down with (0, 0) the top-left corner of the first pixel,
    in_front (N,) bool: the point lies in front of the camera). MuJoCo cameras look along their -z axis with +y
    up; `fovy` is the vertical field of view, and pixels are square, as mujoco.Renderer draws them.
    """
    cam = model.camera(camera).id
    pos = data.cam_xpos[cam]
    rot = data.cam_xmat[cam].reshape(3, 3)  # columns: camera x, y, z axes in world
    p = (np.asarray(points, dtype=np.float64) - pos) @ rot  # (N, 3) in camera coordinates
    depth = -p[:, 2]
    focal = 0.5 * height / np.tan(np.deg2rad(model.cam_fovy[cam]) / 2)
    safe = np.where(depth > 1e-9, depth, 1e-9)
    u = 0.5 * width + focal * p[:, 0] / safe
    v = 0.5 * height - focal * p[:, 1] / safe
    return np.stack([u, v], axis=1), depth > 1e-9


def box_corners(center: np.ndarray, rotation: np.ndarray, half_sizes) -> np.ndarray:
    """(8, 3) world corners of a box with body `center` (3,), `rotation` (3, 3) and half sizes (3,)."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    return center + (signs * np.asarray(half_sizes, dtype=np.float64)) @ rotation.T


def cube_bbox(robot, colour: str, camera: str = "front", image_hw: tuple[int, int] | None = None):
    """Pixel bbox (x0, y0, x1, y1) of a cube's 8 projected corners in `camera`, clipped to the image.

    `robot` is a SimRobot (its MuJoCo model and data are read, not changed). Returns None when the cube is behind
    the camera or entirely outside the image. Coordinates are continuous pixels: x in [0, width], y in [0, height].
    """
    h, w = image_hw or robot.config.image_hw
    body = robot.model.body(f"cube_{colour}").id
    half = robot.config.scene.cube_half
    corners = box_corners(robot.data.xpos[body], robot.data.xmat[body].reshape(3, 3), (half, half, half))
    return points_bbox(robot, corners, camera, (h, w), all_in_front=True)


def points_bbox(robot, points: np.ndarray, camera: str, image_hw: tuple[int, int], *, all_in_front: bool = False):
    """Pixel bbox (x0, y0, x1, y1) of world `points` (N, 3) projected into `camera`, clipped to the image; None when
    none of it is in view (or, with `all_in_front`, when any point is behind the camera)."""
    h, w = image_hw
    uv, in_front = project_points(robot.model, robot.data, camera, points, h, w)
    if (all_in_front and not in_front.all()) or not in_front.any():
        return None
    uv = uv[in_front]
    x0, y0 = uv.min(axis=0)
    x1, y1 = uv.max(axis=0)
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        return None
    return (float(max(x0, 0.0)), float(max(y0, 0.0)), float(min(x1, w)), float(min(y1, h)))
