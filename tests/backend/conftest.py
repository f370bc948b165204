"""Backend test fixtures. Headless MuJoCo rendering must be chosen before mujoco is imported anywhere."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def state_robot():
    """A SimRobot without cameras: experts and physics checks run without rendering."""
    from backend.sim import SimConfig, SimRobot

    robot = SimRobot(SimConfig(cameras=()))
    yield robot
    robot.close()


@pytest.fixture(scope="session")
def camera_robot():
    """A SimRobot rendering both cameras at a small size."""
    from backend.sim import SimConfig, SimRobot

    robot = SimRobot(SimConfig(image_size=64))
    yield robot
    robot.close()
