"""The web layer on the real backend.control.RobotSession and sim (small images): socket control, the lease on
close, and a recorded episode reaching the store with source=teleop and the operator's name."""

from __future__ import annotations

import json
import time

import pytest
from auth_client import sign_in
from fastapi.testclient import TestClient
from helpers import FakeClock
from ws_client import next_frame, next_text

from backend.control import RobotSession
from backend.sim import SimConfig, SimRobot
from webapp import create_app


@pytest.fixture
def real_client(settings, store):
    robot = SimRobot(SimConfig(image_size=48))
    # A frozen session clock: the commands below stay fresh however slowly a loaded machine runs the loop (on wall
    # time a starved loop let them pass the 200 ms command timeout, and the wait for seq 15 hung).
    session = RobotSession(robot, store, clock=FakeClock())
    with TestClient(create_app(settings, session=session, store=store, ui=False)) as client:
        yield sign_in(client, "alice", "operator")
    robot.close()


def test_teleop_socket_and_recording_on_the_real_session(real_client):
    with real_client.websocket_connect("/ws/teleop") as ws:
        ws.send_text(json.dumps({"type": "hello", "control": True}))
        assert next_text(ws, "lease")["granted"]
        start = next_frame(ws)["state"]
        real_client.post("/api/robot/recording/start", json={"dataset": "teleop"})
        for seq in range(1, 16):
            ws.send_text(json.dumps({"type": "cmd", "seq": seq, "vx": 0, "vy": 0, "vz": 1.0, "yaw": 0, "gripper": 0}))
            time.sleep(1 / 30)
        frame = next_frame(ws)
        while (frame["last_command_seq"] or 0) < 15:
            frame = next_frame(ws)
        assert max(abs(a - b) for a, b in zip(start[:6], frame["state"][:6], strict=True)) > 1e-3
        saved = real_client.post("/api/robot/recording/save", json={"success": True}).json()
    assert real_client.get("/api/robot/status").json()["controller"] is None  # socket closed: lease released
    ep = real_client.get(f"/api/episodes/{saved['episode_id']}").json()
    assert (ep["source"], ep["operator"], ep["human_success"]) == ("teleop", "alice", True)
    assert ep["length"] > 5
    assert real_client.get(ep["thumbnail_url"]).headers["content-type"] == "image/jpeg"
