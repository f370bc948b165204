"""Browser benchmark: command-to-frame round trip measured by the console itself in headless Chromium.

    .venv/bin/python -m bench.bench_browser [--seconds 15] [--viewers 1 10] [--image-size 224]

The real server (`run.py serve`, sim robot, throwaway data dir) and one controller page that holds the lease and
sends commands at 30 Hz (its own timer, as an operator's browser does; R and F held in turn so the arm moves),
plus extra viewer pages for the 10-viewer case, and a case with 1 page + 9 plain WebSocket viewers (the
server's fan-out alone: on a 2-core machine, 10 Chromium renderers starve the sim of CPU). The round trip of each
command is computed in the browser (performance.now() at send of seq N -> first frame drawn with
last_command_seq >= N) and read from window.vlaTeleop. Reports p50/p95 per case and every page's drawn fps.
Writes bench/results/browser.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.machine import write_result
from vla_core.metrics import NEAREST_RANK, percentile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from serve import chromium, open_console, run_server  # noqa: E402

GOAL_P95_MS = 80.0


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank `q`-th percentile (q in [0, 100]), None for no samples."""
    return percentile(values, q, method=NEAREST_RANK, empty=None)


class SocketViewers:
    """`n` viewers as plain WebSocket clients on a thread: the server's fan-out without n browsers' CPU. They carry
    a signed-in user's session cookie (the socket refuses anyone else)."""

    def __init__(self, url: str, n: int, session_cookie: str) -> None:
        self.url, self.n, self.frames = url.replace("http", "ws") + "/ws/teleop", n, [0] * n
        self.headers = {"Cookie": f"vla_session={session_cookie}"}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _viewer(self, i: int) -> None:
        from websockets.asyncio.client import connect

        async with connect(self.url, max_size=2**24, additional_headers=self.headers) as ws:
            while not self._stop.is_set():
                try:
                    msg = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                self.frames[i] += isinstance(msg, bytes)

    async def _main(self) -> None:
        await asyncio.gather(*(self._viewer(i) for i in range(self.n)))

    def __enter__(self) -> SocketViewers:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def run_case(browser, server, pages_total: int, seconds: float, socket_viewers: int = 0) -> dict:
    url = server.url
    if socket_viewers:
        with SocketViewers(url, socket_viewers, server.client("viewer").cookie("vla_session")) as sv:
            time.sleep(1.0)
            f0, t0 = list(sv.frames), time.monotonic()
            case = run_case(browser, server, pages_total, seconds)
            dt = time.monotonic() - t0
            case["socket_viewers"] = socket_viewers
            case["fps_per_socket_viewer"] = [round((b - a) / dt, 1) for a, b in zip(f0, sv.frames, strict=True)]
            return case
    controller = open_console(browser, url, user="bench")  # signed in, as every page (tests/e2e/serve.py)
    viewers = [open_console(browser, url) for _ in range(pages_total - 1)]
    controller.click("#vla-control")
    controller.wait_for_function("window.vlaTeleop.lease === true", timeout=10_000)
    controller.click("#vla-cam-front")
    pages = [controller, *viewers]
    time.sleep(2.0)  # warm-up
    reset = "(() => { const s = window.vlaTeleop; s.latencies.length = 0; s.dropped = 0; return s.drawn; })()"
    drawn0 = [p.evaluate(reset) for p in pages]
    t0 = time.monotonic()
    key = "KeyR"
    while time.monotonic() - t0 < seconds:  # the arm goes up and down; commands flow at 30 Hz regardless
        controller.keyboard.down(key)
        controller.wait_for_timeout(1000)
        controller.keyboard.up(key)
        key = "KeyF" if key == "KeyR" else "KeyR"
    elapsed = time.monotonic() - t0
    stats = [p.evaluate("({drawn: window.vlaTeleop.drawn, dropped: window.vlaTeleop.dropped})") for p in pages]
    latencies = controller.evaluate("window.vlaTeleop.latencies.slice()")
    for p in pages:
        p.context.close()
    fps = [round((s["drawn"] - d0) / elapsed, 1) for s, d0 in zip(stats, drawn0, strict=True)]
    return {
        "pages": pages_total,
        "seconds": round(elapsed, 1),
        "round_trips": len(latencies),
        "latency_ms": {
            "p50": round(pct(latencies, 50), 1),
            "p95": round(pct(latencies, 95), 1),
            "mean": round(statistics.fmean(latencies), 1),
            "max": round(max(latencies), 1),
        },
        "fps_per_page": fps,
        "dropped_per_page": [s["dropped"] for s in stats],
        "meets_goal_p95": pct(latencies, 95) <= GOAL_P95_MS,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--viewers", type=int, nargs="+", default=[1, 10], help="pages in total per case (1 controls)")
    p.add_argument(
        "--socket-viewers", type=int, default=9, help="also run 1 page + this many plain WebSocket viewers (0: skip)"
    )
    p.add_argument("--image-size", type=int, default=224)
    args = p.parse_args(argv)
    cases = []
    with tempfile.TemporaryDirectory() as tmp, run_server(Path(tmp) / "data", image_size=args.image_size) as srv:
        with chromium() as browser:
            plan = [(n, 0) for n in args.viewers] + ([(1, args.socket_viewers)] if args.socket_viewers else [])
            for n, sockets in plan:
                before = srv.get("/api/robot/status")["counters"]
                case = run_case(browser, srv, n, args.seconds, sockets)
                after = srv.get("/api/robot/status")["counters"]
                # fps and tick times: the loop's recent window; overruns and dropped ticks: during this case.
                case["server"] = {k: after[k] for k in ("fps", "tick_ms_p50", "tick_ms_p95")}
                case["server"].update({k: after[k] - before[k] for k in ("overruns", "dropped_ticks")})
                cases.append(case)
                lat = case["latency_ms"]
                extra = f" + {sockets} socket viewers" if sockets else ""
                print(
                    f"{n:2d} page(s){extra}: round trip p50 {lat['p50']} ms, p95 {lat['p95']} ms "
                    f"(goal p95 <= {GOAL_P95_MS:.0f}); fps per page {case['fps_per_page']}",
                    flush=True,
                )
    path = write_result(
        "browser",
        {
            "what": "browser command-to-frame round trip (performance.now at send -> frame drawn), localhost",
            "image_size": args.image_size,
            "goal_p95_ms": GOAL_P95_MS,
            "cases": cases,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
