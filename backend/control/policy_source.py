"""PolicySource: a trained policy as a RobotSession command source, with asynchronous inference and ask-for-help.

Each tick the session calls `act(robot, now, obs)` with the observation the previous tick rendered. The source
never makes the 30 Hz loop wait for the network when `asynchronous` (live robots):

    tick t:  take any chunk the inference thread finished (predicted from the observation of tick t0 <= t)
             -> TemporalEnsembler.add(t0, chunk)
             if the thread is idle: hand it this tick's observation (it predicts while the loop goes on)
             action = ensembler.action_at(t)   # the chunks covering t (a late chunk skips the steps it missed)

so a slow prediction (a bigger model, a machine busy training) makes the executed chunk older, not the loop slower;
`status()` reports the policy's latency and that age, in ticks, for the HUD. Headless evaluation and benchmarks use
`asynchronous=False`: a prediction every tick on the loop's thread, exactly `select_action`'s temporal ensembling,
so results are deterministic and match `backend.services.evaluation.run_episode`.

Ask for help (HelpMonitor): when the uncertainty score of `k` consecutive predictions is above the calibrated
threshold, the source stops moving (act returns None: the session holds the arm) and `status()["help"]` asks the
operator to take over, continue or stop. `resume()` (continue) clears it and re-arms the monitor.

Overlays: `overlay()` is the small JSON-able dict every frame header carries while the policy drives (per-camera
attention grids rounded to 2 decimals, each instruction word's map, the uncertainty and its threshold, the
predicted chunk of joint targets). Grids are a few dozen numbers per camera; the browser draws them, nothing is
re-encoded as an image.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from storage.features import OBS_STATE, image_key
from vla_core.metrics import NEAREST_RANK, percentile
from vla_core.policies.temporal_ensembler import TemporalEnsembler

log = logging.getLogger(__name__)

OVERLAY_MAPS = ("attention", "attention_rollout", "keypoint_attention")  # PolicyOutput fields the console can show


@dataclass(frozen=True)
class ModelInfo:
    """What the HUD and the rollout log say about the model driving."""

    id: int | None
    name: str
    version: int | None = None
    threshold: float | None = None  # calibrated uncertainty threshold (None: never asks for help)


class HelpMonitor:
    """Ask for help after `k` consecutive predictions whose uncertainty is above `threshold` (None: never)."""

    def __init__(self, threshold: float | None, k: int = 5) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if threshold is not None and not np.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number or None, got {threshold!r}")
        self.threshold = None if threshold is None else float(threshold)
        self.k = int(k)
        self.run = 0  # consecutive predictions above the threshold
        self.asking = False
        self.prompts = 0  # times help was asked in this rollout

    def reset(self) -> None:
        self.run, self.asking, self.prompts = 0, False, 0

    def observe(self, uncertainty: float) -> bool:
        """Feed one prediction's score; True when this one starts a request for help."""
        if self.threshold is None or self.asking:
            return False
        self.run = self.run + 1 if uncertainty > self.threshold else 0
        if self.run >= self.k:
            self.asking, self.run = True, 0
            self.prompts += 1
            return True
        return False

    def resume(self) -> None:
        """The operator chose to continue: the policy drives again and a new run of k is needed to ask again."""
        self.asking, self.run = False, 0


@dataclass
class _Prediction:
    tick: int  # the tick whose observation it was predicted from
    output: Any  # PolicyOutput (numpy)
    latency_s: float
    generation: int


@dataclass
class _Stats:
    predictions: int = 0
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=300))
    uncertainties: list = field(default_factory=list)  # every prediction's score in this rollout
    errors: int = 0


