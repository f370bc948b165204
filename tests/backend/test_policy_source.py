"""The policy as a RobotSession command source: synchronous = select_action's rollout, asynchronous inference that
never stalls a tick, ask-for-help, takeover recorded as a correction, overlays in the frame header."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from backend.control import RobotSession
from backend.control.policy_source import HelpMonitor, ModelInfo, PolicySource
from storage.features import ACTOR, INTERVENTION, UNCERTAINTY
from webapp.ws import pack_frame, unpack_frame

CAMERAS = ("front", "wrist")


@pytest.fixture(scope="module")
def robot():
    from backend.sim import SimConfig, SimRobot

    r = SimRobot(SimConfig(image_size=48))
    yield r
    r.close()


@pytest.fixture
def session(robot, store, clock):
    s = RobotSession(robot, store, clock=clock)
    yield s
    if s.policy is not None:
        s.set_policy(None)
    s.stop()


def wait_for(pred, timeout: float = 10.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class ScriptedPolicy:
    """A chunk policy with a known output: from state s it predicts joints s + (k+1) * step for k < T, gripper 0;
    its uncertainty is whatever `scores` yields next. `gate` (when set) blocks each prediction until released, so
    tests decide when an asynchronous prediction finishes without any timing."""

    def __init__(self, *, chunk=4, coeff=None, scores=None, step=0.002, gate: threading.Event | None = None):
        self.cameras = CAMERAS
        self.model = SimpleNamespace(config=SimpleNamespace(chunk_size=chunk, temporal_ensemble_coeff=coeff,
                                                            n_action_steps=chunk))  # fmt: skip
        self.scores = iter(scores) if scores is not None else None
        self.step, self.gate, self.calls = step, gate, []

    def predict(self, batch, instruction):
        if self.gate is not None:
            assert self.gate.wait(10.0), "test never released the prediction"
            self.gate.clear()
        state = np.asarray(batch["observation.state"], dtype=np.float32)
        self.calls.append((state.copy(), instruction))
        T = self.model.config.chunk_size
        joints = state[:6][None] + self.step * np.arange(1, T + 1, dtype=np.float32)[:, None]  # (T, 6)
        actions = np.concatenate([joints, np.zeros((T, 1), np.float32)], 1)[None]  # (1, T, 7)
        score = next(self.scores) if self.scores is not None else 0.0
        grid = np.zeros((1, 6, 6), np.float32)
        grid[0, 2, 3] = 1.0
        return SimpleNamespace(
            actions=actions, uncertainty=np.array([score], np.float32),
            attention={c: grid for c in CAMERAS}, attention_rollout={c: grid for c in CAMERAS},
            keypoint_attention={}, tokens=[instruction.split()],
            token_attention={c: np.repeat(grid[:, None], len(instruction.split()), 1) for c in CAMERAS},
        )  # fmt: skip


def model_info(threshold=None) -> ModelInfo:
    return ModelInfo(id=7, name="pick-test", version=2, threshold=threshold)


# ---------------------------------------------------------------- the monitor
def test_help_monitor_asks_after_k_consecutive_scores_above_threshold():
    m = HelpMonitor(0.5, k=3)
    assert [m.observe(s) for s in (0.9, 0.9, 0.1, 0.9, 0.9)] == [False] * 5  # the low score broke the run
    assert m.observe(0.9) is True and m.asking and m.prompts == 1
    assert m.observe(0.9) is False  # already asking
    m.resume()
    assert not m.asking and [m.observe(0.9) for _ in range(3)] == [False, False, True] and m.prompts == 2
    never = HelpMonitor(None, k=1)
    assert not any(never.observe(1e9) for _ in range(10))
    with pytest.raises(ValueError):
        HelpMonitor(0.5, k=0)


# ---------------------------------------------------------------- synchronous: the evaluation rollout
def test_synchronous_policy_source_replays_select_action_exactly(robot, store, clock):
    """A real vla_tiny through the session (sync) moves the arm exactly as the evaluation loop's select_action."""
    from backend.services.evaluation import _policy_obs
    from backend.sim import SimConfig, SimRobot, make_task
    from vla_core.inference import Policy
    from vla_core.policies import make_policy

    model = make_policy("vla_tiny", cameras=CAMERAS, image_size=48, chunk_size=4, d_model=32, n_heads=2,
                        n_layers=1, intermediate_size=64, vision_channels=(8, 16, 32), n_text_layers=1,
                        uncertainty_samples=2, head_hidden=32)  # fmt: skip
    model.eval()
    with torch.no_grad():  # untrained outputs scaled down to small joint steps, so the safety filter passes them
        model.action_std.fill_(0.003)
        model.action_mean.zero_()
        model.action_mean[-1] = 0.02  # the gripper a little closed: within its limits and its per-tick step
    policy = Policy(model)
    session = RobotSession(robot, store, clock=clock)
    try:
        session.reset(seed=5, task="pick", colour="green", instruction="pick up the green cube")
        session.set_policy(PolicySource(policy, model=model_info(), asynchronous=False))
        session.set_source("policy")
        states = []
        for _ in range(12):
            session.step()
            states.append(robot.state().copy())
    finally:
        session.set_policy(None)
        session.stop()

    other = SimRobot(SimConfig(image_size=48))
    try:
        obs = other.reset(seed=5, task=make_task("pick", "green"))
        model.reset()
        expected = []
        for _ in range(12):
            action = model.select_action(_policy_obs(obs, CAMERAS), "pick up the green cube")
            other.apply(action)
            obs = other.observe()
            expected.append(other.state().copy())
    finally:
        other.close()
    np.testing.assert_array_equal(np.stack(states), np.stack(expected))
    assert np.abs(states[-1] - states[0]).max() > 1e-3  # it did move
    assert session.safety.total == 0  # nothing was clipped: the comparison is of the policy path alone


