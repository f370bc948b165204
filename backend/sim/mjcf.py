"""MJCF built from primitives in Python: the arm (robot model) apart from the scene (table, cubes, bowl, lights).

dm_control style: `arm_parts(ArmSpec())` gives the robot's defaults, body tree and actuators; `arm_mjcf()` wraps
them into a model that compiles on its own; `scene_mjcf()` drops the same arm onto a table with the props and
cameras. Everything is in one frame: the robot base sits at the world origin on the table top (z = 0), so "robot
base frame" and world frame coincide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

COLOUR_RGBA = {
    "red": (0.85, 0.12, 0.10, 1.0),
    "green": (0.12, 0.70, 0.18, 1.0),
    "blue": (0.12, 0.25, 0.85, 1.0),
}
ARM_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow", "forearm_roll", "wrist_pitch", "wrist_roll")
FINGER_JOINTS = ("finger_left", "finger_right")


@dataclass(frozen=True)
class ArmSpec:
    """Geometry and drive parameters of the 6-DoF arm (PUMA-like: yaw, pitch, pitch, roll, pitch, roll)."""

    base_height: float = 0.05  # base plate top; the shoulder pan joint sits here
    shoulder_height: float = 0.12  # pan joint -> lift joint
    upper_arm: float = 0.32  # lift joint -> elbow
    forearm: float = 0.14  # elbow -> forearm roll joint
    wrist: float = 0.16  # forearm roll -> wrist pitch
    hand: float = 0.05  # wrist pitch -> wrist roll / palm
    finger_travel: float = 0.045  # each finger's stroke (m); full opening is twice this
    pad_half: tuple[float, float, float] = (0.012, 0.006, 0.018)  # finger pad box half sizes (x, y, z)
    pad_z: float = 0.085  # pad centre below the wrist roll joint, along the hand axis; the TCP sits here
    # The elbow bends one way only: IK can never flip to the elbow-down branch through the straight-arm singularity.
    joint_range: tuple[tuple[float, float], ...] = (
        (-2.9, 2.9),
        (-2.0, 2.0),
        (0.1, 2.7),
        (-2.9, 2.9),
        (-2.3, 2.3),
        (-2.9, 2.9),
    )
    kp: tuple[float, ...] = (900.0, 900.0, 700.0, 200.0, 200.0, 120.0)
    damping: tuple[float, ...] = (45.0, 45.0, 30.0, 8.0, 8.0, 4.0)
    armature: float = 0.05
    reach_margin: float = 0.95  # ee_action keeps the wrist within this fraction of the arm's full stretch
    gripper_kp: float = 300.0
    gripper_force: float = 25.0

    @property
    def shoulder(self) -> np.ndarray:
        """(3,) shoulder-lift joint position in the base frame."""
        return np.array([0.0, 0.0, self.base_height + self.shoulder_height])

    @property
    def reach(self) -> float:
        """Shoulder to wrist-pitch distance with the arm straight."""
        return self.upper_arm + self.forearm + self.wrist

    @property
    def tool_length(self) -> float:
        """Wrist pitch joint to TCP."""
        return self.hand + self.pad_z


def _f(v) -> str:
    return " ".join(f"{x:.6g}" for x in np.atleast_1d(v))


def look_at_xyaxes(pos, target, up=(0.0, 0.0, 1.0)) -> str:
    """Camera `xyaxes` that point its -z axis from `pos` at `target` with image-up near `up`."""
    pos, target, up = (np.asarray(v, dtype=float) for v in (pos, target, up))
    fwd = target - pos
    fwd /= np.linalg.norm(fwd)
    x = np.cross(fwd, up)
    x /= np.linalg.norm(x)
    y = np.cross(x, fwd)
    return _f(np.concatenate([x, y]))


def arm_parts(spec: ArmSpec = ArmSpec(), wrist_camera: bool = True, image_size: int = 224) -> dict[str, str]:
    """The robot as MJCF fragments: `default`, `body` (a worldbody child), `actuator`, `sensor`, `contact`."""
    s = spec
    lo_hi = [f"{lo:.4g} {hi:.4g}" for lo, hi in s.joint_range]
    # Arm geoms touch the world (contype 2 & conaffinity 1 of props) but never each other (2 & 1 == 0).
    default = f"""
    <default class="arm">
      <joint damping="4" armature="{s.armature}" limited="true"/>
      <geom contype="2" conaffinity="1" group="1" density="800" rgba="0.82 0.82 0.85 1" friction="0.8 0.01 0.001"/>
      <default class="arm_accent"><geom rgba="0.95 0.45 0.10 1"/></default>
      <default class="pad">
        <geom type="box" size="{_f(s.pad_half)}" rgba="0.15 0.15 0.15 1" friction="1.6 0.02 0.002" condim="4"
              solref="0.005 1" solimp="0.95 0.99 0.001" priority="1" density="1500"/>
      </default>
      <default class="finger_joint">
        <joint type="slide" range="0 {s.finger_travel}" damping="2" armature="0.01"/>
      </default>
    </default>"""

    def joint(i: int, axis: str) -> str:
        return f'<joint name="{ARM_JOINTS[i]}" axis="{axis}" range="{lo_hi[i]}" damping="{s.damping[i]}"/>'

    pad_y = s.pad_half[1]
    wrist_cam = ""
    if wrist_camera:
        # Behind the fingers' closing axis (hand +x) looking down the hand axis at a point below the fingertips.
        cam_pos = (0.075, 0.0, 0.015)
        target = (0.0, 0.0, s.pad_z + 0.10)
        wrist_cam = (
            f'<camera name="wrist" pos="{_f(cam_pos)}" '
            f'xyaxes="{look_at_xyaxes(cam_pos, target, up=(1, 0, 0))}" fovy="75"/>'
        )
    body = f"""
    <body name="base" childclass="arm">
      <geom name="base_plate" type="cylinder" size="0.09 {s.base_height / 2}" pos="0 0 {s.base_height / 2}"
            class="arm_accent"/>
      <body name="shoulder" pos="0 0 {s.base_height}" gravcomp="1">
        {joint(0, "0 0 1")}
        <geom type="cylinder" size="0.06 {s.shoulder_height / 2}" pos="0 0 {s.shoulder_height / 2}"/>
        <body name="upper_arm" pos="0 0 {s.shoulder_height}" gravcomp="1">
          {joint(1, "0 1 0")}
          <geom type="cylinder" size="0.055 0.045" quat="0.7071 0.7071 0 0" class="arm_accent"/>
          <geom type="capsule" size="0.04" fromto="0 0 0 0 0 {s.upper_arm}"/>
          <body name="forearm" pos="0 0 {s.upper_arm}" gravcomp="1">
            {joint(2, "0 1 0")}
            <geom type="cylinder" size="0.045 0.04" quat="0.7071 0.7071 0 0" class="arm_accent"/>
            <geom type="capsule" size="0.033" fromto="0 0 0 0 0 {s.forearm}"/>
            <body name="wrist" pos="0 0 {s.forearm}" gravcomp="1">
              {joint(3, "0 0 1")}
              <geom type="capsule" size="0.03" fromto="0 0 0 0 0 {s.wrist}"/>
              <body name="wrist_link" pos="0 0 {s.wrist}" gravcomp="1">
                {joint(4, "0 1 0")}
                <geom type="cylinder" size="0.032 0.035" quat="0.7071 0.7071 0 0" class="arm_accent"/>
                <body name="hand" pos="0 0 {s.hand}" gravcomp="1">
                  {joint(5, "0 0 1")}
                  <geom name="palm" type="box" size="0.025 {s.finger_travel + 0.02} 0.012" pos="0 0 0.025"/>
                  <geom type="cylinder" size="0.028 0.012" pos="0 0 0.005"/>
                  <site name="tcp" pos="0 0 {s.pad_z}" size="0.006" rgba="1 0 1 0.0" group="3"/>
                  {wrist_cam}
                  <body name="finger_left" pos="0 0 {s.pad_z}" gravcomp="1">
                    <joint name="finger_left" class="finger_joint" axis="0 1 0"/>
                    <geom name="pad_left" class="pad" pos="0 {pad_y} 0"/>
                    <geom type="box" size="0.012 0.006 0.03" pos="0 {pad_y + 0.006} -0.048"/>
                  </body>
                  <body name="finger_right" pos="0 0 {s.pad_z}" gravcomp="1">
                    <joint name="finger_right" class="finger_joint" axis="0 -1 0"/>
                    <geom name="pad_right" class="pad" pos="0 {-pad_y} 0"/>
                    <geom type="box" size="0.012 0.006 0.03" pos="0 {-pad_y - 0.006} -0.048"/>
                  </body>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>"""
    acts = "\n".join(
        f'<position name="{j}" joint="{j}" kp="{s.kp[i]}" ctrlrange="{lo_hi[i]}" class="arm"/>'
        for i, j in enumerate(ARM_JOINTS)
    )
    acts += "\n" + "\n".join(
        f'<position name="{j}" joint="{j}" kp="{s.gripper_kp}" ctrlrange="0 {s.finger_travel}" '
        f'forcerange="-{s.gripper_force} {s.gripper_force}" class="arm"/>'
        for j in FINGER_JOINTS
    )
    # The palm's finger rail overlaps the finger links by design; they are parent/child so no contact arises.
    return {"default": default, "body": body, "actuator": acts, "sensor": "", "image_size": str(image_size)}


def _header(image_size: int, timestep: float, shadows: bool = False) -> str:
    return f"""
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{timestep}" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual>
    <global offwidth="{max(image_size, 640)}" offheight="{max(image_size, 480)}"/>
    <quality shadowsize="{2048 if shadows else 0}"/>
    <headlight ambient="0.25 0.25 0.25" diffuse="0.35 0.35 0.35" specular="0.05 0.05 0.05"/>
  </visual>"""


def arm_mjcf(spec: ArmSpec = ArmSpec(), timestep: float = 0.002) -> str:
    """The arm alone, on the world origin: compiles by itself (tests and kinematics tools use it)."""
    p = arm_parts(spec, wrist_camera=False)
    return f"""<mujoco model="vla_arm">{_header(64, timestep)}
  <default>{p["default"]}</default>
  <worldbody>{p["body"]}</worldbody>
  <actuator>{p["actuator"]}</actuator>
