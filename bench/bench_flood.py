"""Flood benchmark: does the robot loop (and a camera viewer) keep its rate while the web server is hammered?

    .venv/bin/python -m bench.bench_flood [--seconds 15] [--oversized-rps 2] [--body-mb 17] [--get-rps 50]

Starts the real dashboard (`run.py serve`, 224 px cameras) on a free port, opens one camera viewer on /ws/teleop
and measures, first with the server left alone and then while clients send oversized request bodies (anonymous,
as an attacker's would be: POST /api/episodes/bulk with a `--body-mb` JSON body, at `--oversized-rps`) and small
GETs (/api/robot/status at `--get-rps`, with an API token):
- the loop's ticks/s and dropped ticks, read from the frame headers the viewer receives (tick, counters);
- the viewer's frames/s and its longest gap between two frames (a stalled stream shows here);
- what the flood got back (status codes, or the connection closed under it) and the GETs' latency p50/p95.
Two servers side by side in one run: the default 1 MiB body limit, and the limit lifted (VLA_MAX_BODY_BYTES=1 GiB,
how every version before the limit behaved). Writes bench/results/flood.json with the machine it ran on.
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


class Viewer(threading.Thread):
    """A camera viewer on /ws/teleop: records (arrival time, tick, dropped_ticks) of every frame."""

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
                    counters = header["status"]["counters"]
                    self.frames.append((time.monotonic(), header["tick"], counters["dropped_ticks"]))

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
    """One server: a quiet phase, then the flood; the viewer's figures for both."""
    with (
        tempfile.TemporaryDirectory(prefix="bench_flood_") as tmp,
        run_server(Path(tmp) / "data", image_size=args.image_size) as server,
    ):
        url = urlparse(server.url)
        token = server.client("admin").post("/api/auth/tokens", {"name": "bench-flood"})["token"]
        viewer = Viewer(f"ws://{url.hostname}:{url.port}/ws/teleop", token)
        viewer.start()
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
        for w in workers:
            w.join(timeout=args.seconds + 60)
        flood = viewer.window(t_flood, time.monotonic())
        viewer.stop.set()
        viewer.join(timeout=5)
    return {
        "quiet": quiet,
        "flood": flood
        | {
            "oversized_outcomes": dict(outcomes),
            "status_gets": len(latencies),
            "status_get_ms_p50": round(percentile(latencies, 50, empty=float("nan")), 1),
            "status_get_ms_p95": round(percentile(latencies, 95, empty=float("nan")), 1),
        },
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
    # which is what every earlier version did (no limit: the 17 MB body was read and parsed).
    scenarios = {}
    for name, limit in (("body limit 1 MiB (default)", None), ("no body limit", str(2**30))):
        if limit is None:
            os.environ.pop("VLA_MAX_BODY_BYTES", None)
        else:
            os.environ["VLA_MAX_BODY_BYTES"] = limit
        scenarios[name] = run_scenario(args, body)
        print(name, json.dumps(scenarios[name]), flush=True)
    os.environ.pop("VLA_MAX_BODY_BYTES", None)
    result = {
        "config": vars(args) | {"body_bytes": len(body)},
        "scenarios": scenarios,
        "goals": {"loop_ticks_per_s_min": 29.0, "dropped_ticks": 0},
    }
    print(json.dumps(result, indent=2))
    print(f"wrote {write_result('flood', result)}")
    return result


if __name__ == "__main__":
    main()
