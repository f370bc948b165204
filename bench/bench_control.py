"""Control-loop benchmark: the 30 Hz RobotSession with two 224x224 cameras, recording, teleop and N viewers.

    .venv/bin/python -m bench.bench_control [--seconds 20] [--subscribers 1 10] [--image-size 224]

For each viewer count: a real SimRobot, a throwaway episode store, a teleop take being recorded (saved at the end),
a browser-like command stream (~30 Hz, jittered, on the asyncio loop) and N asyncio viewers that each take every
frame they can and JSON-encode its status (the websocket send stands in). Reports achieved loop fps, overruns and
dropped ticks, tick time p50/p95, frames received/skipped per viewer, server-side command-to-frame latency (from
the `command()` call to the publish of the first frame whose last_command_seq >= that seq) p50/p95, and process
CPU (all threads: loop, llvmpipe, x264 encoders) as % of one core and of the machine. Then, once, the loop rate
with one fast and one slow viewer while their event loop stalls for 0.4 s, and how long `stop()` takes (the
wall-clock checks the unit tests made before they ran on a fake clock). Writes bench/results/control.json.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import math
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from bench.machine import write_result  # noqa: E402
from vla_core.metrics import NEAREST_RANK, percentile  # noqa: E402


def _pct(values: list[float], q: float) -> float:
    """Nearest-rank `q`-th percentile (q in [0, 100]), NaN for no samples."""
    return percentile(values, q, method=NEAREST_RANK, empty=math.nan)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_scenario(robot, store, *, seconds: float, subscribers: int, seed: int = 0) -> dict:
    from backend.control import RobotSession, TeleopCommand

    session = RobotSession(robot, store, control_hz=robot.control_hz, stats_window=100_000)
    session.reset(seed=seed, task="pick", colour="red")
    publishes: list[tuple[float, int]] = []  # (monotonic at publish, last_command_seq)
    session.hub.add_tap(
        lambda f: publishes.append((time.monotonic(), -1 if f.last_command_seq is None else f.last_command_seq))
    )
    session.acquire_lease("bench-client", "bench")
    session.start_recording("bench", "bench_control")
    session.start()
    time.sleep(0.5)  # warm-up: first renders, encoder start-up
    sent: dict[int, float] = {}

    async def main() -> list[dict]:
        subs = [session.subscribe() for _ in range(subscribers)]
        stop_at = time.monotonic() + seconds

        async def viewer(sub) -> None:
            while time.monotonic() < stop_at:
                try:
                    frame = await sub.next(timeout=1.0)
                except TimeoutError:
                    continue
                json.dumps(frame.status)  # what a websocket send would serialise
                await asyncio.sleep(0)

        async def controller() -> None:
            rng = random.Random(seed)
            seq = 0
            t0 = time.monotonic()
            while time.monotonic() < stop_at:
                seq += 1
                t = time.monotonic() - t0
                c = TeleopCommand(
                    seq=seq,
                    vx=0.6 * math.sin(0.9 * t),
                    vy=0.6 * math.cos(0.7 * t),
                    vz=0.5 * math.sin(1.3 * t),
                    yaw_rate=0.3 * math.sin(0.5 * t),
                    gripper=0.5 + 0.5 * math.sin(0.4 * t),
                )
                sent[seq] = time.monotonic()
                session.command("bench-client", c)
                await asyncio.sleep(rng.uniform(0.8, 1.2) / 30)

        await asyncio.gather(controller(), *(viewer(s) for s in subs))
        out = [{"received": s.received, "skipped": s.skipped} for s in subs]
        for s in subs:
            s.close()
        return out

    st0 = session.status()
    ticks0, dropped0, overruns0 = st0["tick"], session.dropped_ticks, session.overruns
    n_tick_ms0 = len(session.tick_durations_ms())
    pub0 = len(publishes)
    cpu0, wall0 = _cpu_s(), time.monotonic()
    per_sub = asyncio.run(main())
    cpu1, wall1 = _cpu_s(), time.monotonic()
    st1 = session.status()
    ticks = st1["tick"] - ticks0
    frames_recorded = st1["recording"]["frames"]
    t_save = time.monotonic()
    episode_id = session.save_recording(True)
    save_s = time.monotonic() - t_save
    session.stop()

    # Command-to-frame latency: for each command, the first publish at/after the call whose seq covers it.
    pubs = publishes[pub0:]
    pub_times = [p[0] for p in pubs]
    latencies = []
    for seq, t_call in sent.items():
        i = bisect.bisect_left(pub_times, t_call)
        while i < len(pubs) and pubs[i][1] < seq:
            i += 1
        if i < len(pubs):
            latencies.append((pubs[i][0] - t_call) * 1000)
    tick_ms = session.tick_durations_ms()[n_tick_ms0:]
    wall = wall1 - wall0
    cpu = cpu1 - cpu0
    return {
        "subscribers": subscribers,
        "seconds": round(wall, 2),
        "loop_fps": round(ticks / wall, 2),
        "ticks": ticks,
        "dropped_ticks": session.dropped_ticks - dropped0,
        "overruns": session.overruns - overruns0,
        "tick_ms_p50": round(_pct(tick_ms, 50), 2),
        "tick_ms_p95": round(_pct(tick_ms, 95), 2),
        "tick_ms_max": round(max(tick_ms), 2) if tick_ms else None,
        "per_subscriber": per_sub,
        "subscriber_received_min": min(s["received"] for s in per_sub),
        "subscriber_skipped_max": max(s["skipped"] for s in per_sub),
        "commands_sent": len(sent),
        "command_to_frame_ms_p50": round(_pct(latencies, 50), 1),
        "command_to_frame_ms_p95": round(_pct(latencies, 95), 1),
        "command_to_frame_ms_max": round(max(latencies), 1) if latencies else None,
        "cpu_percent_of_one_core": round(100 * cpu / wall, 1),
        "cpu_percent_of_machine": round(100 * cpu / wall / (os.cpu_count() or 1), 1),
        "recording": {
            "frames": frames_recorded,
            "episode_id": episode_id,
            "save_s": round(save_s, 2),
        },
        "safety_rejections": st1["counters"]["rejected"],
        "tick_errors": st1["counters"]["tick_errors"],
        "jpeg_bytes_per_frame": sum(len(j) for j in session.hub.latest.jpeg.values()),
        "mean_tick_ms": round(statistics.fmean(tick_ms), 2) if tick_ms else None,
    }


def run_slow_viewer(robot, store, *, seconds: float = 1.5, seed: int = 0) -> dict:
    """Loop rate with a viewer taking every frame, one taking a frame every 0.25 s and their event loop blocked
    for 0.4 s; then the time `stop()` takes to join the loop thread."""
    from backend.control import RobotSession

    session = RobotSession(robot, store, control_hz=robot.control_hz)
    session.reset(seed=seed, task="pick", colour="red")
    session.start()
    time.sleep(0.5)  # warm-up: first renders

    async def main() -> tuple[object, object, int, float]:
        fast, slow = session.subscribe(), session.subscribe()
        t0 = time.monotonic()
        stop_at = t0 + seconds
        ticks0 = session.status()["tick"]

        async def consume(sub, delay: float) -> None:
            while time.monotonic() < stop_at:
                try:
                    await sub.next(timeout=1.0)
                except TimeoutError:
                    continue
                if delay:
                    await asyncio.sleep(delay)

        async def block_event_loop() -> None:
            await asyncio.sleep(0.3)
            time.sleep(0.4)  # a stalled event loop must not stall the control loop

        await asyncio.gather(consume(fast, 0), consume(slow, 0.25), block_event_loop())
        wall = time.monotonic() - t0
        ticks = session.status()["tick"] - ticks0
        fast.close()
        slow.close()
        return fast, slow, ticks, wall

    fast, slow, ticks, wall = asyncio.run(main())
    status_fps = session.status()["counters"]["fps"]
    t_stop = time.monotonic()
    session.stop()
    stop_s = time.monotonic() - t_stop
    return {
        "seconds": round(wall, 2),
        "loop_fps": round(ticks / wall, 2),
        "status_fps": status_fps,
        "ticks": ticks,
        "fast_viewer": {"received": fast.received, "skipped": fast.skipped},
        "slow_viewer": {"received": slow.received, "skipped": slow.skipped},
        "stop_s": round(stop_s, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--subscribers", type=int, nargs="+", default=[1, 10])
    p.add_argument("--image-size", type=int, default=224)
    args = p.parse_args(argv)

    from backend.sim import SimConfig, SimRobot
    from storage.db import make_engine, make_session_factory, upgrade_database
    from storage.episode_store import EpisodeStore

    robot = SimRobot(SimConfig(image_size=args.image_size))
    scenarios = []
    with tempfile.TemporaryDirectory(prefix="bench_control_") as tmp:
        data = Path(tmp) / "data"
        engine = make_engine(f"sqlite:///{data / 'vla.db'}")
        upgrade_database(engine)
        store = EpisodeStore(data, make_session_factory(engine))
        for n in args.subscribers:
            r = run_scenario(robot, store, seconds=args.seconds, subscribers=n)
            scenarios.append(r)
            print(
                f"{n:>2} viewers: {r['loop_fps']:.2f} fps, dropped {r['dropped_ticks']}, overruns {r['overruns']}, "
                f"tick p50/p95 {r['tick_ms_p50']}/{r['tick_ms_p95']} ms, "
                f"cmd->frame p50/p95 {r['command_to_frame_ms_p50']}/{r['command_to_frame_ms_p95']} ms, "
                f"viewer received min {r['subscriber_received_min']} skipped max {r['subscriber_skipped_max']}, "
                f"CPU {r['cpu_percent_of_one_core']}% of a core ({r['cpu_percent_of_machine']}% of machine), "
                f"save {r['recording']['save_s']} s",
                flush=True,
            )
        slow_viewer = run_slow_viewer(robot, store)
        print(
            f"fast + slow viewer, 0.4 s event-loop stall: {slow_viewer['loop_fps']:.2f} fps, "
            f"fast {slow_viewer['fast_viewer']}, slow {slow_viewer['slow_viewer']}, stop {slow_viewer['stop_s']} s",
            flush=True,
        )
        engine.dispose()
    robot.close()
    config = {
        "seconds": args.seconds,
        "image_size": args.image_size,
        "cameras": list(robot.camera_names),
        "control_hz": robot.control_hz,
        "recording": True,
        "mujoco_gl": os.environ.get("MUJOCO_GL"),
        "jpeg": "Pillow (libjpeg-turbo), quality 80",
        "command_stream": "~30 Hz, +-20% jitter, on the viewers' asyncio loop",
    }
    goals = {
        "loop_fps_min": 30 * 0.99,
        "dropped_ticks": 0,
        "command_to_frame_ms_p95_max": 40,
        "slow_viewer_loop_fps_min": 30 * 0.85,
        "stop_s_max": 1.0,
    }
    result = {"config": config, "goals": goals, "scenarios": scenarios, "slow_viewer": slow_viewer}
    path = write_result("control", result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
