"""Control-loop parts on their own: command validation, the safety filter, the lease and the frame hub."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import numpy as np
import pytest

from backend.control import (
    ControlLease,
    Frame,
    FrameHub,
    LeaseHeldError,
    NotControllerError,
    SafetyFilter,
    SubscriptionClosed,
    TeleopCommand,
    parse_command,
    validate_command,
)
from backend.robot import RobotLimits

DT = 1 / 30


def _limits() -> RobotLimits:
    return RobotLimits(
        joint_low=np.array([-1.0] * 6 + [0.0], dtype=np.float32),
        joint_high=np.array([1.0] * 6 + [1.0], dtype=np.float32),
        max_joint_speed=np.array([2.0] * 6 + [4.0], dtype=np.float32),
        workspace_low=np.array([0.15, -0.45, 0.02], dtype=np.float32),
        workspace_high=np.array([0.70, 0.45, 0.50], dtype=np.float32),
    )


# ---------------------------------------------------------------- commands
def test_parse_command_accepts_a_valid_message_and_clamps_rounding():
    cmd = parse_command(
        {"type": "cmd", "seq": 3, "vx": 1.0000000001, "vy": -0.5, "vz": 0, "yaw_rate": 0.2, "gripper": 1}
    )
    assert cmd == TeleopCommand(seq=3, vx=1.0, vy=-0.5, vz=0.0, yaw_rate=0.2, gripper=1.0, speed=1.0)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"vx": math.nan}, "vx must be finite"),
        ({"vy": math.inf}, "vy must be finite"),
        ({"vz": 1.5}, r"vz must be in \[-1, 1\]"),
        ({"gripper": -0.2}, "gripper"),
        ({"speed": 0.0}, "speed"),
        ({"seq": -1}, "seq"),
        ({"seq": True}, "seq"),
        ({"yaw_rate": "fast"}, "yaw_rate must be a number"),
        ({"bogus": 1}, "unknown command fields"),
    ],
)
def test_bad_commands_are_rejected_with_the_field_named(change, match):
    msg = {"seq": 1, "vx": 0.0, "vy": 0.0, "vz": 0.0, "yaw_rate": 0.0, "gripper": 0.0, **change}
    with pytest.raises(ValueError, match=match):
        parse_command(msg)


def test_missing_field_is_named():
    with pytest.raises(ValueError, match="missing.*gripper"):
        parse_command({"seq": 1, "vx": 0, "vy": 0, "vz": 0, "yaw_rate": 0})
    with pytest.raises(ValueError, match="TeleopCommand"):
        validate_command({"seq": 1})


# ---------------------------------------------------------------- safety filter
def test_nan_action_is_rejected_held_and_counted():
    f = SafetyFilter(_limits(), DT)
    cur = np.zeros(7, dtype=np.float32)
    hold = np.full(7, 0.1, dtype=np.float32)
    r = f.filter([0, 0, math.nan, 0, 0, 0, 0], current=cur, hold=hold)
    assert r.held and r.reasons == ("nonfinite",)
    np.testing.assert_array_equal(r.action, hold)
    r = f.filter(np.full(7, np.inf), current=cur, hold=hold)
    assert r.held
    assert f.counts["nonfinite"] == 2 and f.total == 2
    r = f.filter(np.zeros(5), current=cur, hold=hold)
    assert r.held and f.counts["invalid"] == 1


def test_out_of_limit_joints_are_clamped_and_counted():
    f = SafetyFilter(_limits(), DT)
    cur = np.array([0.99, 0, 0, 0, 0, 0, 1.0], dtype=np.float32)
    r = f.filter([1.5, 0, 0, 0, 0, 0, 1.7], current=cur, hold=cur)
    assert not r.held and "joint_limit" in r.reasons
    assert r.action[0] == pytest.approx(1.0) and r.action[6] == pytest.approx(1.0)
    assert f.counts["joint_limit"] == 1


def test_too_large_step_is_scaled_to_the_per_tick_limit():
    f = SafetyFilter(_limits(), DT)
    cur = np.zeros(7, dtype=np.float32)
    r = f.filter([0.5, 0.25, 0, 0, 0, 0, 0], current=cur, hold=cur)
    max_step = 2.0 * DT
    assert r.reasons == ("velocity",) and not r.held
    assert r.action[0] == pytest.approx(max_step, rel=1e-5)
    assert r.action[1] == pytest.approx(max_step / 2, rel=1e-5)  # same direction, slower
    assert f.counts["velocity"] == 1
    ok = f.filter([0.9 * max_step, 0, 0, 0, 0, 0, 0], current=cur, hold=cur)  # within the limit: untouched
    assert ok.reasons == () and ok.action[0] == pytest.approx(0.9 * max_step)
    assert f.total == 1


def test_workspace_violation_is_rejected_unless_it_moves_back():
    fk = lambda a: np.array([0.3 + a[0], 0.0, 0.2])  # noqa: E731  joint 0 slides the TCP along x
    f = SafetyFilter(_limits(), DT, fk=fk)
    inside = np.zeros(7, dtype=np.float32)
    assert f.filter([0.05, 0, 0, 0, 0, 0, 0], current=inside, hold=inside).reasons == ()
    cur = np.array([0.44, 0, 0, 0, 0, 0, 0], dtype=np.float32)  # TCP at x = 0.74: 4 cm outside already
    r = f.filter([0.46, 0, 0, 0, 0, 0, 0], current=cur, hold=cur)
    assert r.held and "workspace" in r.reasons and f.counts["workspace"] == 1
    back = f.filter([0.42, 0, 0, 0, 0, 0, 0], current=cur, hold=cur)
    assert not back.held and f.counts["workspace"] == 1


def test_forward_kinematics_comes_from_the_robot_interface(camera_robot):
    from backend.control import robot_forward_kinematics
    from backend.sim import make_task

    camera_robot.reset_state(0, make_task("pick", "red"))
    fk = robot_forward_kinematics(camera_robot)
    action = np.append(camera_robot.state()[:6], 0.0)
    np.testing.assert_allclose(fk(action), camera_robot.ee_target().position, atol=1e-4)
    before = camera_robot.state().copy()
    fk(action + 0.3)  # pure: the live sim does not move
    np.testing.assert_array_equal(camera_robot.state(), before)
    assert robot_forward_kinematics(object()) is None  # a robot without FK: the workspace check is skipped


# ---------------------------------------------------------------- lease
class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_lease_one_controller_at_a_time_and_expiry():
    clock = FakeClock()
    lease = ControlLease(timeout_s=30.0, clock=clock)
    assert lease.acquire("a", "alice") is True
    with pytest.raises(LeaseHeldError, match="alice"):
        lease.acquire("b", "bob")
    with pytest.raises(NotControllerError):
        lease.touch("b")
    assert lease.release("b") is False and lease.holder.operator == "alice"
    clock.t += 29.0
    lease.touch("a")  # alive: the clock restarts
    clock.t += 29.0
    with pytest.raises(LeaseHeldError):
        lease.acquire("b", "bob")
    clock.t += 1.5  # 30.5 s of silence
    assert lease.acquire("b", "bob") is True and lease.expired_count == 1
    with pytest.raises(NotControllerError):
        lease.touch("a")
    assert lease.release("b") is True and lease.holder is None


# ---------------------------------------------------------------- hub
def _frame(i: int) -> Frame:
    return Frame(tick=i, time=time.monotonic(), jpeg={}, state=[], last_command_seq=None, status={})


def test_hub_slow_viewer_skips_fast_viewer_keeps_up_and_publisher_never_waits():
    """Driven step by step, not by sleeps: a burst published from a thread while the viewers' event loop is blocked
    (the publisher must finish it alone), then one frame at a time, the fast viewer taking each and the slow one
    every 10th."""
    hub = FrameHub()
    n, burst = 120, 10

    async def main():
        fast, slow = hub.subscribe(), hub.subscribe()
        got_fast: list[int] = []
        got_slow: list[int] = []
        publisher = threading.Thread(target=lambda: [hub.publish(_frame(i)) for i in range(1, burst + 1)])
        publisher.start()
        publisher.join(timeout=10)  # blocks this event loop: no viewer takes anything meanwhile
        assert not publisher.is_alive(), "publish() waited on a viewer"
        got_fast.append((await fast.next(timeout=1)).tick)
        got_slow.append((await slow.next(timeout=1)).tick)
        for i in range(burst + 1, n + 1):
            await asyncio.to_thread(hub.publish, _frame(i))
            got_fast.append((await fast.next(timeout=1)).tick)
            if i % 10 == 0:
                got_slow.append((await slow.next(timeout=1)).tick)
        return fast, slow, got_fast, got_slow

    fast, slow, got_fast, got_slow = asyncio.run(main())
    assert got_slow == sorted(got_slow) and got_fast == sorted(got_fast)  # only ever newer frames
    assert slow.skipped > n / 2 and slow.received + slow.skipped == n
    assert fast.received >= 0.9 * n and fast.received + fast.skipped == n
    assert got_fast[0] == got_slow[0] == burst  # after the stalled burst, each viewer got the newest frame


def test_subscription_starts_with_the_latest_frame_and_close_ends_next():
    hub = FrameHub()
    hub.publish(_frame(7))

    async def main():
        sub = hub.subscribe()
        assert (await sub.next(timeout=1)).tick == 7
        with pytest.raises(TimeoutError):
            await sub.next(timeout=0.05)
        waiter = asyncio.create_task(sub.next())
        await asyncio.sleep(0)
        sub.close()
        with pytest.raises(SubscriptionClosed):
            await waiter
        assert hub.subscribers == 0

    asyncio.run(main())
