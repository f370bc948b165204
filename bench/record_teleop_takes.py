"""Record real teleop takes through the console (keyboard and a fake gamepad) for the quality-rule tests.

    .venv/bin/python -m bench.record_teleop_takes [--out tests/data/teleop_takes] [--only kb_pick_1 gp_pick_2]

Starts the real server (`run.py serve`, sim robot, throwaway data dir) and headless Debian Chromium, opens the
Teleop tab, takes control and records each take the way an operator does: type a seed and press "Reset scene",
Enter to record, drive, Y (or N) to save. The page is driven only by what an operator sees and presses (placeholders,
button names, badge texts, keys), never by the console's JS internals, so it survives a rewrite of static/.

The "operator" is open-loop but aims at the real cube: a local SimRobot built with the same seed tells where the
instructed cube lies, and the key holds (or stick deflections) last as long as the distance needs at the console's
speed (0.25 m/s at full speed, a quarter with Shift), with a human's timing error, pauses and corrective taps.
Keyboard takes use W/A/S/D/R/F, Shift for the slow final approach, Q/E for yaw and Space for the gripper; gamepad
takes inject `navigator.getGamepads` (Playwright has none) returning a standard-mapping pad whose sticks follow
keyframes with ramps, snap-back releases and a little thumb noise. Two takes are bad on purpose (key mashing, a
wobbling stick) so the tests can check that real jerk is still flagged.

Writes one `<name>.parquet` per take with the columns storage/quality.py reads (timestamp, frame_index,
observation.state, action) and the take's kind, seed, fps and server-side flags in the schema metadata.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from serve import USERS, chromium, run_server, sign_in  # noqa: E402

OUT = ROOT / "tests" / "data" / "teleop_takes"
COLUMNS = ("timestamp", "frame_index", "observation.state", "action")
LINEAR_SPEED = 0.25  # m/s at full deflection and speed 100 % (TeleopSource.max_linear_speed)
YAW_RATE = 1.5  # rad/s (TeleopSource.max_yaw_rate)
SLOW = 0.25  # Shift
# RobotSession counters that say whether the loop kept up (a loaded machine drops ticks and starves the browser's
# 30 Hz timer, so keys held in wall time move the arm less and the 200 ms command timeout stops it mid-hold).
LOOP_COUNTERS = ("dropped_ticks", "overruns", "command_timeouts")


# ------------------------------------------------------------------------------------------------ the scene
@dataclass(frozen=True)
class Scene:
    """Where the instructed cube is relative to the tool, as the operator sees it on the cameras."""

    dx: float  # m, + = forward (W)
    dy: float  # m, + = left (A)
    dz: float  # m, + = up (R); negative: the grasp point is below the tool
    dyaw: float  # rad, + = Q


def scene_of(seed: int, task: str, colour: str) -> Scene:
    from backend.sim import SimConfig, SimRobot, make_task
    from backend.sim.expert import grasp_yaw

    with SimRobot(SimConfig(cameras=())) as robot:
        robot.reset_state(seed=seed, task=make_task(task, colour))
        tool = robot.ee_target()
        cube = robot.object_position(colour) + np.array([0.0, 0.0, 0.004])  # the expert's grasp point
        yaw = grasp_yaw(robot.physics.object_yaw(colour), tool.yaw)
        d = cube - tool.position
        return Scene(float(d[0]), float(d[1]), float(d[2]), float(yaw - tool.yaw))


# ------------------------------------------------------------------------------------------------ keyboard
Step = tuple  # ("hold", keys, seconds) | ("tap", key) | ("wait", seconds)


def keyboard_pick(s: Scene, rng: np.random.Generator, *, think_s: float = 0.0, diagonal: bool = False) -> list[Step]:
    """A pick by keys: reach over the cube, turn, descend (Shift for the last few cm), close, lift."""
    err = lambda: float(np.clip(rng.normal(1.0, 0.1), 0.75, 1.25))  # noqa: E731  a human's timing error
    pause = lambda lo=0.3, hi=0.8: ("wait", float(rng.uniform(lo, hi)))  # noqa: E731
    hold_for = lambda dist, speed=LINEAR_SPEED: abs(dist) / speed * err()  # noqa: E731
    x_key, y_key = ("KeyW" if s.dx > 0 else "KeyS"), ("KeyA" if s.dy > 0 else "KeyD")
    steps: list[Step] = [pause(0.6, 1.1)]
    if diagonal:  # both keys at once, then finish the longer axis
        both = min(hold_for(s.dx), hold_for(s.dy))
        steps.append(("hold", (x_key, y_key), both))
        rest_key, rest = (x_key, hold_for(s.dx) - both) if abs(s.dx) > abs(s.dy) else (y_key, hold_for(s.dy) - both)
        if rest > 0.1:
            steps.append(("hold", (rest_key,), rest))
    else:
        steps += [("hold", (x_key,), hold_for(s.dx)), pause(), ("hold", (y_key,), hold_for(s.dy))]
    steps.append(pause())
    if rng.random() < 0.7:  # a corrective tap after looking at the wrist camera
        key = str(rng.choice(["KeyW", "KeyS", "KeyA", "KeyD"]))
        steps += [("hold", (key,), float(rng.uniform(0.12, 0.3))), pause()]
    if abs(s.dyaw) > 0.1:
        steps += [("hold", ("KeyQ" if s.dyaw > 0 else "KeyE",), hold_for(s.dyaw, YAW_RATE)), pause()]
    if think_s:
        steps.append(("wait", think_s))  # the operator stops to think
    fine = 0.04  # the last 4 cm slowly
    steps += [("hold", ("KeyF",), hold_for(-s.dz - fine)), pause(0.2, 0.5)]
    steps += [("hold", ("Shift", "KeyF"), hold_for(fine, LINEAR_SPEED * SLOW)), pause(0.3, 0.6)]
    steps += [("tap", "Space"), pause(0.7, 1.0), ("hold", ("KeyR",), float(rng.uniform(0.6, 1.0))), pause(0.5, 0.9)]
    return steps


def keyboard_nudge(s: Scene, rng: np.random.Generator) -> list[Step]:
    """A short take (~3 s): a few nudges toward the cube, as when an operator tries the keys out."""
    x_key, y_key = ("KeyW" if s.dx > 0 else "KeyS"), ("KeyA" if s.dy > 0 else "KeyD")
    return [("wait", 0.5), ("hold", (x_key,), 0.7), ("wait", 0.3), ("hold", (y_key,), 0.5), ("wait", 0.4),
            ("hold", ("KeyF",), 0.6), ("wait", 0.3)]  # fmt: skip


def keyboard_mash(s: Scene, rng: np.random.Generator) -> list[Step]:
    """A bad take: the operator jiggles A/D and W/S in quick alternation (taps of 60-120 ms) around the cube."""
    steps: list[Step] = [pause_step(rng, 0.5, 0.8), ("hold", ("KeyW" if s.dx > 0 else "KeyS",), abs(s.dx) / 0.25)]
    for pair in (("KeyA", "KeyD"), ("KeyW", "KeyS"), ("KeyA", "KeyD"), ("KeyR", "KeyF")):
        for i in range(int(rng.integers(14, 20))):
            steps.append(("hold", (pair[i % 2],), float(rng.uniform(0.06, 0.12))))
            if rng.random() < 0.3:
                steps.append(pause_step(rng, 0.02, 0.06))
        steps.append(pause_step(rng, 0.3, 0.6))
    return steps


def pause_step(rng: np.random.Generator, lo: float, hi: float) -> Step:
    return ("wait", float(rng.uniform(lo, hi)))


def play_keys(page, steps: list[Step]) -> None:
    for step in steps:
        if step[0] == "wait":
            page.wait_for_timeout(step[1] * 1000)
        elif step[0] == "tap":
            page.keyboard.press(step[1])
        else:
            _, keys, seconds = step
            for k in keys:
                page.keyboard.down(k)
            page.wait_for_timeout(max(seconds, 0.03) * 1000)
            for k in reversed(keys):
                page.keyboard.up(k)


# ------------------------------------------------------------------------------------------------ gamepad
# Standard mapping as static/teleop/input.js reads it: axes[1] up = forward, axes[0] left = left, axes[3] up = up,
# axes[2] left = yaw +; button 0 (A) toggles the gripper. Stick "up"/"left" are negative values.
FAKE_PAD = """
(() => {
  const pad = { id: "fake standard gamepad (bench/record_teleop_takes.py)", index: 0, connected: true,
                mapping: "standard", timestamp: 0, axes: [0, 0, 0, 0],
                buttons: Array.from({ length: 17 }, () => ({ pressed: false, touched: false, value: 0 })) };
  let keys = null, t0 = 0, noise = 12345;
  const rand = () => ((noise = (noise * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
  // keys: [[t_s, ax0, ax1, ax2, ax3, button0], ...] sorted by time; axes interpolate linearly, buttons hold.
  window.__fakePad = { play(k) { keys = k; t0 = performance.now(); } };
  function sample() {
    if (!keys) return;
    const t = (performance.now() - t0) / 1000;
    let i = 0;
    while (i < keys.length - 1 && keys[i + 1][0] <= t) i++;
    const a = keys[i], b = keys[Math.min(i + 1, keys.length - 1)];
    const f = b[0] > a[0] ? Math.min(1, Math.max(0, (t - a[0]) / (b[0] - a[0]))) : 0;
    for (let j = 0; j < 4; j++) {
      const v = a[j + 1] + (b[j + 1] - a[j + 1]) * f;
      pad.axes[j] = Math.max(-1, Math.min(1, v + 0.01 * rand()));  // thumb noise, below the 0.15 dead zone
    }
    pad.buttons[0] = { pressed: a[5] > 0, touched: a[5] > 0, value: a[5] };
    pad.timestamp = performance.now();
  }
  Object.defineProperty(Navigator.prototype, "getGamepads", { configurable: true,
    value: function () { sample(); return [pad, null, null, null]; } });
})();
"""


@dataclass
class Pad:
    """Builds stick keyframes [t, ax0, ax1, ax2, ax3, button0] one gesture at a time."""

    t: float = 0.0
    axes: list[float] = field(default_factory=lambda: [0.0] * 4)
    keys: list[list[float]] = field(default_factory=lambda: [[0.0, 0, 0, 0, 0, 0]])

    def _key(self, button: float = 0.0) -> None:
        self.keys.append([round(self.t, 3), *self.axes, button])

    def wait(self, seconds: float) -> None:
        self.t += seconds
        self._key()

    def push(self, target: dict[int, float], ramp_s: float, hold_s: float, release_s: float) -> None:
        """Deflect axes to `target` over ramp_s, hold, then let go over release_s (~0.05 s: the stick snaps back)."""
        self.t += ramp_s
        for j, v in target.items():
            self.axes[j] = v
        self._key()
        self.wait(hold_s)
        self.t += release_s
        self.axes = [0.0] * 4
        self._key()

    def press_a(self) -> None:
        self._key()
        self.t += 0.12
        self._key(1.0)
        self.t += 0.01
        self._key()


def stick_for(dist: float, deflection: float, ramp_s: float, release_s: float, speed: float = LINEAR_SPEED) -> float:
    """Hold time so that a ramp, a hold and a release at `deflection` cover `dist` (ramps count half)."""
    return max(0.05, abs(dist) / (deflection * speed) - (ramp_s + release_s) / 2)


def gamepad_pick(s: Scene, rng: np.random.Generator) -> Pad:
    """A pick by sticks: a diagonal sweep over the cube, a yaw twist, a descent that eases off, A, lift."""
    pad = Pad()
    pad.wait(float(rng.uniform(0.6, 1.0)))
    m = float(rng.uniform(0.6, 0.95))  # deflection of the longer axis; the other is scaled to go diagonally
    longer = max(abs(s.dx), abs(s.dy))
    ramp, release = float(rng.uniform(0.15, 0.35)), float(rng.choice([0.05, 0.2]))
    hold = stick_for(longer, m, ramp, release) * float(np.clip(rng.normal(1.0, 0.08), 0.8, 1.2))
    sweep = {1: -np.sign(s.dx) * m * abs(s.dx) / longer, 0: -np.sign(s.dy) * m * abs(s.dy) / longer}
    pad.push(sweep, ramp, hold, release)
    pad.wait(float(rng.uniform(0.3, 0.7)))
    if rng.random() < 0.7:  # a small correction
        pad.push({int(rng.integers(0, 2)): float(rng.choice([-0.4, 0.4]))}, 0.1, float(rng.uniform(0.1, 0.25)), 0.05)
        pad.wait(float(rng.uniform(0.3, 0.6)))
    if abs(s.dyaw) > 0.1:
        pad.push({2: -np.sign(s.dyaw) * 0.7}, 0.15, stick_for(s.dyaw, 0.7, 0.15, 0.05, YAW_RATE), 0.05)
        pad.wait(float(rng.uniform(0.3, 0.6)))
    # Descend: full stick, then ease to a third for the last few cm (one continuous gesture).
    fast = stick_for(-s.dz - 0.04, 0.9, 0.2, 0.0)
    pad.t += 0.2
    pad.axes[3] = 0.9
    pad._key()
    pad.wait(fast)
    pad.t += 0.25
    pad.axes[3] = 0.3
    pad._key()
    pad.wait(0.04 / (0.3 * LINEAR_SPEED) - 0.15)
    pad.t += 0.1
    pad.axes = [0.0] * 4
    pad._key()
    pad.wait(float(rng.uniform(0.3, 0.6)))
    pad.press_a()
    pad.wait(float(rng.uniform(0.7, 1.0)))
    pad.push({3: -0.8}, 0.2, float(rng.uniform(0.5, 0.8)), 0.05)
    pad.wait(float(rng.uniform(0.5, 0.9)))
    return pad


def gamepad_wobble(s: Scene, rng: np.random.Generator) -> Pad:
    """A bad take: the left stick flicked back and forth (~3-4 Hz, full throw) as a nervous operator does."""
    pad = Pad()
    pad.wait(0.6)
    for axis in (0, 1, 0):
        for i in range(int(rng.integers(10, 14))):
            pad.t += float(rng.uniform(0.06, 0.1))
            pad.axes = [0.0] * 4
            pad.axes[axis] = 0.95 if i % 2 else -0.95
            pad._key()
            pad.wait(float(rng.uniform(0.02, 0.06)))
        pad.t += 0.05
        pad.axes = [0.0] * 4
        pad._key()
        pad.wait(float(rng.uniform(0.4, 0.7)))
    return pad


# ------------------------------------------------------------------------------------------------ the console
def open_teleop(browser, url: str, operator: str, *, gamepad: bool):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    if gamepad:
        context.add_init_script(FAKE_PAD)
    page = context.new_page()
    sign_in(page, url, operator)  # the takes are recorded under the signed-in operator's name
    page.get_by_role("tab", name="Teleop").click()
    page.locator("canvas").first.wait_for(timeout=30_000)  # frames are streaming
    auto_stop = page.get_by_label("stop on success")
    if auto_stop.is_checked():  # the operator ends each take with Y/N, as the takes are planned
        auto_stop.uncheck()
    page.get_by_role("button", name="Take control").click()
    page.get_by_text("you control", exact=True).wait_for(timeout=10_000)
    return page


def unfocus(page) -> None:
    page.locator("canvas").first.click()  # keys act only when no text box has focus


def reset_scene(page, seed: int) -> None:
    page.get_by_placeholder("seed (blank: new)").fill(str(seed))
    page.get_by_role("button", name="Reset scene").click()
    page.get_by_text(f"scene reset (seed {seed})").wait_for(timeout=10_000)
    unfocus(page)


def record(page, drive) -> tuple[int, float]:
    """Enter, drive(page), then Y if the task badge shows success else N; returns (episode id, seconds driven)."""
    page.keyboard.press("Enter")
    page.get_by_text(re.compile(r"REC \d")).wait_for(timeout=10_000)
    t0 = time.monotonic()
    drive(page)
    seconds = time.monotonic() - t0
    succeeded = "SUCCESS" in page.get_by_text(re.compile(r"^task: ")).inner_text()
    page.keyboard.press("KeyY" if succeeded else "KeyN")
    saved = page.get_by_text(re.compile(r"saved episode \d+"))
    saved.wait_for(timeout=30_000)
    return int(re.search(r"saved episode (\d+)", saved.inner_text()).group(1)), seconds


def drive(page, plan: list[Step] | Pad) -> None:
    if isinstance(plan, Pad):
        page.evaluate("keys => window.__fakePad.play(keys)", plan.keys)
        page.wait_for_timeout(plan.keys[-1][0] * 1000 + 300)
    else:
        play_keys(page, plan)


@dataclass(frozen=True)
class Take:
    name: str
    kind: str  # keyboard | gamepad | keyboard_bad | gamepad_bad
    seed: int
    plan: object  # (Scene, rng) -> list[Step] | Pad


TAKES = [
    Take("kb_pick_1", "keyboard", 11, lambda s, r: keyboard_pick(s, r)),
    Take("kb_pick_2", "keyboard", 12, lambda s, r: keyboard_pick(s, r, diagonal=True)),
    Take("kb_pick_3", "keyboard", 13, lambda s, r: keyboard_pick(s, r)),
    Take("kb_pick_4", "keyboard", 14, lambda s, r: keyboard_pick(s, r, diagonal=True)),
    Take("kb_think_pause", "keyboard", 15, lambda s, r: keyboard_pick(s, r, think_s=3.0)),
    Take("kb_short", "keyboard", 17, keyboard_nudge),
    Take("kb_mash", "keyboard_bad", 16, keyboard_mash),
    Take("gp_pick_1", "gamepad", 21, gamepad_pick),
    Take("gp_pick_2", "gamepad", 22, gamepad_pick),
    Take("gp_pick_3", "gamepad", 23, gamepad_pick),
    Take("gp_wobble", "gamepad_bad", 24, gamepad_wobble),
]


def save_take(server, episode_id: int, take: Take, out: Path, loop: dict) -> dict:
    ep = server.get(f"/api/episodes/{episode_id}")
    table = pq.read_table(server.data_dir / "episodes" / ep["dataset"] / ep["uid"] / "data.parquet")
    meta = {
        "kind": take.kind,
        "seed": take.seed,
        "fps": ep["fps"],
        "human_success": ep["human_success"],
        "flags_when_recorded": ep["quality_flags"],
        "loop": loop,
        "recorded_by": "bench/record_teleop_takes.py",
    }
    table = table.select(list(COLUMNS)).replace_schema_metadata({"teleop_take": json.dumps(meta)})
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / f"{take.name}.parquet", compression="zstd")
    return {**meta, "frames": table.num_rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", nargs="*", help="take names (default: all)")
    parser.add_argument(
        "--image-size", type=int, default=96, help="camera px: smaller keeps a loaded machine's loop at 30 Hz"
    )
    parser.add_argument("--attempts", type=int, default=3, help="tries per take while the loop falls behind")
    parser.add_argument(
        "--min-real-time", type=float, default=0.95, help="recorded frames / (seconds driven x fps) to accept"
    )
    args = parser.parse_args(argv)
    takes = [t for t in TAKES if not args.only or t.name in args.only]
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_server(
            Path(tmp) / "data",
            image_size=args.image_size,
            users={**USERS, "keyboard-op": "operator", "gamepad-op": "operator"},
        ) as server,
        chromium() as browser,
    ):
        status = server.get("/api/robot/status")
        task, colour = status["task"], status["colour"]
        pages = {}
        for take in takes:
            gamepad = take.kind.startswith("gamepad")
            if gamepad not in pages:
                if pages:  # one controller at a time: the previous page gives the lease back
                    old = pages.pop(not gamepad)
                    old.get_by_role("button", name="Release control").click()
                    old.context.close()
                operator = "gamepad-op" if gamepad else "keyboard-op"
                pages[gamepad] = open_teleop(browser, server.url, operator, gamepad=gamepad)
            page = pages[gamepad]
            plan = take.plan(scene_of(take.seed, task, colour), np.random.default_rng(take.seed))
            best = None  # (score, episode id, loop): the attempt whose loop kept up best
            for attempt in range(1, args.attempts + 1):
                reset_scene(page, take.seed)
                before = server.get("/api/robot/status")["counters"]
                episode_id, seconds = record(page, lambda p, plan=plan: drive(p, plan))
                after = server.get("/api/robot/status")["counters"]
                ep = server.get(f"/api/episodes/{episode_id}")
                frames = ep["length"]
                loop = {key: after[key] - before[key] for key in LOOP_COUNTERS}
                loop["real_time"] = round(frames / (seconds * ep["fps"]), 2)
                print(f"{take.name:15s} try {attempt}: {frames} frames in {seconds:.1f} s, loop {loop}", flush=True)
                score = (loop["command_timeouts"] == 0, min(loop["real_time"], 1.0))
                if best is None or score > best[0]:
                    best = (score, episode_id, loop)
                if score >= (True, args.min_real_time):
                    break
            _, episode_id, loop = best
            info = save_take(server, episode_id, take, args.out, loop)
            print(f"{'':15s} saved: success={info['human_success']} flags={sorted(info['flags_when_recorded'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