# ---------------------------------------------------------------- asynchronous inference
def test_asynchronous_inference_never_blocks_a_tick_and_skips_the_steps_it_missed(session, robot):
    gate = threading.Event()
    fake = ScriptedPolicy(chunk=6, gate=gate)
    source = PolicySource(fake, model=model_info(), asynchronous=True)
    session.set_policy(source)
    session.set_source("policy")
    q0 = robot.state().copy()
    for _ in range(3):  # the prediction from tick 0's observation is still running: the loop holds the arm
        session.step()
    np.testing.assert_allclose(robot.state()[:6], q0[:6], atol=1e-4)
    wait_for(lambda: source._busy, what="the inference thread to take the request")
    st = session.status()["policy"]
    assert st["predictions"] == 0 and st["in_flight_s"] >= 0 and st["inference_thread"] is True  # slow, not stuck
    gate.set()  # the prediction finishes (from the state of tick 0)
    wait_for(lambda: source._done is not None, what="the prediction")
    session.step()  # tick 3: chunk of tick 0, action index 3
    st = session.status()["policy"]
    assert st["predictions"] == 1 and st["chunk_age_ticks"] == 3 and st["latency_ms_p50"] > 0
    assert st["restarts"] == 0
    target = q0[:6] + 0.002 * 4  # chunk[3] = s0 + 4 * step
    np.testing.assert_allclose(robot._last_action[:6], target, atol=1e-5)  # what the safety filter passed on
    gate.set()
    assert len(fake.calls) >= 1 and fake.calls[0][1] == session.status()["instruction"]


def test_a_failing_prediction_holds_the_arm_and_is_reported(session, robot):
    class Broken(ScriptedPolicy):
        def predict(self, batch, instruction):
            raise RuntimeError("model exploded")

    source = PolicySource(Broken(), model=model_info(), asynchronous=True)
    session.set_policy(source)
    session.set_source("policy")
    q0 = robot.state().copy()
    session.step()
    wait_for(lambda: source.stats.errors >= 1, what="the failed prediction")
    for _ in range(3):
        session.step()
    np.testing.assert_allclose(robot.state()[:6], q0[:6], atol=1e-4)
    assert "model exploded" in session.status()["policy"]["last_error"]


# ---------------------------------------------------------------- ask for help, take over, hand back
def test_policy_asks_for_help_then_the_operator_corrects_it_and_the_take_is_an_intervention(session, robot, store):
    from backend.control import TeleopCommand

    scores = [0.1] * 3 + [0.9] * 2 + [0.1] * 100  # predictions 4 and 5 are unsure: with k=2, help is asked
    source = PolicySource(ScriptedPolicy(chunk=4, coeff=0.01, scores=scores), model=model_info(threshold=0.5),
                          asynchronous=False, help_k=2)  # fmt: skip
    session.set_policy(source)
    session.set_source("policy")
    session.start_recording("alice", "corrections")
    for _ in range(5):
        session.step()
    st = session.status()
    assert st["policy"]["help"] == {"asking": True, "prompts": 1, "k": 2}
    session.step()  # asking: the arm is commanded to hold, no new prediction
    held = session._last_action.copy()
    session.step()
    np.testing.assert_array_equal(session._last_action, held)
    assert session.status()["policy"]["predictions"] == 5

    session.acquire_lease("c1", "alice")
    session.take_over()
    assert session.status()["source"] == "teleop"
    for seq in range(4):
        session.command("c1", TeleopCommand(seq=seq, vx=0.5, vy=0, vz=0, yaw_rate=0, gripper=0, speed=1))
        session.step()
    session.hand_back()
    assert session.status()["source"] == "policy" and not session.status()["policy"]["help"]["asking"]
    for _ in range(3):
        session.step()
    assert session.status()["recording"]["interventions"] == 1
    episode_id = session.save_recording(success=False)

    info = store.get_episode(episode_id)
    assert info.source == "intervention" and info.extra["interventions"] == 1
    assert info.extra["intervention_frames"] == 4 and info.extra["model"]["name"] == "pick-test"
    table = store.read_table(episode_id)
    actors = table.column(ACTOR).to_pylist()
    flags = table.column(INTERVENTION).to_pylist()
    assert actors == ["policy"] * 7 + ["teleop"] * 4 + ["policy"] * 3
    assert flags == [False] * 7 + [True] * 4 + [False] * 3
    scores = table.column(UNCERTAINTY).to_pylist()  # the policy's score on its frames, none on the operator's
    assert scores[:3] == pytest.approx([0.1] * 3) and all(v != v for v in scores[7:11])
    assert scores[4] == pytest.approx(0.9)


