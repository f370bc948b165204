"""Scripted experts: waypoints in the robot base frame, minimum-jerk interpolated, turned into joint actions by the
robot's own differential IK (`robot.ee_action`), so demos use exactly the action space teleop and policies use."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from backend.robot import EETarget
from backend.sim.tasks import Task

_EXPERTS: dict[str, type[ScriptedExpert]] = {}

CRUISE_SPEED = 0.25  # m/s between waypoints far apart
MIN_MOVE_S = 0.5


def register_expert(task_name: str) -> Callable[[type[ScriptedExpert]], type[ScriptedExpert]]:
    def deco(cls: type[ScriptedExpert]) -> type[ScriptedExpert]:
        _EXPERTS[task_name] = cls
        return cls

    return deco


def make_expert(task: Task | str) -> ScriptedExpert:
    """The scripted expert for a task instance, or for a task name (then the robot's current task gives the colour)."""
    name = task if isinstance(task, str) else task.name
    if name not in _EXPERTS:
        raise ValueError(f"no scripted expert for task {name!r}; experts exist for: {', '.join(sorted(_EXPERTS))}")
    return _EXPERTS[name](None if isinstance(task, str) else task)


def _min_jerk(s: float) -> float:
    """Starts and ends at rest."""
    s = min(max(s, 0.0), 1.0)
    return s * s * s * (10 - 15 * s + 6 * s * s)


def _ease_out(s: float) -> float:
    """Starts at twice the mean speed and ends at rest (quadratic)."""
    s = min(max(s, 0.0), 1.0)
    return 1.0 - (1.0 - s) * (1.0 - s)


# Speed profiles of a segment, by name. Why not min-jerk everywhere: a policy cloned from the demos reads the phase
# from what it sees, and a segment that starts from rest shows it "here, barely moving" at its start, so a policy
# that arrives there predicts barely moving and stays (a fixed point of its own making). Measured on vla_tiny with
# the old plan: 9 of 11 failed test rollouts closed on the right cube and then crept up 1-4 cm in 200 ticks,
# because a 0.2 s squeeze hold plus the min-jerk start of the lift showed ~12 static ticks, longer than the
# policy's 10-step chunk. Segments that follow a stop therefore start at speed (`ease_out`).
PROFILES: dict[str, Callable[[float], float]] = {"min_jerk": _min_jerk, "ease_out": _ease_out}


@dataclass
class Waypoint:
    position: np.ndarray  # (3,) TCP goal, metres
    yaw: float
    gripper: float  # 0 open .. 1 closed
    duration: float  # seconds to get here from the previous waypoint
    profile: str = "min_jerk"  # a key of PROFILES: how the segment that ends here is timed


def grasp_yaw(cube_yaw: float, current: float = 0.0) -> float:
    """Of the cube's four symmetric grasp yaws, the one closest to `current`."""
    k = round((current - cube_yaw) / (math.pi / 2))
    return cube_yaw + k * math.pi / 2


def _travel_time(a: np.ndarray, b: np.ndarray) -> float:
    return max(MIN_MOVE_S, float(np.linalg.norm(b - a)) / CRUISE_SPEED)


class ScriptedExpert:
    """Plays a waypoint plan built at `reset`; after the last waypoint it holds the final pose."""

    approach_height = 0.10  # above the cube's grasp point
    carry_height = 0.16  # TCP height while carrying
    grasp_depth = 0.004  # TCP this far above the cube centre (fingertips stay clear of the table)

    def __init__(self, task: Task | None = None) -> None:
        self.task = task  # None: follow whatever task the robot was reset with
        self.plan: list[Waypoint] = []
        self._times: list[float] = []
        self._start: EETarget | None = None
        self.t = 0
        self.last_target: EETarget | None = None  # the goal of the latest `act` (what DART noise perturbs)

    def reset(self, robot) -> None:
        self._start = robot.ee_target()
        self.plan = self.build_plan(robot)
        self._times = list(np.cumsum([w.duration for w in self.plan]))
        self.t = 0

    @property
    def duration(self) -> float:
        return self._times[-1] if self._times else 0.0

    def build_plan(self, robot) -> list[Waypoint]:
        raise NotImplementedError

    def colour(self, robot) -> str:
        return (self.task or robot.task).colour

    def target(self, time_s: float) -> EETarget:
        """The interpolated end-effector goal at `time_s` into the plan."""
        prev = Waypoint(self._start.position, self._start.yaw, self._start.gripper, 0.0)
        t0 = 0.0
        for wp, t1 in zip(self.plan, self._times, strict=True):
            if time_s < t1:
                s = PROFILES[wp.profile]((time_s - t0) / max(wp.duration, 1e-9))
                return EETarget(
                    position=prev.position + s * (wp.position - prev.position),
                    yaw=prev.yaw + s * (wp.yaw - prev.yaw),
                    gripper=prev.gripper + s * (wp.gripper - prev.gripper),
                )
            prev, t0 = wp, t1
        return EETarget(position=prev.position, yaw=prev.yaw, gripper=prev.gripper)

    def done(self, robot) -> bool:
        return self.t / robot.control_hz >= self.duration

    def act(self, robot) -> np.ndarray:
        """(7,) joint action for the current control step."""
        if self._start is None:
            self.reset(robot)
        self.t += 1
        self.last_target = self.target(self.t / robot.control_hz)
        return robot.ee_action(self.last_target)

    # ---------------------------------------------------------------- shared pieces
    def _pick_waypoints(self, robot, colour: str) -> list[Waypoint]:
        cube = robot.object_position(colour)
        yaw = grasp_yaw(robot.physics.object_yaw(colour), self._start.yaw)
        grasp = cube + np.array([0.0, 0.0, self.grasp_depth])
        above = grasp + np.array([0.0, 0.0, self.approach_height])
        lifted = np.array([grasp[0], grasp[1], self.carry_height])
        start = self._start.position
        # No hold longer than a few ticks (see PROFILES): the descent and the lift start at speed, the gripper
        # closes as fast as the robot lets it (0.25 s) and the lift follows at once.
        return [
            Waypoint(above, yaw, 0.0, _travel_time(start, above) + 0.15),
            Waypoint(grasp, yaw, 0.0, 0.75, "ease_out"),
            Waypoint(grasp, yaw, 0.0, 0.10),  # settle
            Waypoint(grasp, yaw, 1.0, 0.25),  # close
            Waypoint(lifted, yaw, 1.0, 0.80, "ease_out"),
        ]


@dataclass
class TargetNoise:
    """DART-style noise injection for scripted demos (Laskey et al., 2017): the arm executes the expert's goal
    plus a slowly varying offset, while the episode records the expert's clean action from the state it is
    actually in. The demos then visit the small deviations a learned policy makes and show how to come back from
    them, instead of only the expert's own perfect path (which is all behaviour cloning sees otherwise).

    The offset is an Ornstein-Uhlenbeck process per axis (stationary std `position_m` metres on x, y, z and
    `yaw_rad` on the wrist yaw, correlation time `tau_s`): white noise per tick would be filtered out by the
    arm's own dynamics before it moved the gripper anywhere. The gripper is never perturbed.
    """

    position_m: float = 0.01
    yaw_rad: float = 0.05
    tau_s: float = 0.3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.position_m < 0 or self.yaw_rad < 0 or self.tau_s <= 0:
            raise ValueError("noise scales must be >= 0 and tau_s > 0")
        self.reset(self.seed)

    def reset(self, seed: int) -> None:
        """A fresh offset process (a demo's seed gives its noise, so a recording is reproducible)."""
        self._rng = np.random.default_rng(seed)
        self._offset = np.zeros(4)  # (dx, dy, dz, dyaw), starts on the expert's path

    def perturb(self, target: EETarget, dt: float) -> EETarget:
        rho = math.exp(-dt / self.tau_s)
        scale = np.array([self.position_m] * 3 + [self.yaw_rad])
        self._offset = rho * self._offset + math.sqrt(1.0 - rho * rho) * scale * self._rng.standard_normal(4)
        return EETarget(
            position=np.asarray(target.position, dtype=float) + self._offset[:3],
            yaw=float(target.yaw) + float(self._offset[3]),
            gripper=target.gripper,
        )


@register_expert("pick")
class PickExpert(ScriptedExpert):
    """Approach above the cube, descend, close, lift."""

    def build_plan(self, robot) -> list[Waypoint]:
        wps = self._pick_waypoints(robot, self.colour(robot))
        last = wps[-1]
        return [*wps, Waypoint(last.position, last.yaw, 1.0, 0.4)]  # hold aloft


@register_expert("place")
class PlaceExpert(ScriptedExpert):
    """Pick the cube, carry it over the bowl, lower it inside, open, back off."""

    release_height = 0.055  # TCP height over the table when opening (cube bottom ~1.5 cm above the bowl floor)

    def build_plan(self, robot) -> list[Waypoint]:
        wps = self._pick_waypoints(robot, self.colour(robot))
        lifted = wps[-1]
        bowl = robot.object_position("bowl")
        over = np.array([bowl[0], bowl[1], self.carry_height])
        low = np.array([bowl[0], bowl[1], bowl[2] + self.release_height])
        up = np.array([bowl[0], bowl[1], self.carry_height])
        return [
            *wps,
            Waypoint(over, lifted.yaw, 1.0, _travel_time(lifted.position, over), "ease_out"),
            Waypoint(low, lifted.yaw, 1.0, 0.6, "ease_out"),
            Waypoint(low, lifted.yaw, 0.0, 0.3),  # open
            Waypoint(low, lifted.yaw, 0.0, 0.15),
            Waypoint(up, lifted.yaw, 0.0, 0.6, "ease_out"),
        ]
