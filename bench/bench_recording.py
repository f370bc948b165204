"""Recording benchmark: a real-time 30 Hz episode with two 224x224 cameras through the episode store.

    .venv/bin/python -m bench.bench_recording [--seconds 30] [--runs 3] [--render-ms 0 7]

Each tick gets its frames from ``frame_source(tick) -> (images, state, action)`` *inside* the 33 ms budget (the
MuJoCo sim plugs in here later), then calls ``add_frame``; the loop sleeps to the next tick. A tick whose work ends
after its deadline counts as missed; if the loop falls a whole tick behind, the skipped ticks are lost frames
(a real control loop skips rather than bunching up). ``--render-ms`` emulates render cost per camera with a busy
loop that holds the GIL (the pessimistic case for the encoder threads). Writes bench/results/recording.json.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np

from bench.machine import machine_info, write_result
from storage.db import make_engine, make_session_factory, upgrade_database
from storage.episode_store import CameraSpec, EpisodeMeta, EpisodeStore
from vla_core.metrics import percentile

FrameSource = Callable[[int], tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]]

STATE_DIM = 7
ACTION_DIM = 7


def synthetic_source(cameras: list[CameraSpec], render_ms: float = 0.0, seed: int = 0) -> FrameSource:
    """Smooth scenes with motion (a scrolling gradient and a moving block per camera), like a sim render."""
    rng = np.random.default_rng(seed)
    bases = {}
    for cam in cameras:
        yy, xx = np.mgrid[0 : cam.height * 2, 0 : cam.width * 2].astype(np.float32)
        r = 120 + 80 * np.sin(xx / 29.0) + rng.normal(0, 2, xx.shape)
        g = 110 + 70 * np.cos(yy / 37.0)
        b = 90 + 60 * np.sin((xx + yy) / 53.0)
        bases[cam.name] = np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)

    def source(t: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        images = {}
        for k, cam in enumerate(cameras):
            if render_ms > 0:  # emulated render: busy, holding the GIL
                end = time.perf_counter() + render_ms / 1000
                while time.perf_counter() < end:
                    pass
            base = bases[cam.name]
            oy = int(cam.height / 2 + cam.height / 2 * math.sin(t / 40 + k))
            ox = int(cam.width / 2 + cam.width / 2 * math.cos(t / 55 + k))
            img = base[oy : oy + cam.height, ox : ox + cam.width].copy()
            by = int((cam.height - 32) * (0.5 + 0.5 * math.sin(t / 15)))
            bx = int((cam.width - 32) * (0.5 + 0.5 * math.cos(t / 21)))
            img[by : by + 32, bx : bx + 32] = (200, 30, 30)
            images[cam.name] = img
        state = np.sin(np.arange(STATE_DIM) + t / 30).astype(np.float32)
        action = np.cos(np.arange(ACTION_DIM) + t / 30).astype(np.float32)
        return images, state, action

    return source


def record_one(
    store: EpisodeStore,
    frame_source: FrameSource,
    cameras: list[CameraSpec],
    *,
    seconds: float,
    fps: int,
) -> dict[str, Any]:
    meta = EpisodeMeta(
        dataset="bench",
        task="pick",
        instruction="pick up the red cube",
        source="scripted",
        fps=fps,
        cameras=cameras,
        state_names=[f"s{i}" for i in range(STATE_DIM)],
        action_names=[f"a{i}" for i in range(ACTION_DIM)],
    )
    ticks = int(round(seconds * fps))
    dt = 1.0 / fps
    rec = store.begin(meta)
    latencies, tick_work = [], []
    missed = lost = 0
    t0 = time.perf_counter()
    tick = 0
    while tick < ticks:
        start = time.perf_counter()
        images, state, action = frame_source(tick)
        a = time.perf_counter()
        rec.add_frame(images=images, state=state, action=action)
        done = time.perf_counter()
        latencies.append(done - a)
        tick_work.append(done - start)
        deadline = t0 + (tick + 1) * dt
        if done > deadline:
            missed += 1
        nxt = tick + 1
        behind = int((done - t0) / dt)  # the tick the wall clock is in now
        if behind > nxt:
            lost += min(behind, ticks) - nxt  # ticks that never got a frame
            nxt = behind
        tick = nxt
        sleep = t0 + tick * dt - time.perf_counter()
        if sleep > 0 and tick < ticks:
            time.sleep(sleep)
    record_wall = time.perf_counter() - t0
    backlog_at_stop = {name: s["backlog"] for name, s in rec.stats.items()}
    t_stop = time.perf_counter()
    episode_id = rec.save(auto_success=None)
    stop_to_saved = time.perf_counter() - t_stop
    stats = rec.stats
    files = store.episode_files(episode_id)
    sizes = {"table": files.table.stat().st_size} | {f"video_{k}": p.stat().st_size for k, p in files.videos.items()}
    lat_ms = np.asarray(latencies) * 1000
    work_ms = np.asarray(tick_work) * 1000
    return {
        "ticks": ticks,
        "frames_recorded": rec.num_frames,
        "ticks_missed_deadline": missed,
        "frames_lost": lost + rec.frames_dropped,
        "frames_dropped_total": missed + lost + rec.frames_dropped,
        "record_wall_s": round(record_wall, 3),
        "add_frame_ms": {
            "p50": round(percentile(lat_ms, 50), 3),
            "p95": round(percentile(lat_ms, 95), 3),
            "p99": round(percentile(lat_ms, 99), 3),
            "max": round(float(lat_ms.max()), 3),
        },
        "tick_work_ms": {"p50": round(float(np.median(work_ms)), 3), "max": round(float(work_ms.max()), 3)},
        "encoder_backlog_at_stop": backlog_at_stop,
        "encoder_max_backlog": {k: s["max_backlog"] for k, s in stats.items()},
        "encode_ms_per_frame": {k: round(1000 * s["encode_s"] / max(1, s["encoded"]), 3) for k, s in stats.items()},
        "stop_to_saved_s": round(stop_to_saved, 4),
        "file_bytes": sizes,
        "total_mb": round(sum(sizes.values()) / 1e6, 3),
    }


def sim_source(cameras: list[CameraSpec]) -> FrameSource:
    """The real thing: the MuJoCo arm under the scripted pick expert, both cameras rendered every tick.

    One episode, as an operator records it: the expert picks the cube (about 3 s) and then holds it for the rest
    of the 30 s, so every tick pays for physics, IK and two renders, and no scene reset falls inside the recording.
    """
    from backend.sim import SimConfig, SimRobot, make_expert, make_task

    robot = SimRobot(SimConfig(image_size=cameras[0].height, cameras=tuple(c.name for c in cameras)))
    task = make_task("pick", colour="red")
    expert = make_expert(task)
    robot.reset(seed=0, task=task)
    expert.reset(robot)
    robot.observe()  # creates the EGL context and renderer: a one-time start-up cost, not a per-tick one

    def source(t: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        observation = robot.observe()
        action = expert.act(robot)  # after its last waypoint the expert holds the pose
        robot.apply(action)
        return observation.images, observation.state, action

    return source


def run_benchmark(
    frame_source_factory: Callable[[list[CameraSpec]], FrameSource] | None = None,
    *,
    seconds: float = 30.0,
    fps: int = 30,
    size: int = 224,
    runs: int = 3,
    render_ms: float = 0.0,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """Record ``runs`` episodes in a throwaway store and summarise. ``frame_source_factory(cameras)`` builds the
    frame source (default: synthetic frames with ``render_ms`` of emulated render per camera)."""
    cameras = [CameraSpec("front", size, size), CameraSpec("wrist", size, size)]
    factory = frame_source_factory or (lambda cams: synthetic_source(cams, render_ms=render_ms))
    with tempfile.TemporaryDirectory(prefix="bench_recording_", dir=data_dir) as tmp:
        engine = make_engine(f"sqlite:///{tmp}/vla.db")
        upgrade_database(engine)
        store = EpisodeStore(Path(tmp), make_session_factory(engine))
        store.recover()
        per_run = []
        for r in range(runs):
            res = record_one(store, factory(cameras), cameras, seconds=seconds, fps=fps)
            per_run.append(res)
            print(
                f"  run {r + 1}/{runs}: missed {res['ticks_missed_deadline']}, lost {res['frames_lost']}, "
                f"add_frame p50 {res['add_frame_ms']['p50']} ms p95 {res['add_frame_ms']['p95']} ms, "
                f"stop->saved {res['stop_to_saved_s']} s, {res['total_mb']} MB",
                flush=True,
            )
        problems = store.check()
        engine.dispose()
    return {
        "config": {
            "seconds": seconds,
            "fps": fps,
            "cameras": [c.to_dict() for c in cameras],
            "runs": runs,
            "frame_source": "custom" if frame_source_factory else f"synthetic, emulated render {render_ms} ms/camera",
            "encoder": store.encoder.__dict__ | {"options": store.encoder.codec_options(fps)},
        },
        "summary": {
            "frames_dropped_total_max": max(r["frames_dropped_total"] for r in per_run),
            "ticks_missed_deadline_max": max(r["ticks_missed_deadline"] for r in per_run),
            "frames_lost_max": max(r["frames_lost"] for r in per_run),
            "add_frame_p50_ms_median": statistics.median(r["add_frame_ms"]["p50"] for r in per_run),
            "add_frame_p95_ms_median": statistics.median(r["add_frame_ms"]["p95"] for r in per_run),
            "stop_to_saved_s_median": statistics.median(r["stop_to_saved_s"] for r in per_run),
            "mb_per_episode_median": statistics.median(r["total_mb"] for r in per_run),
            "store_check_problems": problems,
        },
        "runs": per_run,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--size", type=int, default=224)
    p.add_argument(
        "--render-ms",
        type=float,
        nargs="+",
        default=[0.0],
        help="emulated render cost per camera; one scenario per value (7 ms ≈ MuJoCo 224² on llvmpipe)",
    )
    p.add_argument("--no-sim", action="store_true", help="skip the scenario with the real MuJoCo sim")
    p.add_argument("--name", default="recording", help="bench/results/<name>.json")
    args = p.parse_args(argv)
    scenarios = {}
    if not args.no_sim:
        os.environ.setdefault("MUJOCO_GL", "egl")
        print(f"scenario mujoco_sim: {args.runs} x {args.seconds:g} s, pick expert, 2 cameras rendered", flush=True)
        scenarios["mujoco_sim"] = run_benchmark(
            sim_source, seconds=args.seconds, fps=args.fps, size=args.size, runs=args.runs
        )
        scenarios["mujoco_sim"]["config"]["frame_source"] = "MuJoCo SimRobot + scripted pick expert, rendered"
    for ms in args.render_ms:
        key = f"render_{ms:g}ms_per_camera"
        print(f"scenario {key}: {args.runs} x {args.seconds:g} s at {args.fps} Hz, 2 cameras {args.size}²", flush=True)
        scenarios[key] = run_benchmark(seconds=args.seconds, fps=args.fps, size=args.size, runs=args.runs, render_ms=ms)
    info = machine_info() | {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "pyav": av.__version__,
        "ffmpeg_libavcodec": ".".join(map(str, av.library_versions.get("libavcodec", ()))),
        "python_executable": sys.executable,
    }
    path = write_result(args.name, {"machine_details": info, "scenarios": scenarios})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