</mujoco>"""


@dataclass(frozen=True)
class SceneSpec:
    """The table-top scene around the arm."""

    table_height: float = 0.75
    table_half: tuple[float, float] = (0.50, 0.60)
    table_center_x: float = 0.38
    cube_half: float = 0.02  # 4 cm cubes
    cube_mass: float = 0.05
    bowl_radius: float = 0.075  # wall centre line
    bowl_wall_half: tuple[float, float] = (0.005, 0.022)  # wall thickness, height half sizes
    bowl_floor_half: float = 0.005
    bowl_segments: int = 16
    bowl_mass: float = 0.4


def _bowl_body(sc: SceneSpec) -> str:
    n, r = sc.bowl_segments, sc.bowl_radius
    tw, th = sc.bowl_wall_half
    seg_half = math.pi * r / n * 1.12  # slight overlap so there are no gaps between segments
    walls = []
    for k in range(n):
        a = 2 * math.pi * k / n
        quat = f"{math.cos(a / 2):.6f} 0 0 {math.sin(a / 2):.6f}"
        walls.append(
            f'<geom name="bowl_wall{k}" class="prop" type="box" size="{tw} {seg_half:.5f} {th}" '
            f'pos="{r * math.cos(a):.5f} {r * math.sin(a):.5f} {2 * sc.bowl_floor_half + th:.5f}" quat="{quat}" '
            f'rgba="0.93 0.88 0.74 1" mass="{sc.bowl_mass * 0.5 / n:.5f}"/>'
        )
    return f"""
    <body name="bowl" pos="0.4 0.0 0">
      <freejoint name="bowl"/>
      <geom name="bowl_floor" class="prop" type="cylinder" size="{r + tw} {sc.bowl_floor_half}"
            pos="0 0 {sc.bowl_floor_half}" rgba="0.90 0.84 0.68 1" mass="{sc.bowl_mass * 0.5}"
            friction="1.5 0.02 0.002"/>
      {"".join(walls)}
    </body>"""


def scene_mjcf(
    arm: ArmSpec = ArmSpec(),
    scene: SceneSpec = SceneSpec(),
    image_size: int = 224,
    timestep: float = 0.002,
    shadows: bool = False,
) -> str:
    """The full scene: table, arm at the origin, three cubes, a bowl, lights and the `front` + `wrist` cameras.

    Shadows are off by default: on Mesa llvmpipe they cost ~4x the render time (≈23 vs ≈6 ms per 224² frame).
    """
    p = arm_parts(arm, wrist_camera=True, image_size=image_size)
    sc = scene
    th = sc.table_height
    tx, (hx, hy) = sc.table_center_x, sc.table_half
    legs = "".join(
        f'<geom type="box" size="0.025 0.025 {th / 2 - 0.02:.4f}" pos="{tx + sx * (hx - 0.05):.3f} '
        f'{sy * (hy - 0.05):.3f} {-th / 2 - 0.02:.4f}" rgba="0.35 0.24 0.15 1" contype="0" conaffinity="0"/>'
        for sx in (-1, 1)
        for sy in (-1, 1)
    )
    c = sc.cube_half
    cubes = "".join(
        f"""
    <body name="cube_{name}" pos="{0.35 + 0.08 * i:.3f} 0.15 {c}">
      <freejoint name="cube_{name}"/>
      <geom name="cube_{name}" class="prop" type="box" size="{c} {c} {c}" mass="{sc.cube_mass}"
            rgba="{_f(rgba)}" condim="4" friction="1.0 0.02 0.002"/>
    </body>"""
        for i, (name, rgba) in enumerate(COLOUR_RGBA.items())
    )
    front_pos, front_target = (0.98, 0.0, 0.48), (0.33, 0.0, 0.06)
    return f"""<mujoco model="vla_tabletop">{_header(image_size, timestep, shadows)}
  <asset>
    <texture name="floor" type="2d" builtin="checker" rgb1="0.30 0.32 0.35" rgb2="0.25 0.27 0.30"
             width="256" height="256"/>
    <material name="floor" texture="floor" texrepeat="6 6"/>
    <texture name="wood" type="2d" builtin="flat" rgb1="0.62 0.48 0.33" rgb2="0.55 0.42 0.28"
             width="64" height="64"/>
    <material name="table" texture="wood" texrepeat="2 2" specular="0.1"/>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.55 0.62 0.70" rgb2="0.15 0.17 0.20"
             width="128" height="128"/>
  </asset>
  <default>{p["default"]}
    <default class="prop">
      <geom contype="1" conaffinity="3" condim="3" friction="1.0 0.01 0.001" solref="0.005 1"
            solimp="0.95 0.99 0.001"/>
    </default>
  </default>
  <worldbody>
    <light name="key" pos="0.6 -0.6 1.6" dir="-0.2 0.4 -1" diffuse="0.65 0.65 0.62" specular="0.2 0.2 0.2"
           castshadow="true"/>
    <light name="fill" pos="-0.4 0.8 1.4" dir="0.4 -0.5 -1" diffuse="0.30 0.30 0.33" specular="0 0 0"
           castshadow="false"/>
    <geom name="floor" type="plane" size="3 3 0.1" pos="0 0 {-th}" material="floor" contype="1" conaffinity="3"/>
    <geom name="table" class="prop" type="box" size="{hx} {hy} 0.02" pos="{tx} 0 -0.02" material="table"/>
    {legs}
    <camera name="front" pos="{_f(front_pos)}" xyaxes="{look_at_xyaxes(front_pos, front_target)}" fovy="55"/>
    {p["body"]}
    {cubes}
    {_bowl_body(sc)}
  </worldbody>
  <actuator>{p["actuator"]}</actuator>
</mujoco>"""
