"""A small stand-in for backend.control.RobotSession with the same API (tests/dev only): no MuJoCo, deterministic.

It shares the contract's types and the real latest-frame-only FrameHub. The loop thread produces a Frame per
tick with tiny JPEGs; commands move a fake 7-D state; a command older than command_timeout_s or an engaged
e-stop holds it still. Recording keeps saved takes in a list (no files). `clock` (default time.monotonic) is the
session's time, as in the real one: a command's age is measured on it; the loop thread is paced on wall time.
"""

from __future__ import annotations

import io
import threading
import time

from PIL import Image

from backend.control import Frame, FrameHub, LeaseHeldError, NotControllerError, TeleopCommand


def _jpeg(colour: tuple[int, int, int], size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="JPEG", quality=70)
    return buf.getvalue()


TASKS = [
    {"name": "pick", "colours": ["red", "green", "blue"], "templates": ["pick up the {colour} cube"]},
    {"name": "place", "colours": ["red", "green", "blue"], "templates": ["put the {colour} cube in the bowl"]},
]


class FakeRobotSession:
    camera_names = ("front", "wrist")

    def __init__(self, robot=None, store=None, *, control_hz=30, command_timeout_s=0.2, clock=time.monotonic, **_):
        self._clock = clock
        self.control_hz = control_hz
        self.command_timeout_s = command_timeout_s
        self._hub = FrameHub()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._holder: tuple[str, str] | None = None  # (client_id, operator)
        self._cmd: TeleopCommand | None = None
        self._cmd_time = 0.0
        self._last_seq: int | None = None
        self._estop = False
        self._auto_stop = False
        self._recording: dict | None = None
        self.saved: list[dict] = []
        self.state = [0.0] * 7
        self.source = "idle"
        self.task, self.colour, self.instruction, self.seed = "pick", "red", "pick up the red cube", 0
        self.rejected = 0
        self.tick = 0
        self._images = {"front": _jpeg((200, 40, 40)), "wrist": _jpeg((40, 40, 200))}

    # -- loop --------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fake-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        period = 1.0 / self.control_hz
        next_t = time.monotonic()
        while not self._stop.is_set():
            self.step()
            next_t += period
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def step(self) -> Frame:
        with self._lock:
            cmd = self._cmd
            fresh = cmd is not None and self._clock() - self._cmd_time <= self.command_timeout_s
            if fresh and not self._estop and self._holder is not None:
                k = cmd.speed / self.control_hz
                for i, v in enumerate((cmd.vx, cmd.vy, cmd.vz, cmd.yaw_rate)):
                    self.state[i] += k * v
                self.state[6] = cmd.gripper
                self._last_seq = cmd.seq
            if self._recording is not None:
                self._recording["frames"] += 1
            self.tick += 1
            frame = Frame(
                self.tick, self._clock(), dict(self._images), list(self.state), self._last_seq, self._status_locked()
            )
        self._hub.publish(frame)
        return frame

    # -- viewers and lease -------------------------------------------------------------------------------------
    def subscribe(self):
        return self._hub.subscribe()

    def acquire_lease(self, client_id: str, operator: str) -> None:
        with self._lock:
            if self._holder is not None and self._holder[0] != client_id:
                raise LeaseHeldError(self._holder[1], 30.0)
            self._holder = (client_id, operator)

    def release_lease(self, client_id: str) -> None:
        with self._lock:
            if self._holder is not None and self._holder[0] == client_id:
                self._holder = None
                self._cmd = None

    def break_lease(self) -> str | None:
        with self._lock:
            holder, self._holder, self._cmd = self._holder, None, None
            return holder[1] if holder else None

    def command(self, client_id: str, cmd: TeleopCommand) -> None:
        with self._lock:
            if self._holder is None or self._holder[0] != client_id:
                raise NotControllerError("not the controller")
            self._cmd, self._cmd_time = cmd, self._clock()

    def set_estop(self, engaged: bool) -> None:
        with self._lock:
            self._estop = bool(engaged)

    def reset(self, *, seed=None, task=None, colour=None, instruction=None) -> dict:
        with self._lock:
            if task is not None and task not in {t["name"] for t in TASKS}:
                raise ValueError(f"unknown task {task!r}")
            self.task = task or self.task
            self.colour = colour or self.colour
            self.instruction = instruction or f"{self.task} the {self.colour} cube"
            self.seed = seed if seed is not None else self.seed + 1
            self.state = [0.0] * 7
            return self._status_locked()

    def set_source(self, name: str) -> None:
        if name not in ("idle", "teleop", "expert") and not (name == "policy" and self.policy is not None):
            raise ValueError(f"unknown source {name!r}")
        self.source = name

    # The policy: the real session's API (backend.control.RobotSession); no inference here.
    policy = None
    overlays = True
    JOINTS = [f"j{i}" for i in range(7)]
    robot = type("FakeArm", (), {"state_names": JOINTS, "action_names": JOINTS})

    def set_policy(self, source) -> None:
        if source is None and self.source == "policy":
            self.source = "idle"
        self.policy = source

    def take_over(self, by: str = "teleop") -> None:
        if self.source != "policy":
            raise ValueError("the policy is not driving")
        self.source = by

    def hand_back(self) -> None:
        if self.policy is None:
            raise ValueError("no policy is loaded")
        self.source = "policy"

    def continue_policy(self) -> None:
        if self.policy is None or not self.policy.help.asking:
            raise ValueError("the policy is not asking for help")
        self.policy.resume()

    def set_overlays(self, enabled: bool) -> None:
        self.overlays = bool(enabled)

    def start_recording(self, operator: str, dataset: str) -> None:
        with self._lock:
            if self._recording is not None:
                raise RuntimeError("already recording")
            self._recording = {"operator": operator, "dataset": dataset, "t0": self._clock(), "frames": 0}

    def save_recording(self, success: bool) -> int:
        with self._lock:
            if self._recording is None:
                raise RuntimeError("not recording")
            self.saved.append({**self._recording, "success": success})
            self._recording = None
            return len(self.saved)

    def discard_recording(self) -> None:
        with self._lock:
            self._recording = None  # no-op without a take, as the real session

    def set_auto_stop(self, enabled: bool) -> None:
        self._auto_stop = bool(enabled)

    def status(self) -> dict:
        with self._lock:
            return self._status_locked()

    def _status_locked(self) -> dict:
        rec = self._recording
        return {
            "source": self.source,
            "task": self.task,
            "colour": self.colour,
            "instruction": self.instruction,
            "seed": self.seed,
            "success": False,
            "recording": {
                "active": rec is not None,
                "elapsed_s": self._clock() - rec["t0"] if rec else 0.0,
                "frames": rec["frames"] if rec else 0,
                "auto_stop": self._auto_stop,
                "episodes_saved": len(self.saved),
            },
            "estop": self._estop,
            "controller": self._holder[1] if self._holder else None,
            "counters": {"rejected": self.rejected, "dropped_ticks": 0},
        }

    def tasks(self) -> list[dict]:
        return [dict(t) for t in TASKS]
