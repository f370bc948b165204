"""MuJoCo table-top simulation: a 6-DoF arm with a parallel gripper, three cubes and a bowl.

Usage (a scripted demo):

robot = SimRobot(SimConfig(image_size=128))
task = make_task("place", colour="blue")
obs = robot.reset(seed=0, task=task)
expert = make_expert(task); expert.reset(robot)
while not robot.success():
    robot.apply(expert.act(robot))
"""

from backend.sim.expert import ScriptedExpert, TargetNoise, make_expert
from backend.sim.gym_env import ENV_ID, TableTopEnv
from backend.sim.sim_robot import CAMERAS, SimConfig, SimRobot
from backend.sim.tasks import COLOURS, Task, UnknownTaskError, list_tasks, make_task, register_task

__all__ = [
    "CAMERAS",
    "COLOURS",
    "ENV_ID",
    "ScriptedExpert",
    "SimConfig",
    "SimRobot",
    "TableTopEnv",
    "TargetNoise",
    "Task",
    "UnknownTaskError",
    "list_tasks",
    "make_expert",
    "make_task",
    "register_task",
]
