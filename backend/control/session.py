"""RobotSession: one robot, its fixed-rate control loop thread, the frame hub, the control lease and the recorder.

One tick (default 30 Hz, deadline-scheduled from the start time so it never drifts):

    action = e-stop ? hold : active source.act(obs)       # idle | teleop | expert | policy; None = hold
    action = safety filter(action)                        # joint, step, workspace limits; NaN/inf -> hold
    robot.apply(action); success = robot.success()
    obs = robot.observe()                                 # every camera rendered once
    recorder.add_frame(previous obs, action)              # (observation, the action actually taken from it)
    JPEG once per camera -> Frame(last_command_seq, status, policy overlay) -> hub.publish (never waits on a viewer)

The command is applied right before the render, so a frame's `last_command_seq` is the newest command whose effect
it shows, and command-to-frame latency is at most one tick period plus apply + render + encode.

Threads: the loop thread owns the robot; other threads (web requests) touch it only under `_robot_lock`, which the
loop holds for the apply + render part of a tick, so a reset or a source switch waits at most one tick. JPEG
encoding, status and publishing happen outside it.

The policy side (installing a policy source, take over / hand back / continue, overlays, the live rollout handed to
the rollout log) is the PolicyControl mixin in backend/control/session_policy.py.

Policies chosen here (documented for the webapp):
- `command()` from the lease holder while the source is "idle" switches to "teleop"; while the expert (or a
  policy) drives, commands are accepted but not applied until `set_source("teleop")`.
- `reset()` while recording discards the take (the scene it showed is gone); `stop()` discards one too.
- `save_recording`, `discard_recording`, `start_recording` and `reset` do file/DB work or wait up to one tick on
  the caller's thread: call them from a worker thread (a plain `def` FastAPI route, or `asyncio.to_thread`), not
  on the event loop. Store errors are re-raised to the caller *and* shown in status["last_error"]; errors inside
  the loop (a failing add_frame, an auto-stop save) are only reported there. The loop itself never stops on one.
- auto-stop: once the task's success predicate holds, recording continues for `auto_stop_settle_ticks` (10) more
  ticks, then the take is saved on a background thread with auto_success = human_success = True.

Headless (`headless=True`): nobody watches, so a tick encodes no JPEG, builds no status and publishes nothing;
with the loop thread never started, the caller runs `step()` as fast as it can. Closed-loop evaluation
(backend.services.evaluation) and scripted demos (backend.services.demos) drive the sim this way: the same tick,
safety filter, success predicate and recorder as the live robot, instead of loops of their own.

Time: `clock` (default time.monotonic, injectable as in ControlLease) is the session's time: a command's age (the
hold-still deadman), the lease, frame and take timestamps. The loop thread is paced, and its tick durations
measured, on the real monotonic clock: those are wall-time facts (bench/bench_control.py reports them).
"""

from __future__ import annotations

import io
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from backend.control.commands import CommandMailbox, Frame, TeleopCommand, validate_command
from backend.control.hub import FrameHub, FrameSubscription
from backend.control.lease import DEFAULT_LEASE_TIMEOUT_S, ControlLease
from backend.control.ratelog import RateLimitedLog
from backend.control.recording import episode_meta_from_robot
from backend.control.rollout_tracker import CORRECTING_SOURCES, RolloutTracker
from backend.control.safety import SafetyFilter, robot_forward_kinematics
from backend.control.session_policy import PolicyControl
from backend.control.sources import CommandSource, ExpertSource, IdleSource, TeleopSource
from vla_core.metrics import NEAREST_RANK, percentile

log = logging.getLogger(__name__)

MAX_INSTRUCTION_LEN = 500
MAX_OPERATOR_LEN = 100
AUTO_STOP_SETTLE_TICKS = 10  # the same settle as scripted demos (backend.services.demos)


class NoRecordingError(RuntimeError):
    """save_recording() with no take in progress."""


class RecordingActiveError(RuntimeError):
    """start_recording() while a take is in progress (save or discard it first)."""


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes (Pillow on libjpeg-turbo: ~1 ms at 224x224)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@dataclass
class _Take:
    recorder: object  # storage.episode_store.EpisodeRecorder
    operator: str
    dataset: str
    source: str  # episode source recorded (teleop | scripted | policy; intervention once an operator took over)
    started: float  # the session's clock
    sources_used: set[str] = field(default_factory=set)
    success_ever: bool = False
    ticks_since_success: int | None = None
    intervention_frames: int = 0  # frames an operator drove after the policy had
    interventions: int = 0  # takeovers (runs of such frames)
    last_actor: str | None = None