class PolicySource:
    """A loaded policy (vla_core.inference.Policy or anything with .cameras, .model.config and .predict) driving a
    RobotSession; see the module docstring."""

    name = "policy"
    record_as = "policy"

    def __init__(
        self,
        policy,
        *,
        model: ModelInfo,
        asynchronous: bool = True,
        help_k: int = 5,
        ask_for_help: bool = True,
    ) -> None:
        self.policy = policy
        self.model = model
        self.asynchronous = bool(asynchronous)
        config = policy.model.config
        self.chunk_size = int(config.chunk_size)
        self._coeff = getattr(config, "temporal_ensemble_coeff", None)
        self._n_action_steps = int(getattr(config, "n_action_steps", 1))
        self.ensembler = TemporalEnsembler(self._coeff, self._n_action_steps)
        self.help = HelpMonitor(model.threshold if ask_for_help else None, k=help_k)
        self.instruction = ""
        self.tick = 0
        self.stats = _Stats()
        self.last: _Prediction | None = None  # the newest prediction taken into the ensembler
        self._generation = 0  # bumped at activate/deactivate: a prediction of an older scene is dropped
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._request: tuple[int, dict, str, int] | None = None  # (tick, obs batch, instruction, generation)
        self._done: _Prediction | None = None
        self._busy = False
        self._busy_since: float | None = None  # perf_counter when the request in flight was handed over
        self._closed = False
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self._overlay_cache: tuple[_Prediction, dict] | None = None  # overlay() of the newest prediction

    # ------------------------------------------------------------------ CommandSource
    def activate(self, robot, task, instruction: str = "") -> None:
        with self._lock:
            self._generation += 1
            self._request, self._done = None, None
        self.instruction = instruction or (task.instruction() if task is not None else "")
        self.ensembler.reset()  # chunks of an earlier activation point at where the arm was then
        self.help.resume()
        self.tick = 0
        self.last = None
        if self.asynchronous and (self._thread is None or not self._thread.is_alive()):
            self._closed = False
            self._thread = threading.Thread(target=self._worker, name="policy-inference", daemon=True)
            self._thread.start()

    def deactivate(self) -> None:
        with self._lock:
            self._generation += 1  # whatever is being computed now is for a scene nobody drives any more
            self._request, self._done = None, None

    def act(self, robot, now: float, obs) -> np.ndarray | None:
        t = self.tick
        self.tick += 1
        if obs is None:
            return None
        if self.asynchronous:
            self._collect()
            if not self.help.asking:
                self._submit(t, obs)
        elif not self.help.asking and self._needs_prediction(t):
            started = time.perf_counter()
            output = self.policy.predict(self._batch(obs), self.instruction)
            self._take(_Prediction(t, output, time.perf_counter() - started, self._generation))
        if self.help.asking:
            return None  # hold still until the operator decides
        return self.ensembler.action_at(t)

    def _needs_prediction(self, t: int) -> bool:
        """Synchronous mode: every tick when ensembling; open loop, once `n_action_steps` of the chunk are played."""
        if self._coeff is not None or self.last is None:
            return True
        return t - self.last.tick >= max(1, min(self._n_action_steps, self.chunk_size))

    def new_episode(self) -> None:
        """A new scene (the session's reset): the rollout's statistics and help prompts start again."""
        self.stats = _Stats()
        self.help.reset()

    # ------------------------------------------------------------------ operator decisions
    def resume(self) -> None:
        """Continue after a request for help: the policy drives again from the current observation."""
        self.help.resume()
        self.ensembler.reset()  # chunks from before the pause point at where the arm was then
        self.last = None

    # ------------------------------------------------------------------ inference thread
    def _batch(self, obs) -> dict:
        batch = {image_key(cam): obs.images[cam] for cam in self.policy.cameras}
        batch[OBS_STATE] = np.asarray(obs.state, dtype=np.float32)
        return batch

    def _submit(self, t: int, obs) -> None:
        with self._lock:
            if self._busy or self._request is not None:
                return
            self._request = (t, self._batch(obs), self.instruction, self._generation)
            self._wake.notify()

    def _collect(self) -> None:
        with self._lock:
            done, self._done = self._done, None
        if done is not None and done.generation == self._generation:
            self._take(done)

    def _take(self, prediction: _Prediction) -> None:
        out = prediction.output
        self.ensembler.add(prediction.tick, np.asarray(out.actions)[0])
        self.last = prediction
        self.stats.predictions += 1
        self.stats.latencies_ms.append(prediction.latency_s * 1000.0)
        score = float(np.asarray(out.uncertainty).reshape(-1)[0])
        self.stats.uncertainties.append(score)
        self.help.observe(score)

    def _worker(self) -> None:
        while True:
            with self._lock:
                while self._request is None and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                tick, batch, instruction, generation = self._request
                self._request, self._busy = None, True
                started = self._busy_since = time.perf_counter()
            try:
                output = self.policy.predict(batch, instruction)
                result = _Prediction(tick, output, time.perf_counter() - started, generation)
            except Exception as exc:  # reported in status; the loop holds the arm while no chunk covers a tick
                self.stats.errors += 1
                self.last_error = f"policy prediction failed: {exc!r}"
                log.exception("policy prediction failed")
                result = None
            with self._lock:
                self._busy, self._busy_since = False, None
                if result is not None and result.generation == self._generation:
                    self._done = result

    def close(self) -> None:
        """Stop the inference thread (the session drops the source)."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        closer = getattr(self.policy, "close", None)
        if callable(closer):  # a policy served by its own process (backend.control.policy_process)
            closer()

    # ------------------------------------------------------------------ what viewers see
    def status(self) -> dict:
        last = self.last
        lat = list(self.stats.latencies_ms)
        scores = self.stats.uncertainties
        busy_since = self._busy_since
        return {
            "model": {"id": self.model.id, "name": self.model.name, "version": self.model.version},
            "asynchronous": self.asynchronous,
            "predictions": self.stats.predictions,
            "latency_ms_p50": round(percentile(lat, 50, method=NEAREST_RANK), 2) if lat else None,
            "latency_ms_p95": round(percentile(lat, 95, method=NEAREST_RANK), 2) if lat else None,
            "chunk_age_ticks": None if last is None else max(0, self.tick - 1 - last.tick),
            "uncertainty": None if not scores else round(scores[-1], 4),
            "uncertainty_mean": None if not scores else round(float(np.mean(scores)), 4),
            "uncertainty_max": None if not scores else round(float(np.max(scores)), 4),
            "threshold": self.help.threshold,
            "help": {"asking": self.help.asking, "prompts": self.help.prompts, "k": self.help.k},
            "errors": self.stats.errors,
            "last_error": self.last_error,
            # how long the prediction in flight has taken so far (None: none in flight), and whether the inference
            # thread runs: what tells "slow" from "stuck" when no chunk arrives
            "in_flight_s": None if busy_since is None else round(time.perf_counter() - busy_since, 2),
            "inference_thread": None if not self.asynchronous else bool(self._thread and self._thread.is_alive()),
            "restarts": getattr(self.policy, "restarts", 0),  # fresh policy processes (policy_process.py)
        }

    def overlay(self, robot=None) -> dict | None:
        """The newest prediction's maps for the frame header (None before the first one). With a `robot` that has
        forward_kinematics and project (backend.robot.Robot), also the chunk's planned tool path in the front
        camera as [[x, y], ...] fractions of the image (computed once per prediction)."""
        last = self.last
        if last is None:
            return None
        if self._overlay_cache is not None and self._overlay_cache[0] is last:
            return self._overlay_cache[1]
        out = last.output
        maps: dict[str, dict[str, list]] = {}
        for name in OVERLAY_MAPS:
            per_cam = getattr(out, name, None) or {}
            maps[name] = {cam: _grid(m[0]) for cam, m in per_cam.items()}
        words = (getattr(out, "tokens", None) or [[]])[0]
        token_maps = {cam: [_grid(m) for m in tm[0][: len(words)]] for cam, tm in (out.token_attention or {}).items()}
        overlay = {
            "tick": last.tick,
            "maps": maps,
            "words": list(words),
            "word_maps": token_maps,
            "uncertainty": float(np.nan_to_num(np.asarray(out.uncertainty, dtype=np.float64).reshape(-1)[0])),
            "threshold": self.help.threshold,
            # (T, D_action) joint targets + gripper
            "chunk": np.round(np.nan_to_num(np.asarray(out.actions)[0]), 4).tolist(),
            "path": _planned_path(robot, np.asarray(out.actions)[0]),
        }
        self._overlay_cache = (last, overlay)
        return overlay


def _planned_path(robot, chunk: np.ndarray, camera: str = "front") -> list[list[float]] | None:
    """(T, 2) image fractions of the tool position each action of the (T, D_action) chunk would reach, or None
    when the robot cannot tell (no forward kinematics or camera projection) or the actions are not finite."""
    fk, project = getattr(robot, "forward_kinematics", None), getattr(robot, "project", None)
    if not (callable(fk) and callable(project)) or not np.isfinite(chunk).all():
        return None
    try:
        points = np.stack([fk(a) for a in chunk])  # (T, 3) world
        uv = project(points, camera)  # (T, 2)
    except Exception:  # a camera the robot does not have: no path
        return None
    return [[round(float(x), 4), round(float(y), 4)] if np.isfinite([x, y]).all() else None for x, y in uv]


def _grid(values) -> list[list[float]]:
    """A (h, w) map as nested lists rounded to 2 decimals (a 6x6 grid is ~150 bytes of JSON)."""
    return np.round(np.nan_to_num(np.asarray(values, dtype=np.float32)), 2).tolist()


__all__ = ["HelpMonitor", "ModelInfo", "PolicySource"]
