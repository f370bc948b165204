"""The robot runtime process: the robot, its RobotSession (loop, safety filter, lease, deadman, recorder) and the
policy, away from the web server's interpreter lock.

Started by backend.runtime.client.RobotRuntime with multiprocessing's spawn method; `main` is its body. It opens
its own engine on the same database (recordings and their rows are written here), its own model registry (a
policy is loaded here, by id), and serves three things to the web process:

* calls: (id, method, args, kwargs) on `rpc`, each run on a small thread pool so that a slow one (loading a model,
  saving a take) never holds up a teleop command; answered (id, True, result) or (id, False, encoded error);
* frames: every published Frame pickled into the shared-memory FrameRing, announced on `events` as
  ("frame", seq, slot, size) (or ("frame_bytes", seq, data) when one does not fit a slot);
* ended live rollouts: ("rollout", record) on `events`, stored and checked by the web process's rollout sink.

The loop never waits on the web process: frames go through a latest-only hand-off to a publisher thread, and a
web process that stops reading only stalls that thread. When the web process goes away (its end of `rpc` closes)
the runtime stops the loop (the arm holds), discards an unsaved take and exits.
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger("backend.runtime")

# The session's API as the web process uses it (webapp/routers/robot.py, policy.py, ws.py); nothing else is callable.
SESSION_METHODS = (
    "acquire_lease", "release_lease", "break_lease", "heartbeat", "command", "set_estop", "reset", "set_source",
    "start_recording", "save_recording", "discard_recording", "restart_recording", "set_auto_stop", "status",
    "tasks", "take_over", "hand_back", "continue_policy", "set_overlays",
)  # fmt: skip
CALL_THREADS = 4


def sim_robot(settings):
    """The embedded default robot: the MuJoCo arm at the dashboard's camera size and loop rate."""
    from backend.sim import SimConfig, SimRobot

    return SimRobot(SimConfig(image_size=settings.image_size, control_hz=settings.control_hz))


def main(settings, rpc, events, ring_path: str, robot_factory) -> None:
    os.environ.setdefault("MUJOCO_GL", settings.mujoco_gl)  # before anything imports mujoco
    logging.basicConfig(level=logging.INFO, format="%(asctime)s runtime %(levelname)s %(name)s: %(message)s")
    from backend.control import RobotSession
    from backend.runtime.wire import FrameRing, encode_error
    from backend.services.models import ModelRegistry
    from storage.db import make_engine, make_session_factory
    from storage.episode_store import EpisodeStore

    store = EpisodeStore(settings.data_dir, make_session_factory(make_engine(settings.database_url)))
    report = store.recover()  # a take a crashed runtime left behind (the web process recovered at its start)
    if report.changed:
        log.warning("store: %s", report)
    robot = robot_factory(settings)
    session = RobotSession(robot, store, control_hz=settings.control_hz)
    registry = ModelRegistry(store.session_factory, settings.models_dir)
    ring = FrameRing(Path(ring_path), create=False)
    send_lock = threading.Lock()

    def notify(message) -> None:
        with send_lock:
            events.send(message)

    session.set_rollout_sink(lambda record: notify(("rollout", record)))
    publisher = _FramePublisher(ring, notify)
    session.hub.add_tap(publisher.offer)

    def install_policy(**options):
        from backend.services.live_policy import install_policy as install

        return install(registry, session, process=settings.policy_process, **options).model

    calls = {name: getattr(session, name) for name in SESSION_METHODS}
    calls["install_policy"] = install_policy
    calls["unload_policy"] = lambda: session.set_policy(None)
    calls["start"] = session.start
    calls["hello"] = lambda: {"pid": os.getpid(), "camera_names": list(session.camera_names)}

    pool = ThreadPoolExecutor(CALL_THREADS, thread_name_prefix="runtime-call")
    rpc_lock = threading.Lock()

    def answer(call_id: int, ok: bool, payload) -> None:
        with rpc_lock:
            rpc.send((call_id, ok, payload))

    def run_call(call_id: int, method: str, args: tuple, kwargs: dict) -> None:
        try:
            result = calls[method](*args, **kwargs)
        except BaseException as exc:  # every error goes back to the caller, as its own class
            answer(call_id, False, encode_error(exc))
        else:
            answer(call_id, True, result)

    stop_id = None
    try:
        while True:
            try:
                call_id, method, args, kwargs = rpc.recv()
            except (EOFError, OSError):
                log.warning("the web process went away; stopping the robot")
                break
            if method == "stop":
                stop_id = call_id
                break
            if method not in calls:
                answer(call_id, False, encode_error(ValueError(f"the robot runtime has no call {method!r}")))
                continue
            pool.submit(run_call, call_id, method, args, kwargs)
    finally:
        session.stop()  # ends a live rollout (its record goes to the web process) and discards an unsaved take
        pool.shutdown(wait=True, cancel_futures=True)
        publisher.close()
        robot.close()
        ring.close()
        if stop_id is not None:
            answer(stop_id, True, None)


class _FramePublisher:
    """Takes each Frame from the loop thread (latest only, never blocking it) and writes it to the ring."""

    def __init__(self, ring, notify) -> None:
        self._ring, self._notify = ring, notify
        self._latest = None
        self._cond = threading.Condition()
        self._closed = False
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="runtime-frames", daemon=True)
        self._thread.start()

    def offer(self, frame) -> None:  # the loop thread: a reference swap and a notify
        with self._cond:
            self._latest = frame
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._latest is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                frame, self._latest = self._latest, None
            self._seq += 1
            data = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
            try:
                slot = self._ring.write(self._seq, data)
                if slot is None:  # bigger than a slot: down the pipe instead
                    self._notify(("frame_bytes", self._seq, data))
                else:
                    self._notify(("frame", self._seq, slot, len(data)))
            except (OSError, ValueError):  # the web process is gone: the main loop is stopping
                return

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=2.0)
