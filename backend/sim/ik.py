"""Damped-least-squares differential IK for a top-down gripper: position + yaw, tool axis pointing down."""

from __future__ import annotations

import math

import mujoco
import numpy as np

# Tool frame pointing down at yaw 0: the hand's z axis (towards the fingertips) maps to world -z and its y axis
# (the fingers' closing axis) to world y; this is the arm's zero pose pitched by pi about y, so yaw 0 needs no
# wrist roll.
R_DOWN = np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])


def rot_z(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def down_orientation(yaw: float) -> np.ndarray:
    """(3, 3) rotation of a downward-pointing tool turned by `yaw` about the world vertical."""
    return rot_z(yaw) @ R_DOWN


def tool_yaw(rot: np.ndarray) -> float:
    """Yaw of a tool orientation about the world vertical, relative to `R_DOWN` (inverse of `down_orientation`)."""
    rz = rot @ R_DOWN.T
    return math.atan2(rz[1, 0], rz[0, 0])


def wrap_angle(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def rotation_error(rot: np.ndarray, rot_target: np.ndarray) -> np.ndarray:
    """(3,) world-frame rotation vector taking `rot` to `rot_target`."""
    err = rot_target @ rot.T
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, err.reshape(-1))
    vel = np.empty(3)
    mujoco.mju_quat2Vel(vel, quat, 1.0)
    return vel


def dls_step(
    model: mujoco.MjModel,
    data: mujoco.MjData,
    site_id: int,
    dof_ids: np.ndarray,
    target_pos: np.ndarray,
    target_rot: np.ndarray,
    *,
    damping: float = 0.03,
    max_lin: float = 0.04,
    max_rot: float = 0.4,
    rot_weight: float = 0.5,
) -> np.ndarray:
    """One DLS step: joint increment (len(dof_ids),) toward the target pose, from `data`'s current kinematics.

    The Cartesian error is clipped to `max_lin` metres / `max_rot` radians so the linearisation stays valid;
    rotation is weighted by `rot_weight` (metres per radian) against position.
    """
    pos = data.site_xpos[site_id]
    rot = data.site_xmat[site_id].reshape(3, 3)
    e_pos = np.asarray(target_pos, dtype=float) - pos
    n = np.linalg.norm(e_pos)
    if n > max_lin:
        e_pos *= max_lin / n
    e_rot = rotation_error(rot, target_rot)
    n = np.linalg.norm(e_rot)
    if n > max_rot:
        e_rot *= max_rot / n
    jacp = np.zeros((3, model.nv))
    jacr = np.zeros((3, model.nv))
    mujoco.mj_jacSite(model, data, jacp, jacr, site_id)
    jac = np.vstack([jacp[:, dof_ids], rot_weight * jacr[:, dof_ids]])  # (6, n_joints)
    err = np.concatenate([e_pos, rot_weight * e_rot])  # (6,)
    jjt = jac @ jac.T + (damping**2) * np.eye(6)
    return jac.T @ np.linalg.solve(jjt, err)


def solve_ik(
    model: mujoco.MjModel,
    data: mujoco.MjData,
    site_id: int,
    qpos_ids: np.ndarray,
    dof_ids: np.ndarray,
    target_pos: np.ndarray,
    target_rot: np.ndarray,
    q_low: np.ndarray,
    q_high: np.ndarray,
    *,
    iters: int = 300,
    tol: float = 1e-5,
) -> np.ndarray:
    """Iterate DLS on `data` (kinematics only, mutates its qpos) until the pose converges; returns the joints."""
    for _ in range(iters):
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        dq = dls_step(model, data, site_id, dof_ids, target_pos, target_rot, damping=0.01)
        data.qpos[qpos_ids] = np.clip(data.qpos[qpos_ids] + dq, q_low, q_high)
        if np.linalg.norm(dq) < tol:
            break
    mujoco.mj_kinematics(model, data)
    return data.qpos[qpos_ids].copy()
