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
