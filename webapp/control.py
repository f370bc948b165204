"""The control-loop types the web layer speaks (the contract of backend.control), imported in one place."""

from backend.control import LeaseHeldError, NotControllerError, RobotSession, SubscriptionClosed, TeleopCommand

__all__ = ["LeaseHeldError", "NotControllerError", "RobotSession", "SubscriptionClosed", "TeleopCommand"]
