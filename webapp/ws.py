"""/ws/teleop: the 30 Hz teleop socket (live frames out, operator commands in).

Client -> server: JSON text messages, at most 4 KiB, validated strictly (unknown fields, wrong types, NaN/inf
and out-of-range values are rejected):

    {"type": "hello", "control": true}                         start; control=true also asks for the lease
    {"type": "acquire"}                                        ask for the lease (after hello)
    {"type": "release"}                                        give the lease back (others may take it)
    {"type": "cmd", "seq": 17, "vx": 0.0, "vy": 0.5, "vz": 0.0, "yaw": 0.0, "gripper": 1.0, "speed": 0.6}
        end-effector velocity per axis in [-1, 1], gripper target 0 open..1 closed, speed scale in (0, 1];
        seq is the client's monotonic counter. The controller sends one every tick (~30 Hz) even when idle:
        the loop holds the arm still when commands stop for more than 200 ms or the socket closes.
    {"type": "ping", "t": 1234.5}                              echoed back as pong

Server -> client, text (JSON):

    {"type": "welcome", "client_id": "...", "cameras": ["front", "wrist"]}
    {"type": "lease", "granted": bool, "holder": "alice" | null, "detail": "..."}   holder: a user name
    {"type": "pong", "t": 1234.5}
    {"type": "error", "detail": "..."}        the message was rejected; socket and loop carry on

A frame whose header cannot be packed is skipped (logged) and the next one is sent; if the frame stream itself
fails, the socket is closed with 1011 and the console reconnects, rather than staying open without frames.

Server -> client, binary: one message per frame,

    [u32 big-endian N][N bytes UTF-8 JSON header][JPEG bytes of each camera, concatenated in header order]
    header = {"tick", "time", "last_command_seq", "state", "status", "cameras": [[name, byte_length], ...],
              "overlay": {...} while a policy drives (backend/control/policy_source.py PolicySource.overlay)}

Why binary rather than JSON + base64: base64 adds a third to every JPEG and costs an encode per viewer on the
server and a decode on the browser at 30 Hz; here the packed message is built once per tick and shared by every
viewer, and the browser hands the JPEG slices straight to createImageBitmap as Blobs. The browser measures
command-to-frame latency itself: it notes performance.now() when it sends seq N and closes the round trip when
a frame arrives with last_command_seq >= N (the seq the loop had applied before rendering that frame).

Each socket runs a sender task (latest-frame-only through session.subscribe(): a slow socket skips frames, the
loop never waits) and a receiver (this coroutine). A socket that sends more than 20 bad messages, or more than
300 messages, in one second is closed with 1008 (policy violation). On close the lease is released, so the arm
holds still.

A handshake whose Origin is not the dashboard itself is refused before it is accepted (close 1008: no frame, no
lease; see webapp.security.is_own_origin), so no other web page the operator visits can drive the arm; so is one
without a signed-in user (the session cookie, or an API token as `Authorization: Bearer` or `?token=`) or whose
role may not watch (webapp.permissions.WEBSOCKET_PERMISSIONS). Identity is the session's user: the lease holder
others see is that user's name. Taking the lease needs robot.control; taking, releasing and losing it are audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import struct
import time
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.websockets import WebSocketState
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from backend.services.audit import Action
from backend.services.auth import UserInfo
from backend.services.roles import Permission, allowed
from webapp.control import (
    LeaseHeldError,
    NotControllerError,
    RobotSession,
    RuntimeUnavailableError,
    SubscriptionClosed,
    TeleopCommand,
)
from webapp.deps import Auditor, RobotSessionDep, client_address, get_auth, get_caller
from webapp.permissions import WEBSOCKET_PERMISSIONS
from webapp.security import is_own_origin

log = logging.getLogger(__name__)
router = APIRouter()

MAX_MESSAGE_BYTES = 4096
CREDENTIAL_CHECK_S = 1.0  # how often an open socket re-checks its session or token (disable/reset end it)
MAX_ERRORS_PER_S = 20
MAX_MESSAGES_PER_S = 300
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


Axis = Annotated[float, Field(ge=-1.0, le=1.0)]


class Hello(_Msg):
    type: Literal["hello"]
    control: bool = False


class Acquire(_Msg):
    type: Literal["acquire"]


class Release(_Msg):
    type: Literal["release"]


class Cmd(_Msg):
    type: Literal["cmd"]
    seq: int = Field(ge=0, le=2**53)
    vx: Axis = 0.0
    vy: Axis = 0.0
    vz: Axis = 0.0
    yaw: Axis = 0.0
    gripper: float = Field(default=0.0, ge=0.0, le=1.0)
    speed: float = Field(default=1.0, gt=0.0, le=1.0)


class Ping(_Msg):
    type: Literal["ping"]
    t: float


ClientMessage = TypeAdapter(Annotated[Hello | Acquire | Release | Cmd | Ping, Field(discriminator="type")])


def parse_message(text: str) -> Hello | Acquire | Release | Cmd | Ping:
    """Validate one client message; raises ValueError with a short reason."""
    if len(text) > MAX_MESSAGE_BYTES or len(text.encode()) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        return ClientMessage.validate_json(text)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{where}: {first['msg']}" if where else first["msg"]) from None


def _finite(values: list[float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values]


_packed: tuple[Any, bytes] | None = None  # (frame, message): every viewer of a tick shares one packed message


def pack_frame(frame) -> bytes:
    """[u32 header length][JSON header][JPEGs] (see the module docstring); built once per frame."""
    global _packed
    cached = _packed
    if cached is not None and cached[0] is frame:
        return cached[1]
    header = {
        "tick": frame.tick,
        "time": frame.time,
        "last_command_seq": frame.last_command_seq,
        "state": _finite([float(v) for v in frame.state]),
        "status": frame.status,
        "cameras": [[name, len(data)] for name, data in frame.jpeg.items()],
    }
    if frame.overlay is not None:
        header["overlay"] = frame.overlay
    head = json.dumps(header, separators=(",", ":"), default=str).encode()
    message = b"".join([struct.pack(">I", len(head)), head, *frame.jpeg.values()])
    _packed = (frame, message)
    return message


def unpack_frame(message: bytes) -> tuple[dict, dict[str, bytes]]:
    """The inverse of pack_frame (tests and benchmarks)."""
    (n,) = struct.unpack_from(">I", message)
    header = json.loads(message[4 : 4 + n])
    images, at = {}, 4 + n
    for name, length in header["cameras"]:
        images[name] = message[at : at + length]
        at += length
    return header, images


class _Connection:
    def __init__(self, ws: WebSocket, robot: RobotSession, user: UserInfo, audit: Auditor) -> None:
        self.ws, self.robot, self.user, self.audit = ws, robot, user, audit
        self.client_id = uuid.uuid4().hex
        self.greeted = False
        self.holds_lease = False  # as far as this socket knows (an expiry or a break frees it behind its back)
        self.send_lock = asyncio.Lock()
        self._errors: list[float] = []
        self._messages: list[float] = []
        self.unpackable = 0  # frames skipped because their header could not be packed

    async def send_json(self, payload: dict) -> None:
        async with self.send_lock:
            await self.ws.send_text(json.dumps(payload))

    def _over(self, stamps: list[float], limit: int) -> bool:
        now = time.monotonic()
        stamps.append(now)
        while stamps and stamps[0] < now - 1.0:
            stamps.pop(0)
        return len(stamps) > limit

    async def reject(self, detail: str) -> bool:
        """Reply with an error; True when the client has crossed the abuse limit and was closed."""
        if self._over(self._errors, MAX_ERRORS_PER_S):
            log.warning("ws %s: too many bad messages, closing", self.client_id)
            await self.ws.close(code=POLICY_VIOLATION, reason="too many bad messages")
            return True
        await self.send_json({"type": "error", "detail": detail})
        return False

    async def watch_credentials(self, every_s: float) -> None:
        """Close the socket once its credentials stop being valid (the user disabled, the password reset, the token
        revoked, the session expired): the sign-in check a REST call makes on every request, here every `every_s`."""
        while True:
            await asyncio.sleep(every_s)
            caller = await asyncio.to_thread(get_caller, self.ws)  # a database read: off the event loop
            if caller.user is None or caller.user.name != self.user.name:
                log.info("ws %s: %s's credentials ended, closing", self.client_id, self.user.name)
                await self.ws.close(code=POLICY_VIOLATION, reason="signed out")
                return

    async def send_frames(self) -> None:
        """Every frame the loop publishes (latest only) until the socket goes away. A frame that cannot be packed is
        skipped and logged, and the stream goes on; any other failure closes the socket with 1011, so the client
        reconnects instead of sitting on an open socket that never sends another frame."""
        sub = self.robot.subscribe()
        try:
            while True:
                frame = await sub.next()
                try:
                    data = pack_frame(frame)
                except (TypeError, ValueError, RuntimeError):  # not JSON-able, or mutated while being packed
                    self.unpackable += 1
                    if self.unpackable == 1 or self.unpackable % 300 == 0:
                        log.exception("ws %s: skipped unpackable frame %d (%d so far)", self.client_id, frame.tick,
                                      self.unpackable)  # fmt: skip
                    continue
                async with self.send_lock:
                    await self.ws.send_bytes(data)
        except (WebSocketDisconnect, SubscriptionClosed, OSError):
            pass  # the socket went away; the receiver sees the disconnect and cleans up
        except Exception:
            if self.ws.application_state == WebSocketState.CONNECTED:  # not a send after close: a real failure
                log.exception("ws %s: frame stream failed; closing the socket", self.client_id)
                with contextlib.suppress(Exception):
                    await self.ws.close(code=INTERNAL_ERROR, reason="frame stream failed")
        finally:
            sub.close()

    def _holder(self) -> str | None:
        return self.robot.status().get("controller")

    async def acquire(self) -> None:
        if not allowed(self.user.role, Permission.ROBOT_CONTROL):
            detail = f"{self.user.role} may not {Permission.ROBOT_CONTROL}"
            await self.send_json({"type": "lease", "granted": False, "holder": self._holder(), "detail": detail})
            return
        try:
            self.robot.acquire_lease(self.client_id, self.user.name)
        except LeaseHeldError as error:
            await self.send_json({"type": "lease", "granted": False, "holder": self._holder(), "detail": str(error)})
            return
        if not self.holds_lease:
            self.holds_lease = True
            await asyncio.to_thread(self.audit, Action.CONTROL_TAKE, "robot")
        # Taking control means driving: switch to the teleop source (it may wait up to one tick, so off the loop).
        await asyncio.to_thread(self.robot.set_source, "teleop")
        await self.send_json({"type": "lease", "granted": True, "holder": self.user.name, "detail": "you control"})

    async def release(self, why: str) -> None:
        """Give the lease back (a release message or the socket closing); audited when this socket held it."""
        self.robot.release_lease(self.client_id)
        if self.holds_lease:
            self.holds_lease = False
            await asyncio.to_thread(self.audit, Action.CONTROL_RELEASE, "robot", why=why)

    async def handle(self, msg) -> None:
        if isinstance(msg, Cmd):
            command = TeleopCommand(
                seq=msg.seq, vx=msg.vx, vy=msg.vy, vz=msg.vz, yaw_rate=msg.yaw, gripper=msg.gripper, speed=msg.speed
            )
            try:
                self.robot.command(self.client_id, command)
            except NotControllerError as error:
                self.holds_lease = False  # expired or broken
                await self.send_json(
                    {"type": "lease", "granted": False, "holder": self._holder(), "detail": str(error)}
                )
            except ValueError as error:
                await self.reject(str(error))
        elif isinstance(msg, Ping):
            await self.send_json({"type": "pong", "t": msg.t})
        elif isinstance(msg, Hello):
            self.greeted = True
            await self.send_json(
                {"type": "welcome", "client_id": self.client_id, "cameras": list(self.robot.camera_names)}
            )
            if msg.control:
                await self.acquire()
        elif isinstance(msg, Acquire):
            if not self.greeted:
                await self.reject("say hello before asking for control")
            else:
                await self.acquire()
        elif isinstance(msg, Release):
            await self.release("released")
            await self.send_json({"type": "lease", "granted": False, "holder": self._holder(), "detail": "released"})

    async def receive(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if self._over(self._messages, MAX_MESSAGES_PER_S):
                await self.ws.close(code=POLICY_VIOLATION, reason="too many messages")
                return
            text = message.get("text")
            if text is None:
                if await self.reject("binary messages are not accepted; send JSON text"):
                    return
                continue
            try:
                msg = parse_message(text)
            except ValueError as error:
                if await self.reject(str(error)):
                    return
                continue
            try:
                await self.handle(msg)
            except RuntimeUnavailableError as error:  # the robot runtime is restarting: say so, keep the socket
                await self.send_json({"type": "error", "detail": str(error)})


@router.websocket("/ws/teleop")
async def teleop_socket(ws: WebSocket, robot: RobotSessionDep) -> None:
    if not is_own_origin(ws.scope):
        log.warning("ws: refused a handshake from origin %r", ws.headers.get("origin"))
        await ws.close(code=POLICY_VIOLATION, reason="foreign origin")
        return
    user = (await asyncio.to_thread(get_caller, ws)).user  # a database read: off the event loop
    if user is None or not allowed(user.role, WEBSOCKET_PERMISSIONS["/ws/teleop"]):
        await ws.close(code=POLICY_VIOLATION, reason="sign in first" if user is None else "not allowed")
        return
    await ws.accept()
    conn = _Connection(ws, robot, user, Auditor(get_auth(ws).audit, user.name, client_address(ws)))
    sender = asyncio.create_task(conn.send_frames())
    watcher = asyncio.create_task(conn.watch_credentials(CREDENTIAL_CHECK_S))
    try:
        await conn.receive()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        sender.cancel()
        watcher.cancel()
        await conn.release("disconnected")  # the arm holds still from here on