class RobotSession(PolicyControl):
    """Owns one robot, its 30 Hz loop thread, the frame hub, the control lease and the recorder."""

    def __init__(
        self,
        robot,
        store,
        *,
        control_hz: int = 30,
        command_timeout_s: float = 0.2,
        jpeg_quality: int = 80,
        default_task: str = "pick",
        default_colour: str = "red",
        lease_timeout_s: float = DEFAULT_LEASE_TIMEOUT_S,
        max_linear_speed: float = 0.25,
        max_yaw_rate: float = 1.5,
        auto_stop_settle_ticks: int = AUTO_STOP_SETTLE_TICKS,
        seed: int = 0,
        stats_window: int = 300,
        clock: Callable[[], float] = time.monotonic,
        headless: bool = False,
        expert_noise=None,
    ) -> None:
        if not (isinstance(control_hz, int) and 0 < control_hz <= 1000):
            raise ValueError(f"control_hz must be an integer in 1..1000, got {control_hz!r}")
        robot_hz = getattr(robot, "control_hz", control_hz)
        if robot_hz != control_hz:
            # robot.apply() advances one robot control period: a different loop rate would make sim time and
            # recorded timestamps disagree with wall-clock time.
            raise ValueError(
                f"control_hz={control_hz} differs from the robot's control_hz={robot_hz}; build both alike"
            )
        if not 0 < command_timeout_s <= 5:
            raise ValueError(f"command_timeout_s must be in (0, 5], got {command_timeout_s!r}")
        if not 1 <= int(jpeg_quality) <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality!r}")
        self.robot = robot
        self.store = store
        self.clock = clock
        self.headless = bool(headless)
        self.control_hz = control_hz
        self.dt = 1.0 / control_hz
        self.command_timeout_s = command_timeout_s
        self.jpeg_quality = int(jpeg_quality)
        self.auto_stop_settle_ticks = int(auto_stop_settle_ticks)
        self.camera_names: tuple[str, ...] = tuple(robot.camera_names)

        self.hub = FrameHub()
        self.lease = ControlLease(lease_timeout_s, clock=clock)
        self.mailbox = CommandMailbox()
        self.safety = SafetyFilter(robot.limits, self.dt, fk=robot_forward_kinematics(robot))
        self.teleop = TeleopSource(
            self.mailbox,
            dt=self.dt,
            command_timeout_s=command_timeout_s,
            max_linear_speed=max_linear_speed,
            max_yaw_rate=max_yaw_rate,
        )
        self._sources: dict[str, CommandSource] = {
            "idle": IdleSource(),
            "teleop": self.teleop,
            "expert": ExpertSource(noise=expert_noise),  # expert_noise: DART demos (backend.sim.TargetNoise)
        }
        self._source: CommandSource = self._sources["idle"]

        self._robot_lock = threading.RLock()
        self._rec_lock = threading.Lock()
        self._rec: _Take | None = None
        self._saver: ThreadPoolExecutor | None = None
        self._saving = 0
        self._episodes_saved = 0
        self._last_episode_id: int | None = None
        self._auto_stop = False
        self._overlays = True  # frames carry the policy's attention and uncertainty while it drives
        self._taking_over = False  # set by take_over around its source switch: the rollout goes on
        self._rollouts = RolloutTracker()  # the live policy rollout, ended into the rollout log's sink

        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._estop = False
        self._resume_pending = False
        self._hold_action: np.ndarray | None = None
        self._last_action: np.ndarray | None = None
        self._last_seq: int | None = None
        self._success = False
        self._last_error: str | None = None
        self._last_event: str | None = None
        self._rlog = RateLimitedLog(log)

        # Loop measurements.
        self._tick = 0
        self._tick_ms: deque[float] = deque(maxlen=stats_window)  # tick durations behind the status percentiles
        self._tick_starts: deque[float] = deque(maxlen=31)
        self._tick_stats = (0.0, 0.0, 0.0)  # p50, p95, max (ms), refreshed every 15 ticks
        self.overruns = 0  # ticks that ended after the next tick's deadline
        self.dropped_ticks = 0  # whole periods skipped because the loop fell behind
        self.tick_errors = 0
        self.record_errors = 0
        self.lease_expiries = 0

        # The first scene (checks default_task / default_colour).
        self._task = None
        self._seed: int | None = None
        self._instruction = ""
        self._obs = None
        self.reset(seed=seed, task=default_task, colour=default_colour)

    # ================================================================== loop thread
    def start(self) -> None:
        """Start the loop thread (no-op if it runs)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="robot-control-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop thread and join it; a take in progress is discarded; waits for background saves."""
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
            if t.is_alive():
                log.error("control loop thread did not stop within %.1f s", timeout)
        self._thread = None
        self._end_rollout("stopped")
        if self._rec is not None:
            self._event("recording discarded: session stopped")
            self.discard_recording()
        if self._saver is not None:
            self._saver.shutdown(wait=True)
            self._saver = None

    def tick_durations_ms(self) -> list[float]:
        """Durations of the last `stats_window` ticks (ms), oldest first."""
        return list(self._tick_ms)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        period = self.dt
        deadline = time.monotonic()
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                self._step(self.clock())
            except Exception as exc:  # a tick must never kill the loop
                self.tick_errors += 1
                self._error(f"control tick failed: {exc!r}")
                self._rlog.exception("tick", "control tick failed (%d so far)", self.tick_errors)
            end = time.monotonic()
            self._tick_ms.append((end - start) * 1000)
            self._tick_starts.append(start)
            if self._tick % 15 == 0:
                recent = list(self._tick_ms)[-300:]  # status percentiles: the last ~10 s
                p50, p95 = (percentile(recent, q, method=NEAREST_RANK) for q in (50, 95))  # measured ticks
                self._tick_stats = (p50, p95, max(recent, default=0.0))
            deadline += period
            if end > deadline:
                self.overruns += 1
                behind = int((end - deadline) // period)
                if behind:  # skip whole periods rather than bunch ticks up; the next one runs at once
                    self.dropped_ticks += behind
                    deadline += behind * period
                    self._rlog.warning("overrun", "control loop fell %d tick(s) behind", behind)
            else:
                self._stop.wait(deadline - end)

    def step(self) -> Frame:
        """Run one tick on the caller's thread (tests, or driving the session without its thread)."""
        if self.running:
            raise RuntimeError("the loop thread is running; step() is for a stopped session")
        return self._step(self.clock())

    def _current(self, state: np.ndarray, last_action: np.ndarray) -> np.ndarray:
        """(D_action,): measured joints + the last gripper command (the reference of the per-tick step limit)."""
        n = len(last_action)
        return np.append(np.asarray(state[: n - 1], dtype=np.float32), last_action[-1]).astype(np.float32)

    def _step(self, now: float) -> Frame:
        expired = self.lease.expire()
        if expired is not None:
            self.lease_expiries += 1
            self.mailbox.clear()
            self._event(f"control lease of {expired.operator!r} expired after {self.lease.timeout_s:.0f} s of silence")
            log.info("control lease of %r expired", expired.operator)
        robot = self.robot
        with self._robot_lock:
            prev_obs = self._obs
            source = self._source
            if self._resume_pending:
                self._resume_pending = False
                self._activate(source)
            current = self._current(prev_obs.state, self._last_action)
            hold = self._hold_action if self._hold_action is not None else current
            action = None
            if not self._estop:
                try:
                    action = source.act(robot, now, prev_obs)
                except Exception as exc:
                    self.tick_errors += 1
                    self._error(f"source {source.name!r} failed: {exc!r}")
                    self._rlog.exception("source", "command source %r failed; holding", source.name)
            abort = None
            if action is None:
                applied, held = hold, True
            else:
                result = self.safety.filter(action, current=current, hold=hold)
                applied, held = result.action, result.held
                if source.name == "policy" and "nonfinite" in result.reasons:
                    abort = "the policy produced a non-finite action (held by the safety filter)"
            self._hold_action = applied if held else None
            # What the take records: the executed action, unless the source labels this tick with another one
            # (the expert's clean action under DART noise, backend.sim.TargetNoise).
            label = getattr(source, "label", None) if action is not None else None
            recorded = applied if label is None else np.asarray(label, dtype=np.float32)
            robot.apply(applied)
            self._last_action = applied
            if source is self.teleop:
                self._last_seq = self.teleop.applied_seq
            self._success = success = bool(robot.success())
            self._rollouts.tick(source=source.name, success=success, now=now, scene=self._rollout_scene)
            obs = robot.observe()
            t_render = self.clock()
            self._obs = obs
            self._tick += 1
            tick = self._tick
            overlay = source.overlay(robot) if self._overlays and hasattr(source, "overlay") else None
        take = self._rec
        if take is not None:
            self._record(take, prev_obs, recorded, success, source.name)
        if abort is not None:
            self._end_rollout("aborted", aborted=abort)  # before the switch, which would end it as stopped
            self.set_source("idle")
            self._error(abort)
        if self.headless:  # nobody watches: no JPEG, no status, nothing published
            return Frame(tick, t_render, {}, [], self._last_seq, {}, overlay)
        jpeg = {name: encode_jpeg(obs.images[name], self.jpeg_quality) for name in self.camera_names}
        frame = Frame(
            tick=tick,
            time=t_render,
            jpeg=jpeg,
            state=[float(x) for x in obs.state],
            last_command_seq=self._last_seq,
            status=self.status(),
            overlay=overlay,
        )
        self.hub.publish(frame)
        return frame

    # ================================================================== recording
    def _record(self, take: _Take, prev_obs, action: np.ndarray, success: bool, source_name: str) -> None:
        try:
            with self._rec_lock:
                if self._rec is not take:  # saved or discarded meanwhile
                    return
                # An operator driving while the policy's rollout is on (they took over) is correcting it (HG-DAgger's
                # signal); after the policy was stopped, or before it ever drove, teleop is plain teleop.
                intervention = source_name in CORRECTING_SOURCES and self._rollouts.current is not None
                policy = self.policy if source_name == "policy" else None
                score = policy.stats.uncertainties[-1] if policy is not None and policy.stats.uncertainties else None
                take.recorder.add_frame(images=prev_obs.images, state=prev_obs.state, action=action,
                                        actor=source_name, intervention=intervention, uncertainty=score,
                                        signals=prev_obs.signals)  # fmt: skip
                if intervention:
                    take.intervention_frames += 1
                    if take.last_actor not in CORRECTING_SOURCES:
                        take.interventions += 1
                take.last_actor = source_name
                take.sources_used.add(source_name)
                take.success_ever |= success
                if success and take.ticks_since_success is None:
                    take.ticks_since_success = 0
                elif take.ticks_since_success is not None:
                    take.ticks_since_success += 1
                auto = self._auto_stop and take.ticks_since_success is not None
                if auto and take.ticks_since_success >= self.auto_stop_settle_ticks:
                    self._rec = None
                else:
                    return
        except Exception as exc:
            self.record_errors += 1
            self._error(f"recording failed and the take was discarded: {exc!r}")
            self._rlog.exception("record", "add_frame failed; discarding the take")
            with self._rec_lock:
                if self._rec is take:
                    self._rec = None
            self._discard_take(take)
            return
        # Auto-stop: save off the loop thread (encoder flush + parquet + fsync take far longer than a tick).
        self._event("task succeeded: recording stopped and saved automatically")
        with self._rec_lock:
            self._saving += 1
        if self._saver is None:
            self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="episode-save")
        self._saver.submit(self._save_in_background, take)

    def _save_in_background(self, take: _Take) -> None:
        try:
            self._save_take(take, human_success=True, stopped_by="auto", counted=True)
        except Exception:
            pass  # reported in status by _save_take

    def start_recording(self, operator: str, dataset: str) -> None:
        """Begin a take (source "teleop" for teleop/idle, "scripted" for the expert); frames from the next tick."""
        from storage.episode_store import validate_name

        if self.store is None:
            raise RuntimeError("this session has no episode store; recording is unavailable")
        if not isinstance(operator, str) or not operator.strip():
            raise ValueError("operator must be a non-empty name")
        operator = operator.strip()
        if len(operator) > MAX_OPERATOR_LEN:
            raise ValueError(f"operator name is {len(operator)} characters long; at most {MAX_OPERATOR_LEN}")
        validate_name(dataset)
        if self._rec is not None:
            raise RecordingActiveError("already recording; save or discard the current take first")
        with self._robot_lock:
            source = self._source
            meta = episode_meta_from_robot(
                self.robot,
                self._obs,
                dataset=dataset,
                task=self._task,
                instruction=self._instruction,
                seed=self._seed,
                source=source.record_as,
                operator=operator,
                extra={"recorded_with": "robot_session"},
            )
            try:
                recorder = self.store.begin(meta)
            except Exception as exc:
                self._error(f"could not start recording: {exc}")
                raise
            with self._rec_lock:
                if self._rec is not None:  # a concurrent start won
                    recorder.discard()
                    raise RecordingActiveError("already recording; save or discard the current take first")
                self._rec = _Take(recorder, operator, dataset, source.record_as, self.clock(), {source.name})
        self._event(f"recording started ({source.record_as}, operator {operator!r}, dataset {dataset!r})")

    def save_recording(self, success: bool | None) -> int:
        """Stop and save the take with human_success=success and auto_success = the task's predicate now
        (success None: nobody judged it, as for scripted demos: only the automatic verdict is stored)."""
        if success is not None and not isinstance(success, bool | np.bool_):
            raise ValueError(f"success must be True, False or None, got {success!r}")
        with self._rec_lock:
            take, self._rec = self._rec, None
            if take is None:
                raise NoRecordingError("no recording in progress")
            self._saving += 1
        verdict = None if success is None else bool(success)
        return self._save_take(take, human_success=verdict, stopped_by="operator", counted=True)

    def _save_take(self, take: _Take, *, human_success: bool | None, stopped_by: str, counted: bool) -> int:
        rec = take.recorder
        try:
            rec.meta.extra.update(
                stopped_by=stopped_by, sources_used=sorted(take.sources_used), success_ever=take.success_ever
            )
            if take.intervention_frames:
                rec.meta.source = "intervention"  # storage.models.EpisodeSource.INTERVENTION
                rec.meta.extra.update(interventions=take.interventions, intervention_frames=take.intervention_frames)
            elif "policy" in take.sources_used and take.sources_used <= {"policy", "idle"}:
                rec.meta.source = "policy"
            policy = self._sources.get("policy")
            if "policy" in take.sources_used and policy is not None:
                rec.meta.extra.update(model=dict(policy.status()["model"]))
            episode_id = rec.save(auto_success=self._success, human_success=human_success)
        except Exception as exc:
            self._error(f"saving the episode failed: {exc}")
            log.exception("saving the episode failed")
            if getattr(rec, "status", None) == "recording":
                self._discard_take(take)
            raise
        finally:
            if counted:
                with self._rec_lock:
                    self._saving -= 1
        with self._rec_lock:
            self._episodes_saved += 1
            self._last_episode_id = episode_id
        self._end_rollout("saved", episode_id=episode_id, human_success=human_success)
        self._event(f"episode {episode_id} saved ({rec.num_frames} frames, success={human_success})")
        log.info("episode %d saved (%d frames, operator %r)", episode_id, rec.num_frames, take.operator)
        return episode_id

    def _discard_take(self, take: _Take) -> None:
        try:
            if take.recorder.status == "recording":
                take.recorder.discard()
        except Exception as exc:
            self._error(f"discarding the take failed: {exc}")
            log.exception("discarding the take failed")

    def discard_recording(self) -> None:
        """Throw the take in progress away (no files, no row); no-op if none."""
        with self._rec_lock:
            take, self._rec = self._rec, None
        if take is not None:
            self._discard_take(take)
            self._event("recording discarded")

    def restart_recording(self) -> None:
        """Re-record: discard the take in progress and start a new one with the same operator and dataset."""
        take = self._rec
        if take is None:
            raise NoRecordingError("no recording in progress")
        self.discard_recording()
        self.start_recording(take.operator, take.dataset)

    def set_auto_stop(self, enabled: bool) -> None:
        self._auto_stop = bool(enabled)

    # ================================================================== viewers, lease, commands
    def subscribe(self) -> FrameSubscription:
        """Latest-frame-only subscription for the running asyncio loop (see backend.control.hub)."""
        return self.hub.subscribe()

    def acquire_lease(self, client_id: str, operator: str) -> None:
        """Take control; LeaseHeldError naming the holder if another client has it (re-acquire refreshes)."""
        if self.lease.acquire(client_id, operator):
            self.mailbox.clear()  # a new controller starts from a standstill
            self._event(f"{operator.strip()!r} took control")

    def release_lease(self, client_id: str) -> None:
        """Give control back (also on socket close); the arm holds from the next tick. No-op for non-holders."""
        holder = self.lease.holder
        if self.lease.release(client_id):
            self.mailbox.clear()
            self._event(f"{holder.operator!r} released control")

    def break_lease(self) -> str | None:
        """Take the lease from whoever holds it (an admin's override); returns the former holder's name, else None."""
        holder = self.lease.holder
        if holder is None or not self.lease.release(holder.client_id):
            return None
        self.mailbox.clear()
        self._event(f"control of {holder.operator!r} was broken")
        return holder.operator

    def heartbeat(self, client_id: str) -> None:
        """Keep the holder's lease alive without moving (commands do this too); NotControllerError otherwise."""
        self.lease.touch(client_id)

    def command(self, client_id: str, cmd: TeleopCommand) -> None:
        """Hand the controller's command to the teleop source (applied at the next tick, valid for
        command_timeout_s). Raises NotControllerError without the lease, ValueError for bad values."""
        self.lease.touch(client_id)
        cmd = validate_command(cmd)
        self.mailbox.put(cmd, now=self.clock())
        if self._source.name == "idle":
            self.set_source("teleop")

    def set_estop(self, engaged: bool) -> None:
        """Engaged: every source is ignored and the arm holds where it is. Released: the active source resumes
        from the current pose (teleop re-anchors its target, the expert re-plans)."""
        engaged = bool(engaged)
        if engaged == self._estop:
            return
        self._estop = engaged
        if not engaged:
            self._resume_pending = True
        self._event("E-STOP engaged" if engaged else "e-stop released")
        log.warning("e-stop %s", "engaged" if engaged else "released")

    # ================================================================== sources and scenes
    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self._sources)

    def add_source(self, source: CommandSource, *, replace: bool = False) -> None:
        """Register another command source (e.g. a policy) under `source.name`; `replace` swaps one registered
        under that name (not while it drives: switch away first)."""
        old = self._sources.get(source.name)
        if old is not None and not replace:
            raise ValueError(f"a source named {source.name!r} exists")
        if old is not None and (source.name in ("idle", "teleop", "expert", "policy") or old is self._source):
            raise ValueError(f"source {source.name!r} cannot be replaced now (built in, or driving)")
        self._sources[source.name] = source

    def _activate(self, source: CommandSource) -> None:
        source.activate(self.robot, self._task, self._instruction)

    def set_source(self, name: str) -> None:
        """Make `name` ("idle" | "teleop" | "expert" | registered) the one active source; ValueError if unknown
        or if it cannot drive the current task (the previous source stays active)."""
        if name not in self._sources:
            raise ValueError(f"unknown command source {name!r}; available: {', '.join(self._sources)}")
        with self._robot_lock:
            new = self._sources[name]
            if new is self._source:
                return
            self._activate(new)  # may raise (no expert for this task): nothing changed yet
            stopped_policy = self._source.name == "policy" and not self._taking_over
            self._source.deactivate()
            self._source = new
        with self._rec_lock:
            if self._rec is not None:
                self._rec.sources_used.add(name)
        if stopped_policy:  # the operator stopped the policy (not a takeover): its rollout ends here
            self._end_rollout("stopped by operator")
        self._event(f"source: {name}")

    def reset(
        self,
        *,
        seed: int | None = None,
        task: str | None = None,
        colour: str | None = None,
        instruction: str | None = None,
    ) -> dict:
        """A new seeded scene. task/colour default to the current ones; seed None -> a random one; instruction
        None or blank -> a seeded random paraphrase of the task's templates, else the free text given.
        A bad task or colour raises ValueError and changes nothing. A take in progress is discarded."""
        from backend.sim import make_task

        if seed is None:
            seed = secrets.randbelow(2**31)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**63:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        seed = int(seed)
        cur = self._task
        task_obj = make_task(
            task if task is not None else cur.name,
            colour=colour if colour is not None else getattr(cur, "colour", "red"),
        )
        if instruction is not None and not isinstance(instruction, str):
            raise ValueError(f"instruction must be text, got {type(instruction).__name__}")
        text = (instruction or "").strip()
        if len(text) > MAX_INSTRUCTION_LEN:
            raise ValueError(f"instruction is {len(text)} characters long; at most {MAX_INSTRUCTION_LEN}")
        if not text:
            text = task_obj.instruction(np.random.default_rng(seed))
        self._end_rollout("reset")
        if self._rec is not None:
            self._event("recording discarded: the scene was reset")
            self.discard_recording()
        with self._robot_lock:
            obs = self.robot.reset(seed=seed, task=task_obj)
            self._task, self._seed, self._instruction, self._obs = task_obj, seed, text, obs
            n = len(self.robot.action_names)
            self._last_action = np.append(obs.state[: n - 1], self.robot.ee_target().gripper).astype(np.float32)
            self._hold_action = None
            self._success = bool(self.robot.success())
            if self.policy is not None:
                self.policy.new_episode()
            try:
                self._activate(self._source)
            except Exception as exc:
                self._error(f"source {self._source.name!r} cannot drive {task_obj!r} ({exc}); switched to idle")
                self._source.deactivate()
                self._source = self._sources["idle"]
            tick = self._tick
        if not self.running and not self.headless:  # viewers see the new scene even with the loop stopped
            jpeg = {name: encode_jpeg(obs.images[name], self.jpeg_quality) for name in self.camera_names}
            st = self.status()
            self.hub.publish(Frame(tick, self.clock(), jpeg, [float(x) for x in obs.state], self._last_seq, st))
        self._event(f"reset: {task_obj.name}/{getattr(task_obj, 'colour', '')} seed {seed}")
        return self.status()

    def tasks(self) -> list[dict]:
        """[{"name", "colours", "templates"}] for every registered task ("{colour}" left in the templates)."""
        from backend.sim import COLOURS, list_tasks, make_task

        return [
            {
                "name": name,
                "colours": list(COLOURS),
                "templates": list(make_task(name).instruction_templates),
            }
            for name in list_tasks()
        ]

    # ================================================================== status
    def _error(self, message: str) -> None:
        self._last_error = message

    def _event(self, message: str) -> None:
        self._last_event = message

    def status(self) -> dict:
        """A small JSON-able snapshot (also sent in every Frame)."""
        holder = self.lease.holder
        take = self._rec
        starts = self._tick_starts
        fps = (len(starts) - 1) / (starts[-1] - starts[0]) if len(starts) > 1 and starts[-1] > starts[0] else 0.0
        p50, p95, worst = self._tick_stats
        cmd, t_cmd = self.mailbox.latest()
        source = self._source
        return {
            "running": self.running,
            "tick": self._tick,
            "source": source.name,
            "sources": list(self._sources),
            "source_done": bool(getattr(source, "done", lambda robot: False)(self.robot)),
            "task": self._task.name,
            "colour": getattr(self._task, "colour", None),
            "instruction": self._instruction,
            "seed": self._seed,
            "success": self._success,
            "estop": self._estop,
            "controller": holder.operator if holder else None,
            "lease_expires_in_s": None if holder is None else round(self.lease.expires_in() or 0.0, 1),
            "teleop": {
                "live": self.teleop.fresh,
                "last_command_seq": self._last_seq,
                "command_age_s": None if cmd is None else round(self.clock() - t_cmd, 3),
            },
            "recording": {
                "active": take is not None,
                "elapsed_s": round(self.clock() - take.started, 2) if take else 0.0,
                "frames": take.recorder.num_frames if take else 0,
                "operator": take.operator if take else None,
                "dataset": take.dataset if take else None,
                "source": take.source if take else None,
                "saving": self._saving > 0,
                "episodes_saved": self._episodes_saved,
                "last_episode_id": self._last_episode_id,
                "auto_stop": self._auto_stop,
                "interventions": take.interventions if take else 0,
                "intervention_frames": take.intervention_frames if take else 0,
            },
            "counters": {
                "ticks": self._tick,
                "fps": round(fps, 2),
                "tick_ms_p50": round(p50, 2),
                "tick_ms_p95": round(p95, 2),
                "tick_ms_max": round(worst, 2),
                "overruns": self.overruns,
                "dropped_ticks": self.dropped_ticks,
                "tick_errors": self.tick_errors,
                "rejected": self.safety.total,
                "safety": dict(self.safety.counts),
                "commands": self.mailbox.received,
                "command_timeouts": self.teleop.timeouts,
                "lease_expiries": self.lease_expiries,
                "record_errors": self.record_errors,
                "frames": self.hub.published,
                "subscribers": self.hub.subscribers,
            },
            "policy": None if self.policy is None else self.policy.status(),
            "last_error": self._last_error,
            "last_event": self._last_event,
        }
