"""Flood benchmark: does the robot loop (and a camera viewer) keep its rate while the web server is hammered?

    .venv/bin/python -m bench.bench_flood [--seconds 15] [--oversized-rps 2] [--body-mb 17] [--get-rps 50]

Starts the real dashboard (`run.py serve`, 224 px cameras) on a free port, opens one camera viewer and one
controller on /ws/teleop and measures, first with the server left alone and then while clients send oversized
request bodies (anonymous, as an attacker's would be: POST /api/episodes/bulk with a `--body-mb` JSON body, at
`--oversized-rps`) and small GETs (/api/robot/status at `--get-rps`, with an API token):
- the loop's ticks/s and dropped ticks, read from the frame headers the viewer receives (tick, counters);
- the viewer's frames/s and its longest gap between two frames (a stalled stream shows here);
- what the flood got back (status codes, or the connection closed under it) and the GETs' latency p50/p95;
- the deadman under the flood: the controller drives at 30 Hz and falls silent at the end of it; the time from its
  last command to the first frame whose header says teleop stopped (frame times are the robot's CLOCK_MONOTONIC,
  the same clock as this process's) against the session's command timeout.
Four servers side by side in one run: the robot runtime in a process of its own (Settings.robot_process, the
default) or on a thread of the web server, each with the default 1 MiB body limit and with the limit lifted
(VLA_MAX_BODY_BYTES=1 GiB, how every version before the limit behaved). Writes bench/results/flood.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

from websockets.sync.client import connect

from bench.machine import write_result
from vla_core.metrics import percentile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from serve import run_server  # noqa: E402  (tests/e2e/serve.py: starts run.py serve)

COMMAND_HZ = 30


class Controller(threading.Thread):
    """The lease holder: sends teleop commands at COMMAND_HZ until `silence` is set, then nothing (a browser tab
    that froze); `last_sent` is the monotonic time of its last command."""

    def __init__(self, ws_url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.ws_url, self.token = ws_url, token
        self.silence, self.done, self.granted = threading.Event(), threading.Event(), threading.Event()
        self.last_sent: float | None = None

    def run(self) -> None:
        auth = {"Authorization": f"Bearer {self.token}"}
        with connect(self.ws_url, max_size=None, additional_headers=auth) as ws:
            ws.send(json.dumps({"type": "hello", "control": True}))
            while not self.granted.is_set():
                message = ws.recv(timeout=30.0)
                if isinstance(message, str) and json.loads(message).get("type") == "lease":
                    if not json.loads(message)["granted"]:
                        raise RuntimeError(f"no lease: {message}")
                    self.granted.set()
            seq, next_t = 0, time.monotonic()
            while not self.silence.is_set():
                seq += 1
                vz = 0.3 if (seq // COMMAND_HZ) % 2 else -0.3  # up and down, a second each: stays in the box
                ws.send(json.dumps({"type": "cmd", "seq": seq, "vx": 0, "vy": 0, "vz": vz, "yaw": 0, "gripper": 0}))
                self.last_sent = time.monotonic()
                next_t += 1.0 / COMMAND_HZ
                while (now := time.monotonic()) < next_t:  # drain replies, keep the pace
                    try:
                        ws.recv(timeout=next_t - now)
                    except TimeoutError:
                        break
            self.done.wait()  # silent, socket open: only the command timeout can stop the arm


class Viewer(threading.Thread):
    """A camera viewer on /ws/teleop: records (arrival time, tick, dropped_ticks, render time, teleop live) of
    every frame."""

    def __init__(self, ws_url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.ws_url, self.token, self.frames, self.stop = ws_url, token, [], threading.Event()

    def run(self) -> None:
        auth = {"Authorization": f"Bearer {self.token}"}  # a script's API token (the socket needs a signed-in user)
        with connect(self.ws_url, max_size=None, additional_headers=auth) as ws:
            ws.send(json.dumps({"type": "hello", "control": False}))
            while not self.stop.is_set():
                try:
                    message = ws.recv(timeout=1.0)
                except TimeoutError:
                    continue
                if isinstance(message, bytes):
                    (n,) = struct.unpack(">I", message[:4])
                    header = json.loads(message[4 : 4 + n])
                    status = header["status"]
                    self.frames.append((time.monotonic(), header["tick"], status["counters"]["dropped_ticks"],
                                        header["time"], status["teleop"]["live"]))  # fmt: skip

    def stopped_after(self, t_last: float, timeout: float = 10.0) -> float | None:
        """Seconds from `t_last` (the controller's last command) to the render time of the first frame that shows
        teleop no longer live; None if none arrives within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            later = [f for f in list(self.frames) if f[3] > t_last and not f[4]]
            if later:
                return round(later[0][3] - t_last, 3)
            time.sleep(0.05)
        return None

    def window(self, t0: float, t1: float) -> dict:
        """Loop and stream figures over the frames that arrived in [t0, t1]."""
        f = [x for x in self.frames if t0 <= x[0] <= t1]
        if len(f) < 2:
            return {"frames": len(f), "loop_ticks_per_s": 0.0, "viewer_fps": 0.0, "max_gap_s": t1 - t0}
        span = f[-1][0] - f[0][0]
        gaps = [b[0] - a[0] for a, b in zip(f, f[1:], strict=False)]
        return {
            "frames": len(f),
            "loop_ticks_per_s": round((f[-1][1] - f[0][1]) / span, 2),
            "dropped_ticks": f[-1][2] - f[0][2],
            "viewer_fps": round((len(f) - 1) / span, 2),
            "max_gap_s": round(max(gaps), 3),
        }


def paced(rate: float, until: float, fn) -> None:
    """Call fn() about `rate` times per second until `until` (monotonic)."""
    next_t = time.monotonic()
    while (now := time.monotonic()) < until:
        if now < next_t:
            time.sleep(next_t - now)
        next_t += 1.0 / rate
        fn()


def oversized_post(host: str, port: int, body: bytes, outcomes: Counter) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("POST", "/api/episodes/bulk", body=body, headers={"Content-Type": "application/json"})
        outcomes[str(conn.getresponse().status)] += 1
    except (ConnectionError, http.client.HTTPException, TimeoutError) as error:
        outcomes[f"closed ({type(error).__name__})"] += 1  # refused mid-body: what a size limit may do
    finally:
        conn.close()


def small_get(host: str, port: int, token: str, latencies_ms: list[float]) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    t0 = time.perf_counter()
    try:
        conn.request("GET", "/api/robot/status", headers={"Authorization": f"Bearer {token}"})
        conn.getresponse().read()
        latencies_ms.append((time.perf_counter() - t0) * 1000)
    finally:
        conn.close()


def run_scenario(args, body: bytes) -> dict:
    """One server: a quiet phase, then the flood (the controller falls silent at its end); the viewer's figures for
    both and the deadman's."""
    with (
        tempfile.TemporaryDirectory(prefix="bench_flood_") as tmp,
        run_server(Path(tmp) / "data", image_size=args.image_size) as server,
    ):
        url = urlparse(server.url)
        token = server.client("admin").post("/api/auth/tokens", {"name": "bench-flood"})["token"]
        viewer = Viewer(f"ws://{url.hostname}:{url.port}/ws/teleop", token)
        controller = Controller(f"ws://{url.hostname}:{url.port}/ws/teleop", token)
        viewer.start()
        controller.start()
        if not controller.granted.wait(30.0):
            raise RuntimeError("the controller got no lease")
        time.sleep(3.0)  # warm up: the stream is flowing
        t_quiet = time.monotonic()
        time.sleep(args.seconds)
        quiet = viewer.window(t_quiet, time.monotonic())

        outcomes: Counter = Counter()
        latencies: list[float] = []
        t_flood = time.monotonic()
        until = t_flood + args.seconds
        workers = [
            threading.Thread(target=paced, args=(args.oversized_rps / 2, until, lambda: oversized_post(
                url.hostname, url.port, body, outcomes)), daemon=True)  # fmt: skip
            for _ in range(2)
        ] + [threading.Thread(target=paced, args=(args.get_rps, until, lambda: small_get(
            url.hostname, url.port, token, latencies)), daemon=True)]  # fmt: skip
        for w in workers:
            w.start()
        time.sleep(max(0.0, until - time.monotonic() - 1.0))
        controller.silence.set()  # a second before the flood ends: the deadman must work under it
        time.sleep(0.2)
        stop_s = viewer.stopped_after(controller.last_sent)
        for w in workers:
            w.join(timeout=args.seconds + 60)
        flood = viewer.window(t_flood, time.monotonic())
        status = server.get("/api/robot/status")
        controller.done.set()
        viewer.stop.set()
        viewer.join(timeout=5)
        controller.join(timeout=5)
    return {
        "quiet": quiet,
        "flood": flood
        | {
            "oversized_outcomes": dict(outcomes),
            "status_gets": len(latencies),
            "status_get_ms_p50": round(percentile(latencies, 50, empty=float("nan")), 1),
            "status_get_ms_p95": round(percentile(latencies, 95, empty=float("nan")), 1),
            "deadman_stop_after_last_command_s": stop_s,
            "command_timeouts": status["counters"]["command_timeouts"],
        },
        "robot_process": "runtime" in status,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per phase")
    parser.add_argument("--oversized-rps", type=float, default=2.0)
    parser.add_argument("--body-mb", type=float, default=17.0)
    parser.add_argument("--get-rps", type=float, default=50.0)
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args(argv)
    # A bulk edit padded to the size asked for: valid JSON, so only a size limit can refuse it early.
    body = json.dumps({"op": "trash", "episode_ids": [1], "pad": " " * int(args.body_mb * 2**20)}).encode()
    # Side by side in one run: the product as shipped (1 MiB body limit) and the same server with the limit lifted,
    # which is what every earlier version did (no limit: the 17 MB body was read and parsed); each with the robot
    # runtime in its own process (the default) and on a thread of the web server (VLA_ROBOT_PROCESS=false).
    scenarios = {}
    for where, process in (("runtime process", "true"), ("in the web server", "false")):
        for limit_name, limit in (("body limit 1 MiB (default)", None), ("no body limit", str(2**30))):
            os.environ["VLA_ROBOT_PROCESS"] = process
            if limit is None:
                os.environ.pop("VLA_MAX_BODY_BYTES", None)
            else:
                os.environ["VLA_MAX_BODY_BYTES"] = limit
            name = f"{where}, {limit_name}"
            scenarios[name] = run_scenario(args, body)
            print(name, json.dumps(scenarios[name]), flush=True)
    os.environ.pop("VLA_MAX_BODY_BYTES", None)
    os.environ.pop("VLA_ROBOT_PROCESS", None)
    result = {
        "config": vars(args) | {"body_bytes": len(body)},
        "scenarios": scenarios,
        "goals": {
            "loop_ticks_per_s_min": 29.0,
            "dropped_ticks": 0,
            "deadman_stop_s_max": "command timeout 0.2 s + one tick",
        },
    }
    print(json.dumps(result, indent=2))
    print(f"wrote {write_result('flood', result)}")
    return result


if __name__ == "__main__":
    main()
