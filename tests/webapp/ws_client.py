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


def frame_with_overlay(ws, max_frames: int = 3000) -> dict:
    """The first frame that carries a policy overlay (the first prediction is computed beside the loop). Fails
    after `max_frames` frames without one, with the policy's status (errors, last error) in the message, instead
    of waiting for ever when inference never delivers."""
    frame = next_frame(ws)
    for _ in range(max_frames):
        if "overlay" in frame:
            return frame
        frame = next_frame(ws)
    raise AssertionError(f"no policy overlay in {max_frames} frames; policy status: {frame['status'].get('policy')}")
