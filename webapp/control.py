"""The control-loop types the web layer speaks (the contract of backend.control), imported in one place. The
session is a backend.control.RobotSession, or a backend.runtime.RobotRuntime with the same calls when the robot
runs in a process of its own; RuntimeUnavailableError is what the latter raises while that process restarts."""

from backend.control import LeaseHeldError, NotControllerError, RobotSession, SubscriptionClosed, TeleopCommand
from backend.runtime import RuntimeUnavailableError

__all__ = [
    "LeaseHeldError",
    "NotControllerError",
    "RobotSession",
    "RuntimeUnavailableError",
    "SubscriptionClosed",
    "TeleopCommand",
]
