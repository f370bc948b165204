"""The control loop: one fixed-rate thread per robot fed by one command source at a time (idle, browser teleop,
scripted expert; a policy later), a safety filter on every action, latest-frame-only fan-out to viewers, a control
lease and the episode recorder. The webapp talks to `RobotSession` only (contract: the teleop issue)."""

from backend.control.commands import CommandMailbox, Frame, TeleopCommand, parse_command, validate_command
from backend.control.hub import FrameHub, FrameSubscription, SubscriptionClosed
from backend.control.lease import DEFAULT_LEASE_TIMEOUT_S, ControlLease, LeaseHeldError, NotControllerError
from backend.control.safety import SafetyFilter, SafetyResult, robot_forward_kinematics
from backend.control.session import NoRecordingError, RecordingActiveError, RobotSession, encode_jpeg
from backend.control.sources import CommandSource, ExpertSource, IdleSource, TeleopSource

__all__ = [
    "DEFAULT_LEASE_TIMEOUT_S",
    "CommandMailbox",
    "CommandSource",
    "ControlLease",
    "ExpertSource",
    "Frame",
    "FrameHub",
    "FrameSubscription",
    "IdleSource",
    "LeaseHeldError",
    "NoRecordingError",
    "NotControllerError",
    "RecordingActiveError",
    "RobotSession",
    "SafetyFilter",
    "SafetyResult",
    "SubscriptionClosed",
    "TeleopCommand",
    "TeleopSource",
    "encode_jpeg",
    "parse_command",
    "robot_forward_kinematics",
    "validate_command",
]
