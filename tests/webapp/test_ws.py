"""/ws/teleop with FastAPI's TestClient: frames, the lease, the hold-still timeout and hostile messages."""

from __future__ import annotations

import json
import time

import pytest
from auth_client import bearer
from ws_client import next_frame, next_text

from webapp.ws import MAX_ERRORS_PER_S, parse_message


def cmd(seq: int, **axes) -> str:
    return json.dumps({"type": "cmd", "seq": seq, "vx": 0, "vy": 0, "vz": 0, "yaw": 0, "gripper": 0, **axes})


def test_frames_carry_header_and_jpegs(client):
    with client.websocket_connect("/ws/teleop") as ws:
        f1, f2 = next_frame(ws), next_frame(ws)
        assert f2["tick"] > f1["tick"]
        assert [name for name, _ in f1["cameras"]] == ["front", "wrist"]
        assert all(img[:2] == b"\xff\xd8" for img in f1["images"].values())  # JPEG SOI
        assert len(f1["state"]) == 7 and "recording" in f1["status"]


def test_controller_moves_the_arm_and_latency_seq_is_reported(client):
    with client.websocket_connect("/ws/teleop") as ws:
        ws.send_text(json.dumps({"type": "hello", "control": True}))
        assert next_text(ws, "welcome")["cameras"] == ["front", "wrist"]
        assert next_text(ws, "lease") == {"type": "lease", "granted": True, "holder": "alice", "detail": "you control"}
        for seq in range(1, 8):
            ws.send_text(cmd(seq, vx=1.0))
            time.sleep(1 / 30)
        frame = next_frame(ws)
        while frame["last_command_seq"] is None or frame["last_command_seq"] < 7:
            frame = next_frame(ws)
        assert frame["state"][0] > 0 and frame["status"]["controller"] == "alice"
        ws.send_text(json.dumps({"type": "ping", "t": 12.5}))
        assert next_text(ws, "pong") == {"type": "pong", "t": 12.5}


def test_second_client_cannot_take_the_lease_and_socket_close_releases_it(client, robot):
    as_bob, as_carol = (bearer(client.app, name, "operator") for name in ("bob", "carol"))
    with client.websocket_connect("/ws/teleop") as first:
        first.send_text(json.dumps({"type": "hello", "control": True}))
        assert next_text(first, "lease")["granted"]
        with client.websocket_connect("/ws/teleop", headers=as_bob) as second:
            second.send_text(json.dumps({"type": "hello", "control": True}))
            refused = next_text(second, "lease")
            assert refused["granted"] is False and refused["holder"] == "alice"
            second.send_text(cmd(1, vx=1.0))  # a viewer's command is refused, not applied
            assert next_text(second, "lease")["granted"] is False
    # Both sockets closed: the lease is free again and the arm holds (no controller, no commands applied).
    assert robot.status()["controller"] is None
    with client.websocket_connect("/ws/teleop", headers=as_carol) as third:
        third.send_text(json.dumps({"type": "hello", "control": True}))
        assert next_text(third, "lease")["granted"]
        third.send_text(json.dumps({"type": "release"}))
        assert next_text(third, "lease")["granted"] is False


def ticks_later(robot, n: int = 2, timeout: float = 10.0) -> None:
    """Wait until the fake loop has run `n` more ticks (a slow machine only makes this wait longer)."""
    end = time.monotonic() + timeout + n / robot.control_hz
    target = robot.tick + n
    while robot.tick < target:
        if time.monotonic() > end:
            raise AssertionError(f"the loop did not run {n} ticks in {timeout} s")
        time.sleep(0.005)


def test_arm_holds_when_commands_stop(client, robot, clock):
    with client.websocket_connect("/ws/teleop") as ws:
        ws.send_text(json.dumps({"type": "hello", "control": True}))
        next_text(ws, "lease")
        ws.send_text(cmd(1, vy=1.0))
        while next_frame(ws)["last_command_seq"] != 1:
            pass
        clock.advance(0.19)  # younger than command_timeout_s (0.2 s): still applied
        ticks_later(robot)
        before = list(robot.state)
        ticks_later(robot)
        assert robot.state[1] > before[1]
        clock.advance(0.02)  # 0.21 s old: too old to apply
        ticks_later(robot)
        before = list(robot.state)
        ticks_later(robot)
        assert robot.state == before


HOSTILE = [
    ("not json", "(?i)json"),
    ('{"type": "cmd", "seq": 1, "vx": NaN}', "finite"),
    ('{"type": "cmd", "seq": 1, "vx": Infinity}', "finite"),
    ('{"type": "cmd", "seq": 1, "vx": 1e999}', "finite"),
    ('{"type": "cmd", "seq": 1, "vx": 2.0}', "less than or equal"),
    ('{"type": "cmd", "seq": "1"}', "integer"),
    ('{"type": "cmd", "seq": 1, "vx": true}', "number"),
    ('{"type": "cmd", "seq": 1, "sudo": 1}', "Extra inputs"),
    ('{"type": "launch"}', "tag"),
    ("[1, 2, 3]", "(?i)dict|object"),
    ('{"type": "hello", "operator": "alice"}', "Extra inputs"),  # identity comes from the session
    ('{"type": "cmd", "seq": 1, "speed": 0}', "greater than"),
]


@pytest.mark.parametrize("text, reason", HOSTILE)
def test_parse_message_rejects(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_message(text)


def test_hostile_messages_get_errors_and_the_loop_carries_on(client, robot):
    with client.websocket_connect("/ws/teleop") as ws:
        ws.send_text(json.dumps({"type": "hello", "control": True}))
        next_text(ws, "lease")
        tick = next_frame(ws)["tick"]
        for text, _ in HOSTILE[:6]:
            ws.send_text(text)
            assert next_text(ws)["type"] == "error"
        ws.send_text("x" * 1_000_000)
        assert "larger than" in next_text(ws, "error")["detail"]
        ws.send_bytes(b"\x00\x01")
        assert "binary" in next_text(ws, "error")["detail"]
        time.sleep(1.05)  # below the abuse limit per second: the socket stays open and still works
        ws.send_text(cmd(1, vz=1.0))
        frame = next_frame(ws)
        while frame["last_command_seq"] != 1:
            frame = next_frame(ws)
        assert frame["tick"] > tick and frame["state"][2] > 0


def test_abusive_socket_is_closed_and_others_keep_streaming(client):
    with client.websocket_connect("/ws/teleop") as viewer, client.websocket_connect("/ws/teleop") as abuser:
        for _ in range(MAX_ERRORS_PER_S + 5):
            abuser.send_text("garbage")
        while (msg := abuser.receive())["type"] != "websocket.close":
            pass
        assert msg["code"] == 1008
        f1 = next_frame(viewer)
        assert next_frame(viewer)["tick"] > f1["tick"]


def test_a_frame_that_cannot_be_packed_is_skipped_and_the_stream_goes_on(client, robot, monkeypatch, caplog):
    """A header json cannot encode (here a tuple key) must cost that frame only: before, the sender task died
    silently and the socket stayed open with no frame ever again."""
    real_status = robot._status_locked
    bad = {"left": 5}

    def status():
        if bad["left"] > 0:
            bad["left"] -= 1
            return {**real_status(), (1, 2): "a tuple key"}
        return real_status()

    with client.websocket_connect("/ws/teleop") as ws:
        next_frame(ws)
        monkeypatch.setattr(robot, "_status_locked", status)
        while bad["left"] > 0:
            time.sleep(1 / 30)
        frame = next_frame(ws)  # the old sender waited here for ever
        assert "recording" in frame["status"]
    assert "skipped unpackable frame" in caplog.text
