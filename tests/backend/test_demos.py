"""Scripted demos are recorded by the live robot's session run headless: the same frames as the expert's own plain
loop (observe, act, apply), the expert's actions untouched by the safety filter, and bad requests refused first."""

from __future__ import annotations

import numpy as np
import pytest

from backend.robot import EETarget
from backend.services.demos import SETTLE_STEPS_AFTER_SUCCESS, dart_noise, record_demos
from backend.sim import SimConfig, SimRobot, make_expert, make_task
from storage.features import ACTION, ACTOR, OBS_STATE


def plain_demo(seed: int, colour: str, config: SimConfig) -> tuple[np.ndarray, np.ndarray]:
    """(T, D_state) states and (T, D_action) actions of the loop demos had before they ran on the session."""
    robot = SimRobot(config)
    try:
        task = make_task("pick", colour)
        obs, expert = robot.reset(seed=seed, task=task), make_expert(task)
        expert.reset(robot)
        states, actions, since = [], [], None
        for _ in range(config.max_episode_steps):
            action = expert.act(robot)
            states.append(np.asarray(obs.state, np.float32))
            actions.append(np.asarray(action, np.float32))
            robot.apply(action)
            obs = robot.observe()
            if since is None and robot.success():
                since = 0
            elif since is not None:
                since += 1
                if since >= SETTLE_STEPS_AFTER_SUCCESS:
                    break
        return np.stack(states), np.stack(actions)
    finally:
        robot.close()


def test_a_demo_is_the_experts_plain_rollout_frame_for_frame(store):
    config = SimConfig(image_size=48)
    (demo,) = record_demos(store=store, dataset="demos", task_name="pick", colour="blue", episodes=1, seed=7,
                           sim_config=config)  # fmt: skip
    want_states, want_actions = plain_demo(7, "blue", config)
    table = store.read_table(demo.episode_id)
    states = np.asarray(table.column(OBS_STATE).to_pylist(), np.float32)
    actions = np.asarray(table.column(ACTION).to_pylist(), np.float32)
    assert demo.success and demo.length == len(want_states) == len(states)
    np.testing.assert_array_equal(states, want_states)
    np.testing.assert_array_equal(actions, want_actions)
    info = store.get_episode(demo.episode_id)
    assert (info.source, info.auto_success, info.human_success) == ("scripted", True, None)  # nobody judged it
    assert set(table.column(ACTOR).to_pylist()) == {"expert"}


def test_bad_demo_requests_write_nothing(store):
    for bad in (dict(colour="purple"), dict(task_name="fly"), dict(episodes=0), dict(dataset="a/b")):
        args = dict(store=store, dataset="d", task_name="pick", colour="red", episodes=1) | bad
        with pytest.raises(ValueError):
            record_demos(**args)
    assert store.list_episodes() == []


def test_dart_demos_execute_a_perturbed_goal_and_record_the_experts_clean_action(store):
    """DART (backend.sim.TargetNoise): at the first tick both takes start from the same seeded scene, so the clean
    action recorded under noise equals the plain demo's; from then on the noise has moved the arm, so the states and
    the expert's corrections differ. A session that recorded the executed (noisy) action fails the first check."""
    config = SimConfig(image_size=48)
    want_states, want_actions = plain_demo(7, "blue", config)
    (demo,) = record_demos(store=store, dataset="dart", task_name="pick", colour="blue", episodes=1, seed=7,
                           sim_config=config, noise=dart_noise(0.01))  # fmt: skip
    table = store.read_table(demo.episode_id)
    states = np.asarray(table.column(OBS_STATE).to_pylist(), np.float32)
    actions = np.asarray(table.column(ACTION).to_pylist(), np.float32)
    np.testing.assert_array_equal(actions[0], want_actions[0])
    assert np.abs(states[5] - want_states[5]).max() > 1e-4  # the noise moved the arm off the plain path
    assert demo.success  # 1 cm of noise: the expert still recovers and lifts the cube


def test_dart_noise_is_seeded_per_take_and_refuses_negative_scales():
    a, b = dart_noise(0.01), dart_noise(0.01)
    a.reset(3)
    b.reset(3)
    target = EETarget(position=np.zeros(3), yaw=0.0, gripper=1.0)
    pa, pb = (a.perturb(target, 1 / 30) for _ in range(5)), (b.perturb(target, 1 / 30) for _ in range(5))
    for x, y in zip(pa, pb, strict=True):
        np.testing.assert_array_equal(x.position, y.position)
        assert x.gripper == 1.0  # never perturbed
    assert dart_noise(0.0) is None
    with pytest.raises(ValueError, match="noise"):
        dart_noise(-0.01)
