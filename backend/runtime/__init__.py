"""The robot runtime in a process of its own (Settings.robot_process): backend.runtime.client.RobotRuntime is what
the web process holds, backend.runtime.child the process it starts, backend.runtime.wire what crosses between."""

from backend.runtime.client import RobotRuntime
from backend.runtime.wire import RuntimeUnavailableError

__all__ = ["RobotRuntime", "RuntimeUnavailableError"]
