"""Teleop commands from the controlling browser, and the frames every viewer receives (the webapp contract)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# A command component may overshoot its range by this much (gamepad rounding) and is then clamped; beyond: error.
_RANGE_SLACK = 1e-6


@dataclass(frozen=True)
class TeleopCommand:
    """One message from the controlling browser, already parsed.

    Velocities are in the robot base frame (x away from the base, y to its left, z up), each in [-1, 1] and scaled
    by `speed` times the session's max linear speed (m/s) or max yaw rate (rad/s). A command stays in force for
    `command_timeout_s` (200 ms by default): a client sends it repeatedly (>= 10 Hz) while a key is held.
    """

    seq: int  # client's command sequence number (monotonic per client)
    vx: float
    vy: float
    vz: float
    yaw_rate: float  # [-1, 1]
    gripper: float  # target gripper 0 open .. 1 closed
    speed: float = 1.0  # speed scale in (0, 1]


@dataclass(frozen=True)
class Frame:
    """What every viewer receives, produced once per control tick."""

    tick: int  # loop tick counter
    time: float  # time.monotonic() when the cameras were rendered
    jpeg: dict[str, bytes]  # camera -> JPEG bytes (encoded once per tick, shared by all viewers)
    state: list[float]  # observation.state
    last_command_seq: int | None  # seq of the last TeleopCommand applied before this frame was rendered
    status: dict  # small JSON-able dict (RobotSession.status())
    overlay: dict | None = None  # the driving policy's maps, uncertainty and chunk (PolicySource.overlay), else None


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return v


def _in_range(value: Any, what: str, low: float, high: float) -> float:
    v = _number(value, what)
    if not low - _RANGE_SLACK <= v <= high + _RANGE_SLACK:
        raise ValueError(f"{what} must be in [{low:g}, {high:g}], got {v!r}")
    return min(max(v, low), high)


def validate_command(cmd: TeleopCommand) -> TeleopCommand:
    """Return `cmd` with every field checked (ValueError naming the field) and clamped onto its range."""
    if not isinstance(cmd, TeleopCommand):
        raise ValueError(f"expected a TeleopCommand, got {type(cmd).__name__}")
    if isinstance(cmd.seq, bool) or not isinstance(cmd.seq, int) or cmd.seq < 0:
        raise ValueError(f"seq must be an integer >= 0, got {cmd.seq!r}")
    speed = _number(cmd.speed, "speed")
    if not 0.0 < speed <= 1.0 + _RANGE_SLACK:
        raise ValueError(f"speed must be in (0, 1], got {speed!r}")
    return TeleopCommand(
        seq=int(cmd.seq),
        vx=_in_range(cmd.vx, "vx", -1.0, 1.0),
        vy=_in_range(cmd.vy, "vy", -1.0, 1.0),
        vz=_in_range(cmd.vz, "vz", -1.0, 1.0),
        yaw_rate=_in_range(cmd.yaw_rate, "yaw_rate", -1.0, 1.0),
        gripper=_in_range(cmd.gripper, "gripper", 0.0, 1.0),
        speed=min(speed, 1.0),
    )


def parse_command(message: Mapping[str, Any]) -> TeleopCommand:
    """A validated TeleopCommand from a decoded JSON object; ValueError names a missing, unknown or bad field.

    Required: seq, vx, vy, vz, yaw_rate, gripper; optional: speed (1.0). A "type" key is ignored.
    """
    if not isinstance(message, Mapping):
        raise ValueError(f"a command must be a JSON object, got {type(message).__name__}")
    fields = ("seq", "vx", "vy", "vz", "yaw_rate", "gripper", "speed")
    unknown = sorted(set(message) - set(fields) - {"type"})
    if unknown:
        raise ValueError(f"unknown command fields {unknown}; expected {list(fields)}")
    missing = [f for f in fields[:-1] if f not in message]
    if missing:
        raise ValueError(f"command is missing {missing}")
    return validate_command(TeleopCommand(**{f: message[f] for f in fields if f in message}))


class CommandMailbox:
    """The controller's latest command and when it arrived (latest wins; thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cmd: TeleopCommand | None = None
        self._t = 0.0
        self.received = 0

    def put(self, cmd: TeleopCommand, now: float | None = None) -> None:
        with self._lock:
            self._cmd, self._t = cmd, time.monotonic() if now is None else now
            self.received += 1

    def latest(self) -> tuple[TeleopCommand | None, float]:
        with self._lock:
            return self._cmd, self._t

    def clear(self) -> None:
        with self._lock:
            self._cmd = None
