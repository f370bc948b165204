"""The web app on backend.runtime.RobotRuntime: the robot's loop, lease, deadman, recorder and policy in a real child
process. Frames reach the socket through shared memory, errors keep their status codes, a take recorded there and
a rollout ended there land in the same database, and a runtime killed with SIGKILL is replaced (503 meanwhile)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from auth_client import sign_in
from fastapi.testclient import TestClient
from test_policy_api import SIM_FIT
from ws_client import frame_with_overlay, next_frame, next_text, take_control

from backend.runtime import RobotRuntime
from vla_core.policies import make_policy
from webapp import create_app

WAIT_S = 60.0  # generous bounds for a loaded machine; the tests wait for states, they never time anything


def eventually(check, what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def runtime_settings(settings):
    # 48 px cameras as the small test model expects; its policy on a thread of the runtime (no third process).
    return settings.model_copy(update={"image_size": 48, "policy_process": False})


@pytest.fixture
def runtime(runtime_settings, store):
    rt = RobotRuntime(runtime_settings)
    yield rt
    rt.stop()


@pytest.fixture
def app(runtime_settings, runtime, store):
    return create_app(runtime_settings, session=runtime, store=store, ui=False)


@pytest.fixture
def operator(app):
    with TestClient(app) as client:
        yield sign_in(client, "alice", "operator")


def test_the_robot_runs_in_its_own_process_and_records_into_the_same_database(runtime, operator, client_as):
    status = operator.get("/api/robot/status").json()
    assert status["runtime"]["pid"] not in (None, os.getpid()) and status["running"]
    with operator.websocket_connect("/ws/teleop") as ws:
        take_control(ws)
        assert operator.post("/api/robot/reset", json={"task": "juggle"}).status_code == 400  # a ValueError there
        first = next_frame(ws)  # through the shared-memory ring
        assert set(first["images"]) == {"front", "wrist"} and first["status"]["controller"] == "alice"
        assert next_frame(ws)["tick"] > first["tick"]
        bob = client_as("bob", "operator")
        with bob.websocket_connect("/ws/teleop") as other:
            other.send_text(json.dumps({"type": "hello", "control": True}))
            refused = next_text(other, "lease")  # LeaseHeldError raised in the runtime, by class
            assert not refused["granted"] and refused["holder"] == "alice"
        assert operator.post("/api/robot/recording/start", json={"dataset": "teleop"}).status_code == 200
        frame, seq = first, 0
        while max(abs(a - b) for a, b in zip(first["state"][:6], frame["state"][:6], strict=True)) < 1e-3:
            seq += 1
            assert seq < 600, "the arm never moved"
            ws.send_text(json.dumps({"type": "cmd", "seq": seq, "vx": 0, "vy": 0, "vz": 1.0, "yaw": 0, "gripper": 0}))
            frame = next_frame(ws)
        saved = operator.post("/api/robot/recording/save", json={"success": True}).json()
    episode = operator.get(f"/api/episodes/{saved['episode_id']}").json()
    assert (episode["source"], episode["operator"], episode["human_success"]) == ("teleop", "alice", True)
    assert episode["length"] >= 1
    # The socket closed: the runtime released the lease, and with no commands the deadman stopped teleop.
    def released_and_stopped():
        status = operator.get("/api/robot/status").json()
        return status["controller"] is None and status["teleop"]["live"] is False

    eventually(released_and_stopped, "the lease released and teleop stopped")


def test_a_policy_runs_in_the_runtime_and_its_rollout_lands_in_sql(app, tmp_path):
    folder = tmp_path / "fits"
    make_policy("vla_tiny", **SIM_FIT).save_pretrained(folder)
    model = app.state.models.register(folder, name="pick", created_by="trainer")
    with TestClient(app) as client:
        engineer = sign_in(client, "erin", "engineer")
        r = engineer.post("/api/robot/policy", json={"model_id": model.id})
        assert r.status_code == 200, r.text
        assert r.json()["policy"]["model"] == {"id": model.id, "name": "pick", "version": 1}
        assert engineer.post("/api/robot/policy", json={"model_id": 999}).status_code == 404  # NotFoundError there
        with engineer.websocket_connect("/ws/teleop") as ws:
            take_control(ws)
            engineer.post("/api/robot/source", json={"name": "policy"})
            assert set(frame_with_overlay(ws)["overlay"]["maps"]["attention"]) == {"front", "wrist"}
            engineer.post("/api/robot/reset", json={"seed": 3})  # ends the rollout in the runtime
        # The record comes back over the events pipe and the web process's sink stores it.
        page = eventually(lambda: (p := engineer.get("/api/rollouts").json())["count"] and p, "the rollout row")
        (row,) = page["data"]
        assert (row["model_name"], row["operator"], row["extra"]["ended_by"]) == ("pick", "erin", "reset")


def test_a_killed_runtime_answers_503_then_comes_back(runtime, operator):
    old = runtime.pid
    os.kill(old, signal.SIGKILL)
    eventually(lambda: not runtime.running, "the web process to notice the death")
    gone = operator.get("/api/robot/status")
    if gone.status_code != 200:  # a new runtime can be up already on a very fast machine
        assert gone.status_code == 503 and "robot runtime" in gone.json()["detail"]
    status = eventually(lambda: runtime.running and operator.get("/api/robot/status").json(), "a new runtime")
    assert status["runtime"]["pid"] != old and status["runtime"]["restarts"] == 1
    assert "exited with code -9" in status["runtime"]["last_exit"]
    tick = status["tick"]
    eventually(lambda: operator.get("/api/robot/status").json()["tick"] > tick, "the new loop to tick")
