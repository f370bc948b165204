"""Reading /ws/teleop messages from a TestClient WebSocket session (shared by the web app tests)."""

from __future__ import annotations

import json

from webapp.ws import unpack_frame


def next_text(ws, type_: str | None = None) -> dict:
    """The next JSON message (of the given type), skipping binary frames."""
    while True:
        msg = ws.receive()
        if msg.get("text") is not None:
            data = json.loads(msg["text"])
            if type_ is None or data["type"] == type_:
                return data


def next_frame(ws) -> dict:
    while True:
        msg = ws.receive()
        if msg.get("bytes") is not None:
            header, images = unpack_frame(msg["bytes"])
            return {**header, "images": images}


def take_control(ws) -> dict:
    """Say hello asking for the lease and wait until it is granted. Taking control switches the robot to teleop
    (webapp/ws.py), so a test that starts another source must do it after this, not race the hello."""
    ws.send_text('{"type": "hello", "control": true}')
    lease = next_text(ws, "lease")
    assert lease["granted"], lease
    return lease


def frame_with_overlay(ws, max_frames: int = 3000) -> dict:
    """The first frame that carries a policy overlay (the first prediction is computed beside the loop). Fails
    after `max_frames` frames without one, with the policy's status (errors, last error) in the message, instead
    of waiting for ever when inference never delivers."""
    frame = next_frame(ws)
    for _ in range(max_frames):
        if "overlay" in frame:
            return frame
        frame = next_frame(ws)
    st = frame["status"]
    raise AssertionError(f"no policy overlay in {max_frames} frames; source {st['source']!r}, last event "
                         f"{st.get('last_event')!r}; policy status: {st.get('policy')}")  # fmt: skip