def test_take_over_needs_a_driving_policy_and_continue_needs_a_question(session):
    with pytest.raises(ValueError, match="not driving"):
        session.take_over()
    with pytest.raises(ValueError, match="no policy"):
        session.hand_back()
    session.set_policy(PolicySource(ScriptedPolicy(), model=model_info(), asynchronous=False))
    session.set_source("policy")
    with pytest.raises(ValueError, match="not asking"):
        session.continue_policy()


def test_continue_lets_the_policy_drive_on(session, robot):
    source = PolicySource(ScriptedPolicy(chunk=4, coeff=0.01, scores=[0.9] * 2 + [0.1] * 50), model=model_info(0.5),
                          asynchronous=False, help_k=2)  # fmt: skip
    session.set_policy(source)
    session.set_source("policy")
    session.step()
    session.step()
    assert source.help.asking
    q = robot.state().copy()
    session.continue_policy()
    for _ in range(4):
        session.step()
    assert not source.help.asking and np.abs(robot.state()[:6] - q[:6]).max() > 1e-3


# ---------------------------------------------------------------- overlays
def test_frames_carry_the_policy_overlay_while_it_drives(session, robot):
    session.set_policy(PolicySource(ScriptedPolicy(scores=[0.25] * 10), model=model_info(threshold=0.5),
                                    asynchronous=False))  # fmt: skip
    frame = session.step()
    assert frame.overlay is None  # idle: nothing to show
    session.set_source("policy")
    frame = session.step()
    header, images = unpack_frame(pack_frame(frame))
    overlay = header["overlay"]
    assert set(images) == set(CAMERAS)
    assert overlay["maps"]["attention"]["front"][2][3] == 1.0 and len(overlay["maps"]["attention"]["wrist"]) == 6
    assert overlay["uncertainty"] == pytest.approx(0.25) and overlay["threshold"] == 0.5
    assert overlay["words"] == session.status()["instruction"].split()
    assert len(overlay["word_maps"]["front"]) == len(overlay["words"]) and len(overlay["chunk"]) == 4
    assert header["status"]["policy"]["model"] == {"id": 7, "name": "pick-test", "version": 2}
    # The chunk's planned tool path in the front camera: where forward kinematics + projection put each action.
    path = overlay["path"]
    assert len(path) == 4 and all(0 <= x <= 1 and 0 <= y <= 1 for x, y in path)
    expected = robot.project(np.stack([robot.forward_kinematics(a) for a in np.asarray(overlay["chunk"])]), "front")
    np.testing.assert_allclose(np.asarray(path), expected, atol=1e-3)
    session.set_overlays(False)
    assert session.step().overlay is None


# ---------------------------------------------------------------- every rollout in SQL
@pytest.fixture
def rollout_log(store):
    from backend.services.rollout_log import RolloutLog

    return RolloutLog(store.session_factory)


def test_each_live_rollout_lands_in_sql_with_its_outcome_and_interventions(session, store, rollout_log):
    from backend.control import TeleopCommand

    session.set_rollout_sink(rollout_log.record)
    session.reset(seed=11, task="pick", colour="blue")
    session.set_policy(PolicySource(ScriptedPolicy(chunk=4, coeff=0.01, scores=[0.2] * 100), model=model_info(0.5),
                                    asynchronous=False))  # fmt: skip
    session.acquire_lease("c1", "alice")
    session.start_recording("alice", "corrections")
    session.set_source("policy")
    for _ in range(4):
        session.step()
    session.take_over()
    for seq in range(3):
        session.command("c1", TeleopCommand(seq=seq, vx=0.3, vy=0, vz=0, yaw_rate=0, gripper=0, speed=1))
        session.step()
    session.hand_back()
    session.step()
    episode_id = session.save_recording(success=False)
    session.step()  # the policy drives on: a second rollout of the same scene begins ...
    session.reset(seed=12)  # ... and the reset ends it

    first, second = sorted(rollout_log.list(), key=lambda r: r.id)
    assert (first.kind, first.model_id, first.model_name, first.model_version) == ("live", None, "pick-test", 2)
    assert (first.task, first.colour, first.seed, first.operator) == ("pick", "blue", 11, "alice")
    assert first.steps == 8 and first.interventions == 1 and first.intervention_frames == 3
    assert first.episode_id == episode_id and first.human_success is False and first.outcome == "failure"
    assert first.uncertainty_mean == pytest.approx(0.2) and first.help_prompts == 0
    assert first.extra["ended_by"] == "saved" and first.duration_s >= 0
    assert second.extra["ended_by"] == "reset" and second.steps == 1 and second.episode_id is None
    assert second.outcome == "failure" and second.auto_success is False  # the cube was never lifted


