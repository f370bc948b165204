"""The 30 Hz loop with a policy driving and its overlays on, side by side with teleop alone, in one run.

    .venv/bin/python -m bench.bench_policy_loop [--seconds 20] [--image-size 224]

Both scenarios: a real SimRobot (two cameras at --image-size), a RobotSession on its own loop thread, a teleop take
being recorded, one asyncio viewer that packs every frame it gets exactly as the /ws/teleop socket does
(webapp.ws.pack_frame: JSON header with status and, while the policy drives, the overlay, then the JPEGs).
- "teleop": a browser-like command stream (~30 Hz, jittered) drives; command-to-frame latency is measured.
- "policy (thread)" and "policy (process)": the default vla_tiny (untrained: the same network, so the same
  inference cost as a trained one) drives through PolicySource with asynchronous inference, on a thread of the
  loop's process or served from a process of its own (backend.control.policy_process, the dashboard's default).
  The console's command stream keeps arriving (it is not applied while the policy drives, so there is no
  command-to-frame latency to time: the interval between published frames stands for what the viewer sees).
Every scenario runs on an idle machine and again with --busy processes spinning on a core each (a training job
next to the robot). Reports loop fps, dropped ticks, overruns, tick p50/p95, frame interval p50/p95, the frame
header's size, the policy's latency p50/p95, the age of the chunk being executed, and this process's CPU.
Writes bench/results/policy_loop.json.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

from bench.machine import write_result  # noqa: E402
from vla_core.metrics import NEAREST_RANK, percentile  # noqa: E402


def _pct(values, q):
    return percentile(values, q, method=NEAREST_RANK, empty=math.nan)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def default_policy_source(threads: int, process: bool, folder: Path):
    """The default vla_tiny config (two cameras, 96 px, 8 ensemble heads) behind an asynchronous PolicySource, its
    inference on a thread of this process or served from a process of its own (backend.control.policy_process)."""
    import torch

    from backend.control.policy_source import ModelInfo, PolicySource
    from vla_core.inference import Policy
    from vla_core.policies import make_policy

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = make_policy("vla_tiny").eval()
    with torch.no_grad():  # small joint steps, so the safety filter passes the actions and the arm moves smoothly
        model.action_std.fill_(0.003)
    if process:
        from backend.control.policy_process import ProcessPolicy

        model.save_pretrained(folder)
        policy = ProcessPolicy(folder, cameras=model.config.cameras, config=model.config, threads=threads)
    else:
        policy = Policy(model)
    return PolicySource(policy, model=ModelInfo(id=None, name="vla_tiny-default", threshold=None), asynchronous=True)


def run(robot, store, *, seconds: float, policy: str | None, threads: int, tmp: Path, seed: int = 0) -> dict:
    from backend.control import RobotSession, TeleopCommand
    from webapp.ws import pack_frame

    session = RobotSession(robot, store, control_hz=robot.control_hz, stats_window=100_000)
    session.reset(seed=seed, task="pick", colour="red")
    publishes: list[tuple[float, int]] = []
    session.hub.add_tap(
        lambda f: publishes.append((time.monotonic(), -1 if f.last_command_seq is None else f.last_command_seq))
    )
    session.acquire_lease("bench-client", "bench")
    source = None
    with_policy = policy is not None
    if with_policy:
        source = default_policy_source(threads, policy == "process", tmp / "model")
        session.set_policy(source)
        session.set_source("policy")
    session.start_recording("bench", "bench_policy_loop")
    session.start()
    time.sleep(1.0)  # warm-up: first renders, encoder start-up, the first predictions
    sent: dict[int, float] = {}
    header_bytes: list[int] = []
    overlay_frames = 0

    async def main() -> None:
        nonlocal overlay_frames
        sub = session.subscribe()
        stop_at = time.monotonic() + seconds

        async def viewer() -> None:
            nonlocal overlay_frames
            while time.monotonic() < stop_at:
                try:
                    frame = await sub.next(timeout=1.0)
                except TimeoutError:
                    continue
                message = pack_frame(frame)
                header_bytes.append(int.from_bytes(message[:4], "big"))
                overlay_frames += frame.overlay is not None
                await asyncio.sleep(0)

        async def controller() -> None:
            rng = random.Random(seed)
            seq, t0 = 0, time.monotonic()
            while time.monotonic() < stop_at:
                seq += 1
                t = time.monotonic() - t0
                sent[seq] = time.monotonic()
                session.command("bench-client", TeleopCommand(seq=seq, vx=0.5 * math.sin(0.9 * t),
                                                              vy=0.5 * math.cos(0.7 * t), vz=0.0, yaw_rate=0.0,
                                                              gripper=0.0))  # fmt: skip
                await asyncio.sleep(rng.uniform(0.8, 1.2) / 30)

        await asyncio.gather(controller(), viewer())
        sub.close()

    tick0, dropped0, overruns0 = session.status()["tick"], session.dropped_ticks, session.overruns
    n0, pub0 = len(session.tick_durations_ms()), len(publishes)
    cpu0, wall0 = _cpu_s(), time.monotonic()
    asyncio.run(main())
    cpu1, wall1 = _cpu_s(), time.monotonic()
    st = session.status()
    session.save_recording(True)
    session.stop()
    if source is not None:
        session.set_policy(None)
    pubs = publishes[pub0:]
    pub_times = [p[0] for p in pubs]
    latencies = []
    for seq, t_call in sent.items():
        i = bisect.bisect_left(pub_times, t_call)
        while i < len(pubs) and pubs[i][1] < seq:
            i += 1
        if i < len(pubs):
            latencies.append((pubs[i][0] - t_call) * 1000)
    tick_ms = session.tick_durations_ms()[n0:]
    intervals = [(b - a) * 1000 for a, b in zip(pub_times, pub_times[1:], strict=False)]
    wall = wall1 - wall0
    stats = st.get("policy") or {}
    return {
        "scenario": f"policy ({policy})" if with_policy else "teleop",
        "seconds": round(wall, 2),
        "loop_fps": round((st["tick"] - tick0) / wall, 2),
        "dropped_ticks": session.dropped_ticks - dropped0,
        "overruns": session.overruns - overruns0,
        "tick_ms_p50": round(_pct(tick_ms, 50), 2),
        "tick_ms_p95": round(_pct(tick_ms, 95), 2),
        "command_to_frame_ms_p50": None if with_policy else round(_pct(latencies, 50), 1),
        "command_to_frame_ms_p95": None if with_policy else round(_pct(latencies, 95), 1),
        "frame_interval_ms_p50": round(_pct(intervals, 50), 1),
        "frame_interval_ms_p95": round(_pct(intervals, 95), 1),
        "frames_with_overlay": overlay_frames,
        "frame_header_bytes_p50": int(_pct(header_bytes, 50)) if header_bytes else None,
        "policy_predictions": stats.get("predictions"),
        "policy_latency_ms_p50": stats.get("latency_ms_p50"),
        "policy_latency_ms_p95": stats.get("latency_ms_p95"),
        "chunk_age_ticks_last": stats.get("chunk_age_ticks"),
        # this process only: a policy served from its own process spends its CPU there, not here
        "cpu_percent_of_machine_this_process": round(100 * (cpu1 - cpu0) / wall / (os.cpu_count() or 1), 1),
        "tick_errors": st["counters"]["tick_errors"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=1, help="torch threads for inference (the loop keeps a core)")
    p.add_argument("--busy", type=int, default=1, help="also run every scenario with N processes spinning on a core "
                   "each (a machine busy with a training job); 0: only on an idle machine")
    args = p.parse_args(argv)

    from backend.sim import SimConfig, SimRobot
    from storage.db import make_engine, make_session_factory, upgrade_database
    from storage.episode_store import EpisodeStore

    robot = SimRobot(SimConfig(image_size=args.image_size))
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_policy_loop_") as tmp:
        data = Path(tmp) / "data"
        engine = make_engine(f"sqlite:///{data / 'vla.db'}")
        upgrade_database(engine)
        store = EpisodeStore(data, make_session_factory(engine))
        for busy in sorted({0, args.busy}):
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
            try:
                for policy in (None, "thread", "process"):
                    r = run(robot, store, seconds=args.seconds, policy=policy, threads=args.threads, tmp=Path(tmp))
                    r["busy_cores"] = busy
                    results.append(r)
                    print({k: r[k] for k in ("scenario", "busy_cores", "loop_fps", "dropped_ticks", "tick_ms_p95",
                                             "frame_interval_ms_p95", "policy_latency_ms_p95")}, flush=True)
            finally:
                for hog in hogs:
                    hog.kill()
                    hog.wait()
        engine.dispose()
    robot.close()
    result = {
        "config": {"seconds": args.seconds, "image_size": args.image_size, "cameras": list(robot.camera_names),
                   "policy": "vla_tiny default config, asynchronous inference (thread, then process)",
                   "torch_threads": args.threads},
        "goals": {"loop_fps_min": 30 * 0.99, "dropped_ticks": 0, "command_to_frame_ms_p95_max": 40},
        "scenarios": results,
    }  # fmt: skip
    print(f"wrote {write_result('policy_loop', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
