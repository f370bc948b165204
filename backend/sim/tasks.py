"""Language-conditioned table-top tasks, registered by name (dm_control style: initialize_episode + success)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from backend.sim.physics import COLOURS, Physics

__all__ = [
    "COLOURS",
    "Task",
    "UnknownTaskError",
    "list_tasks",
    "make_task",
    "register_task",
    "sample_layout",
]

_REGISTRY: dict[str, type[Task]] = {}

# Where props may be placed (robot base frame, metres): in front of the arm, well inside its reach.
LAYOUT_LOW = np.array([0.30, -0.20])
LAYOUT_HIGH = np.array([0.54, 0.20])
MIN_CUBE_GAP = 0.10  # cube centre to cube centre: open fingers must not land on a neighbour
MIN_BOWL_GAP = 0.16  # bowl centre to cube centre
EDGE_BAND = 0.1  # layout="edge": the instructed cube lies in the outer 10% of the layout box on one side
LAYOUTS = ("uniform", "edge")


class UnknownTaskError(ValueError):
    """An unknown task name or colour; the message lists the valid ones."""


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make `cls` loadable by `make_task(cls.name)`."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__name__} needs a class attribute `name`")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"task {cls.name!r} is already registered by {_REGISTRY[cls.name].__name__}")
    _REGISTRY[cls.name] = cls
    return cls


def list_tasks() -> list[str]:
    return sorted(_REGISTRY)


def make_task(name: str, colour: str = "red") -> Task:
    """A task instance by registered name, e.g. `make_task("place", colour="blue")`."""
    if name not in _REGISTRY:
        raise UnknownTaskError(f"unknown task {name!r}; registered tasks: {', '.join(list_tasks())}")
    return _REGISTRY[name](colour=colour)


def _edge_xy(rng: np.random.Generator) -> np.ndarray:
    """A point of the layout box's outer EDGE_BAND on one of its four sides (chosen at random)."""
    xy = rng.uniform(LAYOUT_LOW, LAYOUT_HIGH)
    axis, high = int(rng.integers(2)), bool(rng.integers(2))
    band = EDGE_BAND * (LAYOUT_HIGH[axis] - LAYOUT_LOW[axis])
    xy[axis] = LAYOUT_HIGH[axis] - rng.uniform(0, band) if high else LAYOUT_LOW[axis] + rng.uniform(0, band)
    return xy


def sample_layout(
    rng: np.random.Generator, max_tries: int = 1000, edge: str | None = None
) -> dict[str, tuple[np.ndarray, float]]:
    """Non-overlapping (xy, yaw) for the bowl and the three cubes, reproducible from `rng`; with `edge` (a
    colour), that cube is placed at the edge of the box (evaluation of positions the demos rarely had)."""
    for _ in range(max_tries):
        placed: dict[str, tuple[np.ndarray, float]] = {}
        bowl = rng.uniform(LAYOUT_LOW, LAYOUT_HIGH)
        placed["bowl"] = (bowl, 0.0)
        ok = True
        for colour in COLOURS:
            for _ in range(200):
                xy = _edge_xy(rng) if colour == edge else rng.uniform(LAYOUT_LOW, LAYOUT_HIGH)
                if np.linalg.norm(xy - bowl) < MIN_BOWL_GAP:
                    continue
                if any(np.linalg.norm(xy - p) < MIN_CUBE_GAP for k, (p, _) in placed.items() if k != "bowl"):
                    continue
                placed[colour] = (xy, float(rng.uniform(-np.pi / 4, np.pi / 4)))
                break
            else:
                ok = False
                break
        if ok:
            return placed
    raise RuntimeError("could not place the props without overlap")


class Task:
    """A language-conditioned task on the shared table-top scene.

    Subclasses set `name` and `instruction_templates` ("{colour}" is filled in) and implement `success`.
    """

    name: ClassVar[str] = ""
    instruction_templates: ClassVar[tuple[str, ...]] = ()

    def __init__(self, colour: str = "red"):
        if colour not in COLOURS:
            raise UnknownTaskError(f"unknown colour {colour!r}; valid colours: {', '.join(COLOURS)}")
        self.colour = colour
        self.target = colour  # the object the instruction is about

    def __repr__(self) -> str:
        return f"{type(self).__name__}(colour={self.colour!r})"

    def instruction(self, rng: np.random.Generator | None = None) -> str:
        """The canonical (first) template, or a random paraphrase when `rng` is given."""
        i = 0 if rng is None else int(rng.integers(len(self.instruction_templates)))
        return self.instruction_templates[i].format(colour=self.colour)

    def initialize_episode(self, physics: Physics, rng: np.random.Generator, layout_mode: str = "uniform") -> None:
        """Place the bowl and the cubes at random, non-overlapping poses resting on the table (`layout_mode`
        "edge": the instructed cube at the edge of the layout box)."""
        layout = sample_layout(rng, edge=self.target if layout_mode == "edge" else None)
        half = physics.scene.cube_half
        for name, (xy, yaw) in layout.items():
            z = physics.table_z + (0.0 if name == "bowl" else half)
            physics.set_object_pose(name, (xy[0], xy[1], z), yaw)

    def success(self, physics: Physics) -> bool:
        raise NotImplementedError

    # Metrics a task may report besides success (e.g. for logging); keys are free-form.
    def info(self, physics: Physics) -> dict[str, float]:
        return {}


@register_task
class PickTask(Task):
    """Lift the instructed cube at least `lift_height` above the table."""

    name = "pick"
    instruction_templates = (
        "pick up the {colour} cube",
        "lift the {colour} block",
        "grab the {colour} cube and raise it",
        "pick the {colour} cube up off the table",
        "raise the {colour} cube",
    )
    lift_height = 0.08

    def lifted(self, physics: Physics) -> float:
        return float(physics.object_position(self.target)[2] - physics.table_z - physics.scene.cube_half)

    def success(self, physics: Physics) -> bool:
        return self.lifted(physics) >= self.lift_height

    def info(self, physics: Physics) -> dict[str, float]:
        return {"lift_height": self.lifted(physics)}


@register_task
class PlaceTask(Task):
    """Put the instructed cube in the bowl: resting inside it, slow, and no longer held by the fingers."""

    name = "place"
    instruction_templates = (
        "put the {colour} cube in the bowl",
        "place the {colour} block in the bowl",
        "drop the {colour} cube into the bowl",
        "move the {colour} cube into the bowl",
        "pick up the {colour} cube and put it in the bowl",
    )
    max_speed = 0.05  # m/s: "resting"

    def in_bowl(self, physics: Physics) -> bool:
        sc = physics.scene
        cube = physics.object_position(self.target)
        bowl = physics.object_position("bowl")
        inner = sc.bowl_radius - sc.bowl_wall_half[0]
        horizontal = np.linalg.norm(cube[:2] - bowl[:2])
        height = cube[2] - (bowl[2] + 2 * sc.bowl_floor_half)  # cube centre above the bowl floor
        return bool(horizontal < inner - 0.5 * sc.cube_half and 0.0 < height < 2.5 * sc.cube_half)

    def success(self, physics: Physics) -> bool:
        if not self.in_bowl(physics):
            return False
        if np.linalg.norm(physics.object_velocity(self.target)[:3]) > self.max_speed:
            return False
        return not physics.touching(self.target, physics.finger_geoms)

    def info(self, physics: Physics) -> dict[str, float]:
        cube, bowl = physics.object_position(self.target), physics.object_position("bowl")
        return {"distance_to_bowl": float(np.linalg.norm(cube[:2] - bowl[:2]))}
