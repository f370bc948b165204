"""RobotRuntime: the RobotSession API the web process uses, with the session itself in a process of its own.

    runtime = RobotRuntime(settings)         # spawns backend.runtime.child, waits until the robot is up
    app = create_app(settings, session=runtime, store=store)   # the lifespan calls start() and stop()

Why a process: in the web server's process the control loop shares one interpreter lock with request parsing,
Gradio and database work; a 17 MB request body stopped the camera stream for ~10 s and request load dragged the
loop from 30 to ~11 ticks/s (bench/bench_runtime_isolation.py measures both ways side by side). Here the loop, the
deadman and the policy run in the child; the web process only forwards calls and re-publishes frames into a local
FrameHub, so `subscribe()` and everything in webapp/ws.py works unchanged.

Errors raised in the child come back as their own class (LeaseHeldError, ValueError...), so the routes' status
codes are the same as in-process. A child that dies (a crash, SIGKILL) is noticed when its pipe closes: calls in
flight and new ones raise RuntimeUnavailableError (503) while a new child starts; the arm held still the moment the
old one died (a real robot's own controller must do the same when its commands stop).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import multiprocessing as mp
import pickle
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from backend.control.hub import FrameHub, FrameSubscription
from backend.runtime import child
from backend.runtime.wire import FrameRing, RuntimeUnavailableError, decode_error

log = logging.getLogger("backend.runtime")

DEFAULT_CALL_TIMEOUT_S = 10.0
# The socket's calls run on the web server's event loop: a runtime that cannot answer them in 2 s is reported
# (503 / an error message) rather than holding up every other socket for longer.
CALL_TIMEOUTS_S = {"install_policy": 300.0, "save_recording": 120.0, "start_recording": 30.0, "reset": 30.0,
                   "command": 2.0, "heartbeat": 2.0, "acquire_lease": 2.0, "release_lease": 2.0}  # fmt: skip
MAX_RESTART_DELAY_S = 30.0


class _Child:
    """One incarnation of the runtime process and its two pipes."""

    def __init__(self, settings, robot_factory, ring: FrameRing, on_frame, on_rollout, on_exit) -> None:
        ctx = mp.get_context("spawn")  # a fresh interpreter: no copy of the web server's threads or locks
        self.rpc, child_rpc = ctx.Pipe(duplex=True)
        events, child_events = ctx.Pipe(duplex=False)
        self.process = ctx.Process(
            target=child.main, args=(settings, child_rpc, child_events, str(ring.path), robot_factory),
            name="robot-runtime", daemon=False,  # it starts the policy's own process: a daemon may not
        )  # fmt: skip
        self.process.start()
        child_rpc.close()  # only the child holds these ends now: its death closes the pipes here
        child_events.close()
        self._events, self._ring = events, ring
        self._on_frame, self._on_rollout, self._on_exit = on_frame, on_rollout, on_exit
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self._send_lock = threading.Lock()
        self.alive = True
        threading.Thread(target=self._read_answers, name="runtime-answers", daemon=True).start()
        threading.Thread(target=self._read_events, name="runtime-events", daemon=True).start()

    def call(self, method: str, args: tuple, kwargs: dict, timeout: float):
        if not self.alive:
            raise RuntimeUnavailableError("the robot runtime is restarting; try again in a few seconds")
        call_id = next(self._ids)
        future: Future = Future()
        self._pending[call_id] = future
        try:
            with self._send_lock:
                self.rpc.send((call_id, method, args, kwargs))
            ok, payload = future.result(timeout)
        except FutureTimeout:
            raise RuntimeUnavailableError(f"the robot runtime did not answer {method} within {timeout:.0f} s") from None
        except (OSError, ValueError, EOFError):
            raise RuntimeUnavailableError("the robot runtime is gone; a new one is starting") from None
        finally:
            self._pending.pop(call_id, None)
        if ok:
            return payload
        raise decode_error(*payload)

    def _read_answers(self) -> None:
        while True:
            try:
                call_id, ok, payload = self.rpc.recv()
            except (EOFError, OSError):
                break
            future = self._pending.get(call_id)
            if future is not None and not future.done():
                future.set_result((ok, payload))
        self.alive = False
        for future in list(self._pending.values()):
            if not future.done():
                future.set_exception(RuntimeUnavailableError("the robot runtime exited during the call"))

    def _read_events(self) -> None:
        while True:
            try:
                message = self._events.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            if kind == "frame":
                data = self._ring.read(message[1], message[2])
                if data is not None:
                    self._on_frame(pickle.loads(data))
            elif kind == "frame_bytes":
                self._on_frame(pickle.loads(message[2]))
            elif kind == "rollout":
                self._on_rollout(message[1])
        self.alive = False
        self._on_exit(self)

    def close(self) -> None:
        for conn in (self.rpc, self._events):
            try:
                conn.close()
            except OSError:
                pass


class RobotRuntime:
    """The web process's handle on the robot runtime process; same calls as backend.control.RobotSession."""

    def __init__(self, settings, *, robot_factory=child.sim_robot, start_timeout_s: float = 120.0) -> None:
        self.settings, self._robot_factory, self._start_timeout_s = settings, robot_factory, start_timeout_s
        self.hub = FrameHub()
        self._ring = FrameRing.create()
        self._sink = None
        self._lock = threading.Lock()
        self._stopping = False
        self._loop_started = False
        self.restarts = 0
        self.last_exit: str | None = None
        self._child: _Child | None = None
        self._spawn()
        atexit.register(self._close_at_exit)  # before multiprocessing's own exit hook joins the child

    # ------------------------------------------------------------------ the process
    def _spawn(self) -> None:
        new = _Child(self.settings, self._robot_factory, self._ring, self._publish, self._rollout, self._exited)
        try:
            hello = new.call("hello", (), {}, self._start_timeout_s)
        except Exception:
            new.close()
            new.process.kill()
            raise
        self.pid, self.camera_names = hello["pid"], tuple(hello["camera_names"])
        self._child = new
        log.info("robot runtime up (pid %d)", self.pid)

    def _exited(self, old: _Child) -> None:
        """The child's pipe closed: restart it unless we are stopping (on a thread of its own, with back-off)."""
        old.process.join(timeout=5.0)
        code = old.process.exitcode
        old.close()
        if self._stopping or old is not self._child:
            return
        self.last_exit = f"the robot runtime exited with code {code}"
        log.error("%s; starting a new one", self.last_exit)
        threading.Thread(target=self._restart, name="runtime-restart", daemon=True).start()

    def _restart(self) -> None:
        delay = 0.5
        while True:
            try:
                with self._lock:  # stop() waits for a start in progress, so no child outlives it
                    if self._stopping:
                        return
                    self._spawn()
                    self.restarts += 1
                    if self._loop_started:
                        self._call("start")
                return
            except Exception:
                log.exception("the robot runtime did not come back; retrying in %.0f s", delay)
                time.sleep(delay)
                delay = min(delay * 2, MAX_RESTART_DELAY_S)

    def _publish(self, frame) -> None:
        self.hub.publish(frame)

    def _rollout(self, record: dict) -> None:
        sink = self._sink
        if sink is None:
            return
        try:
            sink(record)
        except Exception:  # the runtime cannot hear about it; say it here
            log.exception("logging the rollout failed")

    def _call(self, method: str, *args, **kwargs):
        current = self._child
        if current is None:
            raise RuntimeUnavailableError("the robot runtime is not running")
        return current.call(method, args, kwargs, CALL_TIMEOUTS_S.get(method, DEFAULT_CALL_TIMEOUT_S))

    # ------------------------------------------------------------------ lifecycle (the app's lifespan)
    def start(self) -> None:
        self._loop_started = True
        self._call("start")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop (a live rollout is logged, an unsaved take discarded) and the process."""
        self._stopping = True
        with self._lock:
            current, self._child = self._child, None
        if current is not None:
            try:
                current.call("stop", (), {}, timeout)
            except Exception as exc:
                log.warning("the robot runtime did not stop cleanly (%s); killing it", exc)
            current.process.join(timeout)
            if current.process.is_alive():
                current.process.kill()
                current.process.join(5.0)
            current.close()
        self._ring.close(unlink=True)

    def _close_at_exit(self) -> None:
        if not self._stopping:
            self.stop(timeout=5.0)

    @property
    def running(self) -> bool:
        return self._loop_started and self._child is not None and self._child.alive

    # ------------------------------------------------------------------ what the web process calls
    def subscribe(self) -> FrameSubscription:
        return self.hub.subscribe()

    def set_rollout_sink(self, sink) -> None:
        self._sink = sink

    def install_policy(self, **options):
        """Load a registered model as the robot's policy, inside the runtime (its registry, same database); returns
        the model's backend.control.policy_source.ModelInfo. Same options and errors as
        backend.services.live_policy.install_policy."""
        return self._call("install_policy", **options)

    def set_policy(self, source) -> None:
        if source is not None:
            raise TypeError("a policy source cannot cross into the robot runtime; load a model with install_policy")
        self._call("unload_policy")

    def status(self) -> dict:
        status = self._call("status")
        status["counters"]["subscribers"] = self.hub.subscribers
        status["runtime"] = {"process": True, "pid": self.pid, "restarts": self.restarts, "last_exit": self.last_exit,
                             "frames_torn": self._ring.torn}  # fmt: skip
        return status

    def __getattr__(self, name: str):
        if name in child.SESSION_METHODS:
            return lambda *args, **kwargs: self._call(name, *args, **kwargs)
        raise AttributeError(name)