def test_the_scripted_expert_corrects_the_policy_from_where_the_arm_is(session, store, rollout_log):
    """take_over("expert"): the sim's expert replans from the current state and lifts the cube; its frames are the
    correction (actor "expert", intervention flagged), which is what the DAgger benchmark retrains on."""
    session.set_rollout_sink(rollout_log.record)
    session.reset(seed=5, task="pick", colour="red")
    session.set_policy(PolicySource(ScriptedPolicy(chunk=4, coeff=0.01, step=0.01), model=model_info(),
                                    asynchronous=False))  # fmt: skip
    session.start_recording("erin", "corrections")
    session.set_source("policy")
    for _ in range(10):  # the scripted policy drifts the joints away from the start pose
        session.step()
    with pytest.raises(ValueError, match="cannot take over by 'robot'"):
        session.take_over("robot")
    session.take_over("expert")
    assert session.status()["source"] == "expert"
    for _ in range(200):
        session.step()
        if session.status()["success"]:
            break
    assert session.status()["success"], "the expert did not lift the cube from where the policy left the arm"
    episode_id = session.save_recording(success=True)

    info = store.get_episode(episode_id)
    assert info.source == "intervention" and info.extra["interventions"] == 1 and info.auto_success
    table = store.read_table(episode_id)
    actors, flags = table.column(ACTOR).to_pylist(), table.column(INTERVENTION).to_pylist()
    assert actors[:10] == ["policy"] * 10 and set(actors[10:]) == {"expert"}
    assert flags == [a == "expert" for a in actors]
    (row,) = rollout_log.list()
    assert row.interventions == 1 and row.intervention_frames == len(actors) - 10 and row.outcome == "success"


def test_a_non_finite_policy_action_is_held_and_the_rollout_logged_as_aborted(session, robot, rollout_log):
    class NaNPolicy(ScriptedPolicy):
        def predict(self, batch, instruction):
            out = super().predict(batch, instruction)
            out.actions[0, :, 2] = np.nan
            return out

    session.set_rollout_sink(rollout_log.record)
    session.set_policy(PolicySource(NaNPolicy(coeff=0.01), model=model_info(), asynchronous=False))
    session.set_source("policy")
    q0 = robot.state().copy()
    session.step()
    assert session.status()["source"] == "idle" and "non-finite" in session.status()["last_error"]
    session.stop()  # the loop-thread path hands the record to the save thread; stop() waits for it
    np.testing.assert_allclose(robot.state()[:6], q0[:6], atol=1e-3)
    (row,) = rollout_log.list()
    assert row.outcome == "aborted" and "non-finite" in row.extra["abort_reason"]


def test_stopping_the_policy_ends_its_rollout_and_later_teleop_is_no_correction(session, store, rollout_log):
    from backend.control import TeleopCommand

    session.set_rollout_sink(rollout_log.record)
    session.set_policy(PolicySource(ScriptedPolicy(chunk=4, coeff=0.01), model=model_info(), asynchronous=False))
    session.acquire_lease("c1", "alice")
    session.start_recording("alice", "corrections")
    session.set_source("policy")
    for _ in range(3):
        session.step()
    session.set_source("idle")  # Stop, not a takeover
    for seq in range(3):  # the console's commands switch idle to teleop: the operator drives on
        session.command("c1", TeleopCommand(seq=seq, vx=0.3, vy=0, vz=0, yaw_rate=0, gripper=0, speed=1))
        session.step()
    episode_id = session.save_recording(success=True)
    (row,) = rollout_log.list()
    assert row.extra["ended_by"] == "stopped by operator" and row.steps == 3 and row.interventions == 0
    assert store.get_episode(episode_id).source == "teleop"  # the policy's frames then plain teleop: no correction
    table = store.read_table(episode_id)
    assert table.column(INTERVENTION).to_pylist() == [False] * 6
    assert table.column(ACTOR).to_pylist() == ["policy"] * 3 + ["teleop"] * 3
