"""Running a registered model on the live robot: load it (files verified), check it fits the robot, wrap it in a
PolicySource and install it in the session; the session's take_over / hand_back / continue_policy do the rest.

    source = install_policy(registry, session, model_id=None)   # None: the production model
    session.set_source("policy")                                # the lease holder starts it (POST /api/robot/source)

A model that does not fit the robot is refused before anything changes in the session: cameras the robot does not
have, another state or action size. Files missing or altered raise the registry's ModelIntegrityError.
"""

from __future__ import annotations

from backend.control.policy_source import ModelInfo, PolicySource
from backend.services.models import ModelRegistry
from storage.errors import NotFoundError

__all__ = ["PolicyMismatchError", "fit_problems", "install_policy", "load_policy"]

MAX_HELP_K = 300  # ticks: 10 s at 30 Hz


class PolicyMismatchError(ValueError):
    """The model was trained for another robot (cameras, state or action size); nothing was installed."""


def fit_problems(config, *, cameras, state_dim: int, action_dim: int) -> list[str]:
    """Why a policy config cannot drive a robot with these cameras and sizes ([] when it can)."""
    problems = []
    missing = sorted(set(config.cameras) - set(cameras))
    if missing:
        problems.append(f"it needs camera(s) {', '.join(missing)}; the robot has {', '.join(cameras)}")
    if int(config.state_dim) != state_dim:
        problems.append(f"it reads a {config.state_dim}-D state; the robot's is {state_dim}-D")
    if int(config.action_dim) != action_dim:
        problems.append(f"it outputs {config.action_dim}-D actions; the robot takes {action_dim}-D")
    return problems


def install_policy(
    registry: ModelRegistry,
    session,
    *,
    model_id: int | None = None,
    help_k: int = 5,
    ask_for_help: bool = True,
    asynchronous: bool = True,
    process: bool = True,
    num_threads: int | None = None,
) -> PolicySource:
    """Load `model_id` (None: the newest production model) into `session` as its "policy" source; with `process`
    (and `asynchronous`) its predictions come from a process of its own (backend.control.policy_process)."""
    if not 1 <= int(help_k) <= MAX_HELP_K:
        raise ValueError(f"help_k must be in 1..{MAX_HELP_K} predictions, got {help_k}")
    if model_id is None:
        production = registry.production()
        if production is None:
            raise NotFoundError("no model is in production; promote one or name a model_id")
        model_id = production.id
    info = registry.get(model_id)  # NotFoundError -> 404
    robot = session.robot
    problems = fit_problems(
        _Config(info.config),
        cameras=tuple(session.camera_names),
        state_dim=len(robot.state_names),
        action_dim=len(robot.action_names),
    )
    if problems:
        raise PolicyMismatchError(f"{info.label} cannot drive this robot: {'; '.join(problems)}")
    model = registry.load(model_id)  # verifies every file first (ModelIntegrityError)
    from vla_core.inference import Policy

    if num_threads is not None:
        import torch

        torch.set_num_threads(int(num_threads))
    if asynchronous and process:
        from backend.control.policy_process import ProcessPolicy

        policy = ProcessPolicy(info.path, cameras=tuple(model.config.cameras), config=model.config)
    else:
        policy = Policy(model.eval(), path=info.path)
    threshold = getattr(model.config, "uncertainty_threshold", None)
    source = PolicySource(
        policy,
        model=ModelInfo(id=info.id, name=info.name, version=info.version, threshold=threshold),
        asynchronous=asynchronous,
        help_k=int(help_k),
        ask_for_help=ask_for_help,
    )
    session.set_policy(source)
    return source


def load_policy(registry: ModelRegistry, session, *, process: bool = True, **options) -> ModelInfo:
    """install_policy for whichever session the web process holds; returns the loaded model's ModelInfo. A
    backend.runtime.RobotRuntime loads it inside the robot's process (from its own registry on the same database,
    with the same checks and errors); an in-process RobotSession here."""
    if hasattr(session, "install_policy"):
        return session.install_policy(**options)  # the runtime applies its own Settings.policy_process
    return install_policy(registry, session, process=process, **options).model


class _Config:
    """Attribute access over a registered model's config dict (cameras, state_dim, action_dim)."""

    def __init__(self, config: dict) -> None:
        self.cameras = tuple(config.get("cameras") or ())
        self.state_dim = int(config.get("state_dim", -1))
        self.action_dim = int(config.get("action_dim", -1))
