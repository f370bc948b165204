"""A thin handle on (MjModel, MjData) with named access to the props: what tasks and experts read and write."""

from __future__ import annotations

import mujoco
import numpy as np

from backend.sim.mjcf import COLOUR_RGBA, SceneSpec

COLOURS: tuple[str, ...] = tuple(COLOUR_RGBA)  # ("red", "green", "blue")
OBJECTS: tuple[str, ...] = (*COLOURS, "bowl")


class Physics:
    """Named, privileged access to the scene state (dm_control's `physics`, reduced to what this sim needs)."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, scene: SceneSpec):
        self.model = model
        self.data = data
        self.scene = scene
        self.table_z = 0.0
        self._body = {}
        self._qadr = {}
        self._vadr = {}
        for name in OBJECTS:
            body = "bowl" if name == "bowl" else f"cube_{name}"
            bid = model.body(body).id
            jid = model.body_jntadr[bid]
            self._body[name] = bid
            self._qadr[name] = model.jnt_qposadr[jid]
            self._vadr[name] = model.jnt_dofadr[jid]
        self._geoms_of = {
            name: {g for g in range(model.ngeom) if model.geom_bodyid[g] == bid} for name, bid in self._body.items()
        }
        self.pad_geoms = {model.geom("pad_left").id, model.geom("pad_right").id}
        finger_bodies = {model.body("finger_left").id, model.body("finger_right").id}
        self.finger_geoms = {g for g in range(model.ngeom) if model.geom_bodyid[g] in finger_bodies}

    def geoms_of(self, name: str) -> set[int]:
        """Geom ids of a cube ('red', ...) or the 'bowl' (built once with the model)."""
        return self._geoms_of[self._name(name)]

    def _name(self, name: str) -> str:
        key = name.removeprefix("cube_")
        if key not in self._body:
            raise ValueError(f"unknown object {name!r}; valid: {', '.join(OBJECTS)}")
        return key

    def object_position(self, name: str) -> np.ndarray:
        """(3,) world position of a cube ('red', 'green', 'blue' or 'cube_red'...) or the 'bowl'."""
        a = self._qadr[self._name(name)]
        return self.data.qpos[a : a + 3].copy()

    def object_quat(self, name: str) -> np.ndarray:
        """(4,) w, x, y, z orientation."""
        a = self._qadr[self._name(name)]
        return self.data.qpos[a + 3 : a + 7].copy()

    def object_yaw(self, name: str) -> float:
        w, x, y, z = self.object_quat(name)
        return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))

    def object_velocity(self, name: str) -> np.ndarray:
        """(6,) linear (world) then angular velocity."""
        a = self._vadr[self._name(name)]
        return self.data.qvel[a : a + 6].copy()

    def set_object_pose(self, name: str, pos, yaw: float = 0.0) -> None:
        key = self._name(name)
        a, v = self._qadr[key], self._vadr[key]
        self.data.qpos[a : a + 3] = pos
        self.data.qpos[a + 3 : a + 7] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
        self.data.qvel[v : v + 6] = 0.0

    def touching(self, name: str, geoms: set[int]) -> bool:
        """Whether any geom of object `name` is in contact with any of `geoms` now."""
        own = self._geoms_of[self._name(name)]
        for i in range(self.data.ncon):
            c = self.data.contact[i]
            g1, g2 = int(c.geom1), int(c.geom2)
            if (g1 in own and g2 in geoms) or (g2 in own and g1 in geoms):
                return True
        return False

    def grasped(self, name: str) -> bool:
        """Both finger pads touch the object."""
        own = self._geoms_of[self._name(name)]
        hit = set()
        for i in range(self.data.ncon):
            c = self.data.contact[i]
            g1, g2 = int(c.geom1), int(c.geom2)
            if g1 in own and g2 in self.pad_geoms:
                hit.add(g2)
            elif g2 in own and g1 in self.pad_geoms:
                hit.add(g1)
        return hit == self.pad_geoms
