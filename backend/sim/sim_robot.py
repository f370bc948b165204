"""The MuJoCo table-top robot: implements backend.robot.Robot for the 6-DoF arm + parallel gripper."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import mujoco
import numpy as np

from backend.robot import EETarget, Observation, RobotLimits
from backend.sim import ik
from backend.sim.mjcf import ARM_JOINTS, FINGER_JOINTS, ArmSpec, SceneSpec, scene_mjcf
from backend.sim.physics import COLOURS, Physics
from backend.sim.tasks import LAYOUTS, Task, make_task
from storage.features import grounding_key

CAMERAS = ("front", "wrist")


def _release_gl_context() -> None:
    """Detach the EGL context from this thread so the next render may come from another one.

    An EGL context is current on one thread at a time: without this, a web server that renders from a worker
    thread other than the one that rendered first gets EGL_BAD_ACCESS. Renderer.render() makes it current again.
    """
    if os.environ.get("MUJOCO_GL", "").lower() != "egl":
        return
    from mujoco import egl
    from OpenGL import EGL

    if egl.EGL_DISPLAY is not None:
        EGL.eglMakeCurrent(egl.EGL_DISPLAY, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, EGL.EGL_NO_CONTEXT)


@dataclass(frozen=True)
class SimConfig:
    """What a caller may choose about the sim; the defaults are the dataset defaults."""

    image_size: int = 224  # square; height/width override it when set
    height: int | None = None
    width: int | None = None
    cameras: tuple[str, ...] = CAMERAS
    control_hz: int = 30
    timestep: float = 0.002  # physics step (s); substeps per control period = round(1 / (control_hz * timestep))
    light_jitter: bool = False
    colour_jitter: bool = False
    shadows: bool = False  # ~4x slower rendering on CPU (llvmpipe)
    paraphrase: bool = False  # instruction: a seeded random template instead of the canonical first one
    layout: str = "uniform"  # "edge": the instructed cube at the edge of the layout box (an evaluation suite)
    max_episode_steps: int = 300  # 10 s at 30 Hz; the gym wrapper truncates here
    max_joint_speed: float = 2.0  # rad/s per arm joint, used by ee_action and published in limits
    gripper_speed: float = 4.0  # gripper command units per second (0 -> 1 in 0.25 s)
    home_position: tuple[float, float, float] = (0.36, 0.0, 0.26)  # TCP at reset (m), pointing down, yaw 0
    arm: ArmSpec = field(default_factory=ArmSpec)
    scene: SceneSpec = field(default_factory=SceneSpec)

    @property
    def image_hw(self) -> tuple[int, int]:
        return (self.height or self.image_size, self.width or self.image_size)


class SimRobot:
    """MuJoCo implementation of `backend.robot.Robot`.

    Action (7,): six arm joint-position targets (rad) + gripper command in [0, 1] (0 open, 1 closed).
    State (7,) float32: six measured arm joint positions (rad) + measured gripper closure in [0, 1] (0 open, 1 closed),
    the same convention as the gripper command so a policy sees command and measurement on one scale.
    """

    def __init__(self, config: SimConfig | None = None):
        self.config = cfg = config or SimConfig()
        unknown = [c for c in cfg.cameras if c not in CAMERAS]
        if unknown:
            raise ValueError(f"unknown cameras {unknown}; available: {', '.join(CAMERAS)}")
        if cfg.control_hz <= 0:
            raise ValueError("control_hz must be positive")
        if cfg.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {cfg.layout!r}; layouts: {', '.join(LAYOUTS)}")
        h, w = cfg.image_hw
        self.model = mujoco.MjModel.from_xml_string(
            scene_mjcf(cfg.arm, cfg.scene, image_size=max(h, w), timestep=cfg.timestep, shadows=cfg.shadows)
        )
        self.data = mujoco.MjData(self.model)
        self.physics = Physics(self.model, self.data, cfg.scene)
        m = self.model

        self.camera_names: tuple[str, ...] = tuple(cfg.cameras)
        self.state_names: tuple[str, ...] = (*ARM_JOINTS, "gripper")
        self.action_names: tuple[str, ...] = (*ARM_JOINTS, "gripper")
        self.control_hz: int = cfg.control_hz
        self.n_substeps = max(1, round(1.0 / (cfg.control_hz * cfg.timestep)))
        # Shrink the physics step so n_substeps of them last exactly one control period: recorded timestamps
        # (frame_index / fps) then match sim time instead of drifting 2% (17 x 2 ms = 34 ms != 33.3 ms).
        self.model.opt.timestep = 1.0 / (cfg.control_hz * self.n_substeps)

        self._arm_jnt = np.array([m.joint(j).id for j in ARM_JOINTS])
        self._arm_qadr = m.jnt_qposadr[self._arm_jnt]
        self._arm_dadr = m.jnt_dofadr[self._arm_jnt]
        self._finger_qadr = np.array([m.jnt_qposadr[m.joint(j).id] for j in FINGER_JOINTS])
        self._arm_act = np.array([m.actuator(j).id for j in ARM_JOINTS])
        self._finger_act = np.array([m.actuator(j).id for j in FINGER_JOINTS])
        self._tcp = m.site("tcp").id
        self._fk_data: mujoco.MjData | None = None  # forward_kinematics' scratch state, made on first use
        self._travel = cfg.arm.finger_travel

        q_low, q_high = m.jnt_range[self._arm_jnt].T.copy()
        dt = 1.0 / cfg.control_hz
        self._max_step = np.full(6, cfg.max_joint_speed * dt)
        self._max_grip_step = cfg.gripper_speed * dt
        self.limits = RobotLimits(
            joint_low=np.append(q_low, 0.0).astype(np.float32),
            joint_high=np.append(q_high, 1.0).astype(np.float32),
            max_joint_speed=np.append(np.full(6, cfg.max_joint_speed), cfg.gripper_speed).astype(np.float32),
            workspace_low=np.array([0.15, -0.45, 0.02], dtype=np.float32),  # a box; `reachable` trims it
            workspace_high=np.array([0.70, 0.45, 0.50], dtype=np.float32),
            extra={
                "timestep": float(self.model.opt.timestep),
                "substeps": self.n_substeps,
                "table_z": 0.0,
                "finger_travel_m": self._travel,
                "gripper_convention": "action and state: 0 open .. 1 closed",
            },
        )
        self._q_low, self._q_high = q_low, q_high

        # Nominal appearance, restored before each episode's jitter.
        self._light_diffuse0 = m.light_diffuse.copy()
        self._light_pos0 = m.light_pos.copy()
        self._light_dir0 = m.light_dir.copy()
        self._geom_rgba0 = m.geom_rgba.copy()
        self._mat_rgba0 = m.mat_rgba.copy()
        self._cube_geoms = np.array([m.geom(f"cube_{c}").id for c in COLOURS])
        self._table_geom = m.geom("table").id

        self.home_qpos = self._solve_home()
        self._renderer: mujoco.Renderer | None = None
        self._render_lock = threading.Lock()
        self.task: Task | None = None
        self.instruction: str = ""
        self.seed: int | None = None
        self.step_count = 0
        self._t0 = 0.0
        self._last_action = np.append(self.home_qpos, 0.0)
        self.reset(0, make_task("pick", "red"))

    # ------------------------------------------------------------------ setup
    def _solve_home(self) -> np.ndarray:
        scratch = mujoco.MjData(self.model)
        # Elbow up, wrist bent down: a seed in the right IK branch.
        scratch.qpos[self._arm_qadr] = (0.0, 0.5, 1.6, 0.0, 1.0, 0.0)
        pos = np.array(self.config.home_position)
        return ik.solve_ik(
            self.model,
            scratch,
            self._tcp,
            self._arm_qadr,
            self._arm_dadr,
            pos,
            ik.down_orientation(0.0),
            self._q_low,
            self._q_high,
            iters=500,
        )

    def _apply_jitter(self, rng: np.random.Generator) -> None:
        m = self.model
        m.light_diffuse[:] = self._light_diffuse0
        m.light_pos[:] = self._light_pos0
        m.light_dir[:] = self._light_dir0
        m.geom_rgba[:] = self._geom_rgba0
        m.mat_rgba[:] = self._mat_rgba0
        if self.config.light_jitter:
            m.light_diffuse[:] = np.clip(self._light_diffuse0 * rng.uniform(0.6, 1.3, (m.nlight, 1)), 0, 1)
            m.light_pos[:] = self._light_pos0 + rng.uniform(-0.3, 0.3, self._light_pos0.shape)
            d = self._light_dir0 + rng.uniform(-0.25, 0.25, self._light_dir0.shape)
            m.light_dir[:] = d / np.linalg.norm(d, axis=1, keepdims=True)
        if self.config.colour_jitter:
            # Keep each cube's hue recognisable: scale brightness and nudge channels a little.
            rgb = self._geom_rgba0[self._cube_geoms, :3]
            rgb = rgb * rng.uniform(0.75, 1.15, (len(rgb), 1)) + rng.uniform(-0.06, 0.06, rgb.shape)
            m.geom_rgba[self._cube_geoms, :3] = np.clip(rgb, 0, 1)
            m.mat_rgba[:, :3] = np.clip(self._mat_rgba0[:, :3] * rng.uniform(0.8, 1.2, (m.nmat, 3)), 0, 1)

    # ------------------------------------------------------------------ Robot protocol
    def reset(self, seed: int, task: Task | str | None = None) -> Observation:
        """Seeded episode: props placed by `task`, arm at home, gripper open; renders unless cameras are empty."""
        self._reset(seed, task)
        return self.observe()

    def reset_state(self, seed: int, task: Task | str | None = None) -> Observation:
        """`reset` without rendering (images = {})."""
        self._reset(seed, task)
        return self.observe(render=False)

    def _reset(self, seed: int, task: Task | str | None) -> None:
        if isinstance(task, str):
            task = make_task(task)
        if task is None:
            task = self.task or make_task("pick")
        self.task, self.seed = task, int(seed)
        # Separate streams: the layout of a seed does not change when appearance jitter is switched on.
        rng, visual_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(self.seed).spawn(2))
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        self._apply_jitter(visual_rng)
        d.qpos[self._arm_qadr] = self.home_qpos
        d.qpos[self._finger_qadr] = self._travel
        task.initialize_episode(self.physics, rng, self.config.layout)
        self.instruction = task.instruction(rng if self.config.paraphrase else None)
        self._last_action = np.append(self.home_qpos, 0.0)
        self._set_ctrl(self._last_action)
        mujoco.mj_forward(m, d)
        # Let contacts settle so the first observation is at rest (deterministic: same seed, same steps).
        for _ in range(3 * self.n_substeps):
            mujoco.mj_step(m, d)
        mujoco.mj_forward(m, d)
        self._t0 = d.time
        self.step_count = 0

    def observe(self, render: bool = True) -> Observation:
        """Render every camera once (unless `render=False`) and read the state; with the images come the
        training-only grounding signals (`grounding_signals`)."""
        images = self._render(self.camera_names) if render and self.camera_names else {}
        signals = self.grounding_signals(tuple(images)) if images else {}
        return Observation(images=images, state=self.state(), timestamp=float(self.data.time - self._t0),
                           signals=signals)  # fmt: skip

    def grounding_signals(self, cameras: tuple[str, ...]) -> dict[str, np.ndarray]:
        """{grounding_key(camera): (2,) float32}: the instructed object's centre in each camera's image, (x, y) in
        [-1, 1], NaN when it is out of view. Privileged (a real robot cannot know it), so it is recorded as a
        training signal only; policies never see it as an input."""
        target = getattr(self.task, "target", None)
        if target is None:
            return {}
        centre = self.object_position(target)[None]  # (1, 3)
        out = {}
        for cam in cameras:
            xy = self.project(centre, cam)[0]  # fractions of width / height, NaN behind the camera
            inside = np.all(np.isfinite(xy)) and np.all((xy >= 0.0) & (xy <= 1.0))
            out[grounding_key(cam)] = (xy * 2.0 - 1.0 if inside else np.full(2, np.nan)).astype(np.float32)
        return out

    def state(self) -> np.ndarray:
        """(7,) float32: arm joint positions + measured gripper closure (0 open .. 1 closed)."""
        q = self.data.qpos
        opening = float(np.clip(q[self._finger_qadr].mean() / self._travel, 0.0, 1.0))
        return np.append(q[self._arm_qadr], 1.0 - opening).astype(np.float32)

    def apply(self, action: np.ndarray) -> None:
        """Command joint targets + gripper (7,) and advance one control period (`n_substeps` physics steps)."""
        a = np.asarray(action, dtype=np.float64)
        n = len(self.action_names)
        if a.shape != (n,):
            raise ValueError(
                f"action must have shape ({n},) = {len(ARM_JOINTS)} joint targets + gripper, got {a.shape}"
            )
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action contains NaN or inf: {a.tolist()}")
        a = np.clip(a, self.limits.joint_low, self.limits.joint_high)
        self._last_action = a
        self._set_ctrl(a)
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)
        mujoco.mj_forward(self.model, self.data)  # derived quantities (site poses, contacts) match qpos now
        self.step_count += 1

    def ee_target(self) -> EETarget:
        """Current TCP position, tool yaw and the last gripper command."""
        rot = self.data.site_xmat[self._tcp].reshape(3, 3)
        return EETarget(
            position=self.data.site_xpos[self._tcp].copy(),
            yaw=ik.tool_yaw(rot),
            gripper=float(self._last_action[-1]),
        )

    def ee_action(self, target: EETarget) -> np.ndarray:
        """DLS differential IK from the measured joints toward `target` (position + yaw, tool down).

        The TCP goal is clamped by `reachable`; the joint step is scaled to the max joint speed per
        control period and clamped to the joint limits; the gripper command is rate-limited the same way.
        Returns the (7,) float32 action.
        """
        pos = self.reachable(np.asarray(target.position, dtype=float))
        rot_now = self.data.site_xmat[self._tcp].reshape(3, 3)
        # Choose the yaw branch nearest the current one so a command never asks for a half-turn of the wrist.
        yaw = ik.tool_yaw(rot_now) + ik.wrap_angle(float(target.yaw) - ik.tool_yaw(rot_now))
        dq = ik.dls_step(self.model, self.data, self._tcp, self._arm_dadr, pos, ik.down_orientation(yaw))
        scale = np.max(np.abs(dq) / self._max_step)
        if scale > 1.0:
            dq /= scale  # same direction, slower
        q = np.clip(self.data.qpos[self._arm_qadr] + dq, self._q_low, self._q_high)
        g_prev = float(self._last_action[-1])
        g = g_prev + np.clip(
            float(np.clip(target.gripper, 0.0, 1.0)) - g_prev, -self._max_grip_step, self._max_grip_step
        )
        return np.append(q, g).astype(np.float32)

    def reachable(self, position: np.ndarray) -> np.ndarray:
        """The TCP goal clamped to the workspace box and to a shell the tool-down arm can reach without
        stretching straight (a singularity) or folding onto its base."""
        arm = self.config.arm
        pos = np.clip(position, self.limits.workspace_low, self.limits.workspace_high)
        wrist = pos + np.array([0.0, 0.0, arm.tool_length])  # tool points down: the wrist is straight above
        v = wrist - arm.shoulder
        dist = float(np.linalg.norm(v))
        r_max, r_min = arm.reach_margin * arm.reach, 0.25
        if dist > r_max:
            pos = arm.shoulder + v * (r_max / dist) - np.array([0.0, 0.0, arm.tool_length])
        elif 1e-9 < dist < r_min:
            pos = arm.shoulder + v * (r_min / dist) - np.array([0.0, 0.0, arm.tool_length])
        return np.clip(pos, self.limits.workspace_low, self.limits.workspace_high)

    def success(self) -> bool:
        return bool(self.task is not None and self.task.success(self.physics))

    def project(self, points: np.ndarray, camera: str = "front") -> np.ndarray:
        """(N, 2) image positions of world `points` (N, 3) in `camera`, as fractions of its width and height (x
        right, y down; NaN for points behind the camera): drawing scales them to any display size."""
        from backend.sim.projection import project_points

        h, w = self.config.image_hw
        points = np.asarray(points, dtype=float).reshape(-1, 3)
        uv, in_front = project_points(self.model, self.data, camera, points, h, w)
        out = uv / np.array([w, h], dtype=float)
        out[~in_front] = np.nan
        return out

    def forward_kinematics(self, action: np.ndarray) -> np.ndarray:
        """(3,) TCP position for joint targets `action` (its arm entries), on a scratch MjData: the sim is untouched."""
        if self._fk_data is None:
            self._fk_data = mujoco.MjData(self.model)
        self._fk_data.qpos[self._arm_qadr] = np.asarray(action, dtype=float)[: len(self._arm_qadr)]
        mujoco.mj_kinematics(self.model, self._fk_data)
        return self._fk_data.site_xpos[self._tcp].copy()

    # ------------------------------------------------------------------ privileged / helpers
    def object_position(self, name: str) -> np.ndarray:
        """(3,) position of 'red' | 'green' | 'blue' | 'bowl' (privileged: experts and tests)."""
        return self.physics.object_position(name)

    def render(self, camera: str = "front") -> np.ndarray:
        """One (H, W, 3) uint8 frame from any camera in the model."""
        return self._render((camera,))[camera]

    def _get_renderer(self) -> mujoco.Renderer:
        if self._renderer is None:
            h, w = self.config.image_hw
            self._renderer = mujoco.Renderer(self.model, height=h, width=w)
        return self._renderer

    def _render(self, cameras: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Render `cameras` with the one reusable renderer, from whichever thread calls."""
        with self._render_lock:
            r = self._get_renderer()
            try:
                out = {}
                for cam in cameras:
                    r.update_scene(self.data, camera=cam)
                    out[cam] = r.render()
                return out
            finally:
                _release_gl_context()

    def _set_ctrl(self, action: np.ndarray) -> None:
        self.data.ctrl[self._arm_act] = action[:6]
        self.data.ctrl[self._finger_act] = self._travel * (1.0 - action[6])

    def close(self) -> None:
        """Free the renderer (GL context); the robot still steps, and renders again on demand."""
        with self._render_lock:
            if self._renderer is not None:
                self._renderer.close()
                self._renderer = None

    def __enter__(self) -> SimRobot:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
