"""RobotSession on the real SimRobot (64 px): teleop, hold on silence, lease, e-stop, safety, viewers, recording,
resets and the scripted expert through the loop. Threaded tests run the real 30 Hz loop; deterministic ones drive
ticks with `session.step()`. Every session here runs on a fake clock (the `clock` fixture): a command stays fresh
and a lease held until a test moves it, so a loaded machine cannot change an outcome. Rates and stop times are
measured in bench/bench_control.py, not asserted here."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import numpy as np
import pytest

from backend.control import (
    LeaseHeldError,
    NoRecordingError,
    NotControllerError,
    RecordingActiveError,
    RobotSession,
    TeleopCommand,
)
from storage.episode_store import EpisodeRecorder

DT = 1 / 30  # one control period at the default 30 Hz


@pytest.fixture(scope="module")
def robot():
    from backend.sim import SimConfig, SimRobot

    r = SimRobot(SimConfig(image_size=64))
    yield r
    r.close()


@pytest.fixture
def session(robot, store, clock):
    s = RobotSession(robot, store, clock=clock)
    yield s
    s.stop()


def cmd(seq: int, vx=0.0, vy=0.0, vz=0.0, yaw_rate=0.0, gripper=0.0, speed=1.0) -> TeleopCommand:
    return TeleopCommand(seq=seq, vx=vx, vy=vy, vz=vz, yaw_rate=yaw_rate, gripper=gripper, speed=speed)


def ee(robot) -> np.ndarray:
    return robot.ee_target().position.copy()


def wait_for(pred, timeout: float = 5.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def drive(session, clock, client: str, ticks: int, **v) -> int:
    """A browser holding keys: one command per tick for `ticks` ticks of the stopped session, the clock moving one
    period each; returns the last seq."""
    seq = getattr(session, "_test_seq", 0)
    for _ in range(ticks):
        seq += 1
        session.command(client, cmd(seq, **v))
        session.step()
        clock.advance(DT)
    session._test_seq = seq
    return seq


# ---------------------------------------------------------------- teleop
@pytest.mark.parametrize(("axis", "sign"), [(0, 1.0), (1, -1.0), (2, 1.0)])
def test_teleop_moves_the_end_effector_in_the_commanded_direction(session, robot, clock, axis, sign):
    session.acquire_lease("c1", "alice")
    p0 = ee(robot)
    v = dict(zip(("vx", "vy", "vz"), np.eye(3)[axis] * sign, strict=True))
    drive(session, clock, "c1", 15, **v)  # 0.5 s of keys
    d = ee(robot) - p0
    assert sign * d[axis] > 0.05, d  # ~0.25 m/s for 0.5 s
    others = np.delete(d, axis)
    assert np.all(np.abs(others) < 0.3 * abs(d[axis])), d
    st = session.status()
    assert st["source"] == "teleop" and st["controller"] == "alice"
    assert st["teleop"]["last_command_seq"] == session._test_seq


def test_silence_over_200ms_holds_the_arm_still(session, robot, clock):
    session.acquire_lease("c1", "alice")
    p0 = ee(robot)
    seq = drive(session, clock, "c1", 12, vx=1.0, vz=0.5)  # 0.4 s of keys
    session.command("c1", cmd(seq + 1, vx=1.0, vz=0.5))  # the last command
    assert np.linalg.norm(ee(robot) - p0) > 0.04  # it was moving fast
    clock.advance(0.19)
    session.step()
    assert session.status()["teleop"]["live"] is True  # 190 ms old: still applied
    clock.advance(0.02)  # 210 ms > command_timeout_s (0.2 s): the last command no longer applies
    session.step()
    for _ in range(3):  # ~0.1 s for the arm to come to rest
        session.step()
    ref = ee(robot)
    samples = []
    for _ in range(15):  # 0.5 s
        session.step()
        samples.append(np.linalg.norm(ee(robot) - ref))
    assert max(samples) < 0.003, samples
    st = session.status()
    assert st["teleop"]["live"] is False and st["counters"]["command_timeouts"] >= 1


def test_releasing_the_lease_holds_at_once(session, robot):
    session.acquire_lease("c1", "alice")
    for i in range(1, 6):  # the session's clock stands still: each command is still fresh afterwards
        session.command("c1", cmd(i, vx=1.0))
        session.step()
    session.step()
    moving = ee(robot)
    session.step()
    assert np.linalg.norm(ee(robot) - moving) > 0.003  # the command is fresh: still moving
    session.release_lease("c1")
    for _ in range(3):
        session.step()
    ref = ee(robot)
    for _ in range(10):
        session.step()
    assert np.linalg.norm(ee(robot) - ref) < 0.002
    assert session.status()["controller"] is None
    with pytest.raises(NotControllerError):
        session.command("c1", cmd(99, vx=1.0))


def test_second_client_cannot_take_the_lease_until_released(session):
    session.acquire_lease("c1", "alice")
    with pytest.raises(LeaseHeldError, match="alice"):
        session.acquire_lease("c2", "bob")
    with pytest.raises(NotControllerError):
        session.command("c2", cmd(1, vx=1.0))
    session.release_lease("c2")  # not the holder: no effect
    assert session.status()["controller"] == "alice"
    session.release_lease("c1")
    session.acquire_lease("c2", "bob")
    assert session.status()["controller"] == "bob"
    session.command("c2", cmd(1, vx=0.5))


def test_a_silent_controller_loses_the_lease(robot, store, clock):
    s = RobotSession(robot, store, lease_timeout_s=0.2, clock=clock)
    s.acquire_lease("c1", "alice")
    clock.advance(0.19)
    s.step()
    assert s.status()["controller"] == "alice"  # 190 ms of silence: still held
    clock.advance(0.02)
    s.step()  # the loop notices
    assert s.status()["controller"] is None and s.status()["counters"]["lease_expiries"] == 1
    s.acquire_lease("c2", "bob")


def test_bad_command_values_raise_and_move_nothing(session, robot):
    session.acquire_lease("c1", "alice")
    with pytest.raises(ValueError, match="vx"):
        session.command("c1", cmd(1, vx=math.nan))
    with pytest.raises(ValueError, match="speed"):
        session.command("c1", cmd(2, vx=1.0, speed=3.0))
    p0 = ee(robot)
    for _ in range(5):
        session.step()
    assert np.linalg.norm(ee(robot) - p0) < 1e-3


# ---------------------------------------------------------------- e-stop
def test_estop_freezes_the_arm_despite_commands_and_the_expert(session, robot):
    session.set_source("expert")
    for _ in range(10):
        session.step()
    session.set_estop(True)
    session.acquire_lease("c1", "alice")
    for i in range(3):
        session.command("c1", cmd(i + 1, vx=1.0, vz=-1.0))
        session.step()
    ref, q_ref = ee(robot), robot.state().copy()
    for i in range(25):
        session.command("c1", cmd(i + 10, vx=1.0, vz=-1.0))
        session.step()
    assert np.linalg.norm(ee(robot) - ref) < 0.002
    assert np.max(np.abs(robot.state()[:6] - q_ref[:6])) < 0.01
    st = session.status()
    assert st["estop"] is True and st["source"] == "expert"
    session.set_estop(False)
    for _ in range(20):
        session.step()
    assert np.linalg.norm(ee(robot) - ref) > 0.01  # the expert resumed (re-planned from here)


# ---------------------------------------------------------------- safety in the loop
class _BadSource:
    name = "bad"
    record_as = "teleop"

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def activate(self, robot, task, instruction="") -> None:
        pass

    def deactivate(self) -> None:
        pass

    def act(self, robot, now, obs=None):
        if self.mode == "raise":
            raise RuntimeError("policy exploded")
        a = np.append(robot.state()[:6], 0.0)
        if self.mode == "nan":
            a[2] = np.nan
        elif self.mode == "jump":
            a[0] += 1.0  # 30x the per-tick limit
        return a


@pytest.mark.parametrize(("mode", "counter"), [("nan", "nonfinite"), ("jump", "velocity"), ("raise", None)])
def test_every_source_passes_the_safety_filter(session, robot, mode, counter):
    session.add_source(_BadSource(mode))
    session.set_source("bad")
    q0 = robot.state().copy()
    for _ in range(5):
        session.step()
    q = robot.state()
    assert np.all(np.isfinite(q))
    st = session.status()
    if counter is None:
        assert st["counters"]["tick_errors"] == 5 and "policy exploded" in st["last_error"]
        assert np.max(np.abs(q[:6] - q0[:6])) < 0.01
    else:
        assert st["counters"]["safety"][counter] == 5 and st["counters"]["rejected"] == 5
    if mode == "jump":  # limited to 2 rad/s: 5 ticks move joint 0 by at most ~0.33 rad
        assert 0.05 < q[0] - q0[0] < 5 * 2.0 / 30 + 0.02
    if mode == "nan":
        assert np.max(np.abs(q[:6] - q0[:6])) < 0.01


def test_the_loop_survives_a_failing_tick_and_stops_cleanly(session, robot, monkeypatch):
    session.start()
    wait_for(lambda: session.status()["tick"] > 5, what="ticks")
    real = robot.observe
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] <= 3:
            raise RuntimeError("renderer hiccup")
        return real(*a, **k)

    monkeypatch.setattr(robot, "observe", flaky)
    t0 = session.status()["tick"]
    wait_for(lambda: session.status()["tick"] > t0 + 10, what="ticks after errors")
    assert session.status()["counters"]["tick_errors"] == 3
    session.stop()  # joins the thread (how long that takes: bench/bench_control.py, stop_s)
    assert not session.running


# ---------------------------------------------------------------- viewers
def test_slow_viewer_drops_frames_fast_viewer_keeps_up_and_a_stalled_event_loop_stalls_no_tick(session):
    """Ticks from a worker thread (as the loop thread runs them) against viewers on an asyncio loop: the fast viewer
    takes every frame, the slow one only ever the newest, and ticks run while the viewers' event loop is blocked.
    The loop *rate* with slow viewers and a stalled event loop is measured in bench/bench_control.py."""

    def tick_in_a_thread(n: int) -> None:
        worker = threading.Thread(target=lambda: [session.step() for _ in range(n)])
        worker.start()
        worker.join(timeout=30)  # blocks this event loop: nothing reads a frame meanwhile
        assert not worker.is_alive(), "a tick waited on a viewer"

    async def main():
        fast, slow = session.subscribe(), session.subscribe()  # each starts holding the reset's frame
        tick_in_a_thread(10)  # the event loop is stalled for all 10 ticks
        newest = session.status()["tick"]
        assert (await fast.next(timeout=1)).tick == newest  # a stalled viewer gets the newest frame, not a backlog
        for _ in range(20):
            await asyncio.to_thread(session.step)
            assert (await fast.next(timeout=1)).tick == session.status()["tick"]  # the fast viewer misses nothing
        latest = await slow.next(timeout=1)  # the slow viewer wakes once, after 30 ticks
        fast.close()
        slow.close()
        return fast, slow, latest

    fast, slow, latest = asyncio.run(main())
    assert latest.tick == session.status()["tick"]
    assert (fast.received, fast.skipped) == (21, 10)  # the 10 stalled ticks replaced one slot (reset frame + 9)
    assert (slow.received, slow.skipped) == (1, 30)
    assert session.status()["counters"]["subscribers"] == 0


def test_frames_carry_jpegs_state_and_the_last_applied_command(session):
    session.acquire_lease("c1", "alice")
    session.command("c1", cmd(41, vx=0.2))
    f = session.step()
    assert set(f.jpeg) == set(session.camera_names) == {"front", "wrist"}
    assert all(j[:2] == b"\xff\xd8" for j in f.jpeg.values())
    assert len(f.state) == 7 and f.last_command_seq == 41 and f.status["tick"] == f.tick


# ---------------------------------------------------------------- recording
def test_record_teleop_take_and_save(session, store):
    session.acquire_lease("c1", "alice")
    session.start_recording("alice", "teleop_ds")
    with pytest.raises(RecordingActiveError):
        session.start_recording("alice", "teleop_ds")
    n = 24
    for i in range(n):
        session.command("c1", cmd(i + 1, vx=0.5, gripper=0.3))
        session.step()
    rec = session.status()["recording"]
    assert rec["active"] and rec["frames"] == n and rec["operator"] == "alice"
    eid = session.save_recording(True)
    info = store.get_episode(eid)
    assert (info.source, info.operator, info.length, info.human_success) == ("teleop", "alice", n, True)
    assert info.auto_success is False and info.task == "pick" and info.extra["stopped_by"] == "operator"
    actions = np.stack(store.read_table(eid).column("action").to_numpy(zero_copy_only=False))
    assert actions.shape == (n, 7) and actions[-1, 6] > 0  # the gripper command was recorded
    st = session.status()["recording"]
    assert st["active"] is False and st["episodes_saved"] == 1 and st["last_episode_id"] == eid
    with pytest.raises(NoRecordingError):
        session.save_recording(True)


def test_discard_leaves_nothing(session, store):
    session.start_recording("alice", "teleop_ds")
    for _ in range(10):
        session.step()
    session.discard_recording()
    assert store.list_episodes() == []
    assert not any(store.tmp_dir.iterdir()) if store.tmp_dir.exists() else True
    assert not (store.episodes_dir / "teleop_ds").exists() or not any((store.episodes_dir / "teleop_ds").iterdir())
    session.start_recording("alice", "teleop_ds")  # re-record
    session.step()
    session.restart_recording()
    session.step()
    session.step()
    assert session.status()["recording"]["frames"] == 2
    session.reset(seed=5)  # a reset discards the take
    assert session.status()["recording"]["active"] is False and store.list_episodes() == []
    assert not any(store.tmp_dir.iterdir())


def test_store_errors_are_reported_and_the_loop_keeps_running(session, store, monkeypatch):
    session.start()
    session.start_recording("alice", "teleop_ds")
    wait_for(lambda: session.status()["recording"]["frames"] > 3, what="frames")

    def broken_save(self, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(EpisodeRecorder, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        session.save_recording(True)
    st = session.status()
    assert "disk full" in st["last_error"] and st["recording"]["active"] is False
    t0 = st["tick"]
    wait_for(lambda: session.status()["tick"] > t0 + 5, what="ticks after a failed save")
    assert not any(store.tmp_dir.iterdir())  # the failed take was discarded

    def broken_add(self, **kw):
        raise OSError("encoder died")

    monkeypatch.setattr(EpisodeRecorder, "add_frame", broken_add)
    session.start_recording("alice", "teleop_ds")
    wait_for(lambda: not session.status()["recording"]["active"], what="the failing take to stop")
    st = session.status()
    assert "encoder died" in st["last_error"] and st["counters"]["record_errors"] == 1
    t0 = st["tick"]
    wait_for(lambda: session.status()["tick"] > t0 + 5, what="ticks after a failed add_frame")
    assert session.running and store.list_episodes() == []


def test_demos_and_the_console_describe_their_episodes_alike(session, store):
    """Both build their metadata with backend.control.recording.episode_meta_from_robot: same task, seeded
    instruction, source, rate, cameras, names and colour for the same scene."""
    from backend.services.demos import record_demos
    from backend.sim import SimConfig

    (demo,) = record_demos(store=store, dataset="demos", task_name="pick", colour="green", episodes=1, seed=4,
                           sim_config=SimConfig(image_size=64, max_episode_steps=5))  # fmt: skip
    session.reset(seed=4, task="pick", colour="green")
    session.set_source("expert")
    session.start_recording("scripted-expert", "console")
    for _ in range(5):
        session.step()
    a, b = store.get_episode(demo.episode_id), store.get_episode(session.save_recording(True))
    fields = ("task", "instruction", "source", "fps", "cameras", "state_names", "action_names", "operator", "seed")
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
    assert (a.source, a.seed, a.extra["colour"]) == ("scripted", 4, "green")
    assert b.extra.items() >= a.extra.items() and b.extra["recorded_with"] == "robot_session"


def test_bad_recording_requests(session):
    with pytest.raises(ValueError, match="dataset"):
        session.start_recording("alice", "bad/name")
    with pytest.raises(ValueError, match="operator"):
        session.start_recording("  ", "ok")
    assert session.status()["recording"]["active"] is False


# ---------------------------------------------------------------- resets and tasks
def test_reset_seeds_the_scene_and_rejects_bad_tasks(session, robot):
    session.start()
    st = session.reset(seed=3, task="place", colour="blue")
    assert (st["task"], st["colour"], st["seed"]) == ("place", "blue", 3)
    assert "blue" in st["instruction"]
    cube = robot.object_position("blue").copy()
    session.reset(seed=3, instruction="  put the blue block in the bowl please ")
    np.testing.assert_allclose(robot.object_position("blue"), cube, atol=1e-6)
    assert session.status()["instruction"] == "put the blue block in the bowl please"
    with pytest.raises(ValueError, match="unknown task 'fly'.*pick"):
        session.reset(task="fly")
    with pytest.raises(ValueError, match="unknown colour 'purple'"):
        session.reset(colour="purple")
    st = session.status()
    assert (st["task"], st["colour"], st["seed"]) == ("place", "blue", 3)
    t0 = st["tick"]
    wait_for(lambda: session.status()["tick"] > t0 + 3, what="ticks after bad resets")
    tasks = {t["name"]: t for t in session.tasks()}
    assert set(tasks) >= {"pick", "place"} and "red" in tasks["pick"]["colours"]
    assert any("{colour}" in t for t in tasks["pick"]["templates"])


def test_expert_completes_a_pick_through_the_loop_and_auto_stop_saves_it(session, store):
    session.reset(seed=1, task="pick", colour="green")
    session.set_source("expert")
    session.set_auto_stop(True)
    session.start_recording("scripted-expert", "expert_ds")
    session.start()
    wait_for(lambda: session.status()["success"], timeout=15, what="task success")
    wait_for(lambda: session.status()["recording"]["episodes_saved"] == 1, timeout=10, what="auto-stop save")
    (info,) = store.list_episodes()
    assert info.source == "scripted" and info.auto_success is True and info.human_success is True
    assert info.extra["stopped_by"] == "auto" and info.extra["colour"] == "green"
    st = session.status()
    assert st["counters"]["rejected"] == 0 and st["counters"]["tick_errors"] == 0
