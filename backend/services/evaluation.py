"""Closed-loop evaluation of a policy in the sim: success rate (Wilson 95%), uncertainty and grounding per episode.

Each step is a tick of a headless RobotSession (the live robot's loop, safety filter and success predicate, run as
fast as the sim goes): observe -> policy.select_action(obs, instruction) -> safety filter -> robot.apply, until the
task's success predicate holds or `max_steps` pass. Per episode it records the uncertainty of every fresh
prediction and whether the front camera's attention peak falls on the instructed cube (its 8 corners projected
into the image: backend.sim.projection). Optionally writes an MP4 per episode with the attention overlaid.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.services.faithfulness import OcclusionFrame, mask_cube, occlusion_test
from backend.services.grounding import CubeWatcher, mass_shares, scene_regions
from backend.sim import COLOURS, SimConfig, SimRobot, make_task
from backend.sim.projection import cube_bbox
from storage.features import OBS_STATE, image_key
from storage.video import EncoderSettings, VideoWriter
from vla_core.metrics import auroc, percentile, success_summary

__all__ = [
    "EpisodeResult",
    "EvalConfig",
    "attention_peak_hit",
    "evaluate_policy",
    "run_episode",
]


# Maps besides PolicyOutput.attention (the headline grounding) that get the same grounding test when present.
OTHER_GROUNDING_MAPS = ("attention_rollout", "keypoint_attention")
MASS_REGIONS = ("instructed", "other_cubes", "gripper", "bowl", "outside")  # keys of grounding.mass_shares


@dataclass(frozen=True)
class EvalConfig:
    task: str = "pick"
    colour: str = "red"
    episodes: int = 10
    seed_base: int = 100_000  # episode i uses seed seed_base + i (keep disjoint from training seeds)
    max_steps: int | None = None  # None: the sim's max_episode_steps (300 = 10 s at 30 Hz)
    image_size: int | None = None  # render size; None = the policy's image size (cheapest, no resize)
    paraphrase: bool = False  # a seeded random instruction template per episode instead of the canonical one
    # Templates with {colour}: episode i is told instructions[i % len] (an evaluation suite's held-out wording).
    instructions: tuple[str, ...] | None = None
    video_dir: Path | None = None
    # Which episodes keep their MP4 in video_dir: "all", or "failures" (a success's video is deleted once it ends:
    # the failures are what an engineer watches, one click away in the registry).
    keep_videos: str = "all"
    grounding_camera: str = "front"
    # Batch-1 inference is latency-bound: one torch thread avoids OpenMP threads spinning against the renderer
    # (llvmpipe) and other processes; on a busy 2-core machine 2 threads measured 720 ms/step against 5 ms with 1.
    num_threads: int | None = 1
    # Faithfulness (issue 15): grey out the "instructed" cube or an "other" one in what the policy sees (closed
    # loop), and run the occlusion test on every `occlusion_every`-th prediction's frame (0 = off).
    mask_cube: str | None = None
    occlusion_every: int = 0

    def validate(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes must be at least 1, got {self.episodes}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.keep_videos not in ("all", "failures"):
            raise ValueError(f"keep_videos must be 'all' or 'failures', got {self.keep_videos!r}")
        if self.image_size is not None and self.image_size < 16:
            raise ValueError(f"image_size must be at least 16, got {self.image_size}")
        if self.mask_cube not in (None, "instructed", "other"):
            raise ValueError(f"mask_cube must be 'instructed', 'other' or None, got {self.mask_cube!r}")
        if self.occlusion_every < 0:
            raise ValueError(f"occlusion_every must be >= 0, got {self.occlusion_every}")
        make_task(self.task, colour=self.colour)  # UnknownTaskError (a ValueError) lists the valid names


@dataclass
class EpisodeResult:
    seed: int
    task: str
    colour: str
    instruction: str
    success: bool
    steps: int
    mean_uncertainty: float | None
    max_uncertainty: float | None
    share_above_threshold: float | None  # of predictions whose uncertainty exceeded the calibrated threshold
    predictions: int  # fresh predict_chunk calls observed (uncertainty and grounding are measured on these)
    grounding_hits: int  # peak of the cross-attention map (PolicyOutput.attention) on the cube
    grounding_frames: int  # predictions where the cube was in view
    wall_s: float
    policy_ms_p50: float
    policy_ms_p95: float
    video: str | None = None
    # The same test on the policy's other maps, where it has them: {"attention_rollout": hits, ...}.
    grounding_hits_by_map: dict[str, int] = field(default_factory=dict)
    # Sum over the grounding frames of the headline map's mass shares (grounding.mass_shares): instructed,
    # other_cubes, gripper, bowl, outside. Divide by grounding_frames for the mean. The map is the one shown
    # (PolicyOutput.attention, min-max normalised per frame), so a uniform floor counts as no mass.
    attention_mass_sums: dict[str, float] = field(default_factory=dict)
    touched: list[str] = field(default_factory=list)  # cubes the rollout lifted or pushed (grounding.CubeWatcher)
    wrong_object: bool = False  # it lifted or pushed a cube it was not told about
    uncertainties: list[float] = field(default_factory=list, repr=False)

    @property
    def grounding_rate(self) -> float | None:
        return self.grounding_hits / self.grounding_frames if self.grounding_frames else None

    def to_dict(self, with_trace: bool = False) -> dict:
        d = asdict(self)
        if not with_trace:
            d.pop("uncertainties")
        d["grounding_rate"] = self.grounding_rate
        return d


# ----------------------------------------------------------------------------------------------- policy adapters
def _policy_obs(observation, cameras: Sequence[str]) -> dict:
    """A sim Observation as the policy's batch-1 observation dict: (H, W, 3) uint8 images and (D,) state."""
    obs = {image_key(cam): observation.images[cam] for cam in cameras}
    obs[OBS_STATE] = np.asarray(observation.state, dtype=np.float32)
    return obs


def _last_prediction(policy):
    """The PolicyOutput behind the last select_action, if the policy exposes it (None when it reused a chunk)."""
    for name in ("last_output", "last_prediction"):
        out = getattr(policy, name, None)
        if out is not None:
            return out
    return None


def _scalar(x) -> float:
    return float(torch.as_tensor(x).float().reshape(-1)[0])


def _map(x) -> np.ndarray:
    """(h, w) float map of batch element 0."""
    a = np.asarray(torch.as_tensor(x).float().cpu())
    while a.ndim > 2:
        a = a[0]
    return a


def attention_peak_hit(heatmap: np.ndarray, bbox, image_hw: tuple[int, int]) -> bool:
    """Whether the attention peak's cell (of an (h, w) map over an image of `image_hw`) overlaps `bbox`.

    The cell, not its centre: a 96 px image under a 12 x 12 map has 8 px cells and a cube ~7 px wide, so a centre
    test would call a peak on the cube's own cell a miss whenever the cube sits near the cell's edge.
    """
    h, w = heatmap.shape
    i, j = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    H, W = image_hw
    cx0, cx1 = j * W / w, (j + 1) * W / w
    cy0, cy1 = i * H / h, (i + 1) * H / h
    x0, y0, x1, y1 = bbox
    return cx0 < x1 and x0 < cx1 and cy0 < y1 and y0 < cy1


# ----------------------------------------------------------------------------------------------- rollouts
class EvaluationSource:
    """A policy with the select_action interface (vla_core policies) as a RobotSession command source: one
    select_action per tick on the caller's thread, so a rollout is deterministic. `on_prediction(robot, obs, out)`
    sees each tick's observation and the prediction behind its action (None when the policy reused a chunk)
    before the action is applied: what grounding and the video measure."""

    name = "evaluation"
    record_as = "policy"

    def __init__(
        self, policy, on_prediction: Callable[[Any, Any, Any], None] | None = None, mask_colour: str | None = None
    ) -> None:
        self.policy = policy
        self.cameras = tuple(policy.config.cameras)
        self.on_prediction = on_prediction
        self.mask_colour = mask_colour  # grey out this cube in every image the policy sees (faithfulness.mask_cube)
        self.instruction = ""
        self.latencies: list[float] = []  # seconds per select_action

    def activate(self, robot, task, instruction: str = "") -> None:
        self.instruction = instruction
        self.latencies = []
        self.policy.reset()

    def deactivate(self) -> None:
        pass

    def act(self, robot, now: float, obs) -> np.ndarray:
        if hasattr(self.policy, "last_output"):
            self.policy.last_output = None
        if self.mask_colour is not None:
            obs = replace(obs, images=mask_cube(robot, obs.images, self.mask_colour))
        t = time.perf_counter()
        with torch.inference_mode():
            action = self.policy.select_action(_policy_obs(obs, self.cameras), self.instruction)
        self.latencies.append(time.perf_counter() - t)
        if self.on_prediction is not None:
            self.on_prediction(robot, obs, _last_prediction(self.policy))
        return np.asarray(action, dtype=np.float32).reshape(-1)  # select_action returns (D,) numpy


def headless_session(robot: SimRobot):
    """A RobotSession for closed-loop evaluation: no thread, no viewers, no store (the caller steps it)."""
    from backend.control import RobotSession

    return RobotSession(robot, None, control_hz=robot.control_hz, headless=True)


def run_episode(
    policy,
    robot: SimRobot,
    *,
    task_name: str,
    colour: str,
    seed: int,
    max_steps: int,
    paraphrase: bool = False,
    instruction: str | None = None,
    threshold: float | None = None,
    video_path: Path | None = None,
    grounding_camera: str = "front",
    session=None,
    mask_colour: str | None = None,
    keep_frames: list | None = None,
    keep_every: int = 0,
) -> EpisodeResult:
    """One closed-loop rollout from the seeded scene on a headless RobotSession (`session`, or one made for
    `robot`): the live robot's tick and safety filter, with the policy as its command source; stops at the first
    step the success predicate holds. `mask_colour`: grey out that cube in what the policy sees; `keep_frames`:
    a list to append every `keep_every`-th prediction's observation to (faithfulness.OcclusionFrame)."""
    task = make_task(task_name, colour=colour)
    if instruction is None:
        instruction = task.instruction(np.random.default_rng(seed) if paraphrase else None)
    session = session if session is not None else headless_session(robot)
    uncertainties: list[float] = []
    hits = frames = 0
    hits_by_map: dict[str, int] = {}
    mass_sums: dict[str, float] = {}
    cubes = CubeWatcher()
    writer = _VideoWriter(video_path, robot.control_hz) if video_path is not None else None
    heat: np.ndarray | None = None

    def measure(robot, observation, out) -> None:  # before the action: the scene the policy saw
        nonlocal hits, frames, heat
        if out is not None:
            uncertainties.append(_scalar(out.uncertainty))
            if keep_frames is not None and keep_every > 0 and (len(uncertainties) - 1) % keep_every == 0:
                keep_frames.append(OcclusionFrame(_policy_obs(observation, source.cameras), instruction))
            attention = getattr(out, "attention", None) or {}
            if grounding_camera in attention:
                heat = _map(attention[grounding_camera])
                bbox = cube_bbox(robot, colour, grounding_camera)
                if bbox is not None:
                    frames += 1
                    hits += attention_peak_hit(heat, bbox, robot.config.image_hw)
                    hw = robot.config.image_hw
                    shares = mass_shares(heat, scene_regions(robot, colour, grounding_camera, hw), hw)
                    for name, share in shares.items():
                        mass_sums[name] = mass_sums.get(name, 0.0) + share
                    for name in OTHER_GROUNDING_MAPS:
                        maps = getattr(out, name, None) or {}
                        if grounding_camera in maps:
                            hit = attention_peak_hit(_map(maps[grounding_camera]), bbox, robot.config.image_hw)
                            hits_by_map[name] = hits_by_map.get(name, 0) + int(hit)
        if writer is not None:
            writer.add(observation, heat, step=len(source.latencies) - 1,
                       uncertainty=uncertainties[-1] if uncertainties else None, threshold=threshold,
                       instruction=instruction)  # fmt: skip

    source = EvaluationSource(policy, on_prediction=measure, mask_colour=mask_colour)
    session.add_source(source, replace=True)  # this episode's policy and measurements
    success = False
    t0 = time.perf_counter()
    steps = 0
    try:
        session.set_source("idle")  # so that the policy is activated (reset) in the new scene
        session.reset(seed=seed, task=task_name, colour=colour, instruction=instruction)
        session.set_source(source.name)
        cubes.start(robot)
        while steps < max_steps:
            steps += 1
            session.step()
            cubes.update(robot)
            if robot.success():
                success = True
                break
    finally:
        session.set_source("idle")
        if writer is not None:
            writer.close(robot.observe(), success)
    lat_ms = np.asarray(source.latencies) * 1e3
    u = np.asarray(uncertainties)
    return EpisodeResult(
        seed=seed,
        task=task_name,
        colour=colour,
        instruction=instruction,
        success=success,
        steps=steps,
        mean_uncertainty=float(u.mean()) if u.size else None,
        max_uncertainty=float(u.max()) if u.size else None,
        share_above_threshold=float((u > threshold).mean()) if (u.size and threshold is not None) else None,
        predictions=int(u.size),
        grounding_hits=int(hits),
        grounding_frames=int(frames),
        wall_s=time.perf_counter() - t0,
        policy_ms_p50=percentile(lat_ms, 50),
        policy_ms_p95=percentile(lat_ms, 95),
        video=str(video_path) if video_path is not None else None,
        grounding_hits_by_map=hits_by_map,
        attention_mass_sums=mass_sums,
        touched=sorted(cubes.touched),
        wrong_object=cubes.wrong_object(colour),
        uncertainties=[float(x) for x in u],
    )


def evaluate_policy(
    policy,
    cfg: EvalConfig,
    *,
    robot: SimRobot | None = None,
    on_episode: Callable[[EpisodeResult], None] | None = None,
    model_dir: Path | str | None = None,
) -> dict[str, Any]:
    """Roll out `cfg.episodes` seeded episodes and summarise them (JSON-ready dict).

    A robot passed in must render the policy's cameras at the size wanted; by default one is built at the
    policy's image size so frames need no resizing.
    """
    cfg.validate()
    cameras = tuple(policy.config.cameras)
    own_robot = robot is None
    if robot is None:
        size = cfg.image_size or int(policy.config.image_size)
        robot = SimRobot(SimConfig(image_size=size, cameras=cameras))
    max_steps = cfg.max_steps or robot.config.max_episode_steps
    threshold = getattr(policy.config, "uncertainty_threshold", None)
    if cfg.video_dir is not None:
        Path(cfg.video_dir).mkdir(parents=True, exist_ok=True)
    results: list[EpisodeResult] = []
    kept: list[OcclusionFrame] = []
    mask = {None: None, "instructed": cfg.colour, "other": _other_colour(cfg.colour)}[cfg.mask_cube]
    session = headless_session(robot)
    threads_before = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    try:
        for i in range(cfg.episodes):
            seed = cfg.seed_base + i
            video = Path(cfg.video_dir) / f"{cfg.task}_{cfg.colour}_{seed}.mp4" if cfg.video_dir else None
            told = cfg.instructions[i % len(cfg.instructions)].format(colour=cfg.colour) if cfg.instructions else None
            result = run_episode(
                policy, robot, task_name=cfg.task, colour=cfg.colour, seed=seed, max_steps=max_steps,
                paraphrase=cfg.paraphrase, instruction=told, threshold=threshold, video_path=video,
                grounding_camera=cfg.grounding_camera, session=session, mask_colour=mask,
                keep_frames=kept, keep_every=cfg.occlusion_every,
            )  # fmt: skip
            if video is not None and result.success and cfg.keep_videos == "failures":
                video.unlink(missing_ok=True)
                result.video = None
            results.append(result)
            if on_episode is not None:
                on_episode(result)
        occlusion = occlusion_test(policy, kept, camera=cfg.grounding_camera, seed=cfg.seed_base) if kept else None
    finally:
        torch.set_num_threads(threads_before)
        if own_robot:
            robot.close()
    summary = summarize(results, cfg=cfg, threshold=threshold, model_dir=model_dir, image_hw=robot.config.image_hw)
    summary["mask_cube"] = cfg.mask_cube
    if occlusion is not None:
        summary["occlusion"] = occlusion
    return summary


def _other_colour(colour: str) -> str:
    """The cube masked by mask_cube="other": the next colour after the instructed one."""
    return COLOURS[(COLOURS.index(colour) + 1) % len(COLOURS)]


def summarize(
    results: Sequence[EpisodeResult],
    *,
    cfg: EvalConfig | None = None,
    threshold: float | None = None,
    model_dir=None,
    image_hw=None,
) -> dict[str, Any]:
    """Success rate with its Wilson interval, uncertainty and grounding over a list of episodes."""
    summary = success_summary([r.success for r in results])
    all_u = np.concatenate([np.asarray(r.uncertainties) for r in results]) if results else np.zeros(0)
    g_hits = sum(r.grounding_hits for r in results)
    g_frames = sum(r.grounding_frames for r in results)
    failed = [not r.success for r in results]
    scored = [r for r in results if r.max_uncertainty is not None]
    lat95 = [r.policy_ms_p95 for r in results]
    return {
        "model": str(model_dir) if model_dir is not None else None,
        "task": cfg.task if cfg else None,
        "colour": cfg.colour if cfg else None,
        "seed_base": cfg.seed_base if cfg else None,
        "image_hw": list(image_hw) if image_hw else None,
        **summary,
        "mean_steps": float(np.mean([r.steps for r in results])) if results else None,
        "uncertainty_threshold": threshold,
        "share_predictions_above_threshold": (
            float((all_u > threshold).mean()) if (threshold is not None and all_u.size) else None
        ),
        "grounding_rate": g_hits / g_frames if g_frames else None,
        "grounding_frames": g_frames,
        # The same peak-in-box test on the other maps (rollout, spatial keypoints), where the policy has them.
        **{
            f"grounding_rate_{name}": sum(r.grounding_hits_by_map.get(name, 0) for r in results) / g_frames
            for name in OTHER_GROUNDING_MAPS
            if g_frames and any(name in r.grounding_hits_by_map for r in results)
        },
        # Where the headline map's mass lies, mean over grounding frames (issue 15: instructed high, other cubes
        # <= 10%), and how often a rollout went for a cube it was not told about.
        "attention_mass": {
            name: sum(r.attention_mass_sums.get(name, 0.0) for r in results) / g_frames for name in MASS_REGIONS
        }
        if g_frames
        else None,
        "wrong_object_rate": float(np.mean([r.wrong_object for r in results])) if results else None,
        # How well a high uncertainty flags a failed rollout (NaN unless both outcomes occurred).
        "uncertainty_auroc_max": auroc([r.max_uncertainty for r in scored], [not r.success for r in scored])
        if scored and any(failed) and not all(failed)
        else None,
        "uncertainty_auroc_mean": auroc([r.mean_uncertainty for r in scored], [not r.success for r in scored])
        if scored and any(failed) and not all(failed)
        else None,
        "policy_ms_p95_max": float(max(lat95)) if lat95 else None,
        "per_episode": [r.to_dict() for r in results],
    }


# ----------------------------------------------------------------------------------------------- videos
class _VideoWriter:
    """front | wrist side by side, each with the attention heatmap of the last prediction, plus a status line."""

    SCALE = 2  # policy-size frames are tiny; upscale for people

    SETTINGS = EncoderSettings(crf=23, threads=0)  # for people to watch, not to train on: smaller files

    def __init__(self, path: Path, fps: int):
        self.path = Path(path)
        self.fps = fps
        self._writer: VideoWriter | None = None  # opened at the first frame, when its size is known

    def add(self, observation, heat, *, step, uncertainty, threshold, instruction) -> None:
        caption = f"t={step} u={uncertainty:.3f}" if uncertainty is not None else ""
        frame = np.array(self._compose(observation, heat, caption))  # a writable copy: the bar below draws on it
        if threshold is not None and uncertainty is not None and uncertainty > threshold:
            frame[:4] = (255, 0, 0)  # a red bar: less sure than on 95% of good demo frames
        self._write(frame, instruction)

    def close(self, observation, success: bool) -> None:
        if self._writer is None:
            return
        with self._writer:  # finishes the file, or drops the tail if composing the last frame failed
            frame = self._compose(observation, None, "SUCCESS" if success else "FAIL")
            for _ in range(self.fps // 2):
                self._write(frame, None)

    def _compose(self, observation, heat, text: str) -> np.ndarray:
        panels = []
        for cam, img in observation.images.items():
            img = np.asarray(img)
            if cam == "front" and heat is not None:
                img = _overlay(img, heat)
            panels.append(img)
        frame = np.concatenate(panels, axis=1)
        frame = frame.repeat(self.SCALE, axis=0).repeat(self.SCALE, axis=1)
        h, w = frame.shape[:2]
        frame = frame[: h - h % 2, : w - w % 2].copy()
        if text:
            frame = _draw_text(frame, text, (4, frame.shape[0] - 14))
        return frame

    def _write(self, frame: np.ndarray, instruction: str | None) -> None:
        if instruction:
            frame = _draw_text(frame, instruction, (4, 6))
        if self._writer is None:
            h, w = frame.shape[:2]
            self._writer = VideoWriter(self.path, fps=self.fps, height=h, width=w, settings=self.SETTINGS)
        self._writer.write(frame)


def _overlay(img: np.ndarray, heat: np.ndarray) -> np.ndarray:
    try:
        from vla_core.attention import overlay_heatmap

        return np.asarray(overlay_heatmap(img, heat, alpha=0.45))
    except ImportError:  # pragma: no cover - before vla_core.attention exists
        from PIL import Image

        h = np.asarray(Image.fromarray((np.clip(heat, 0, 1) * 255).astype(np.uint8)).resize(img.shape[1::-1]))
        out = img.astype(np.float32)
        out[..., 0] = out[..., 0] * 0.55 + h * 0.45
        return out.clip(0, 255).astype(np.uint8)


def _draw_text(frame: np.ndarray, text: str, xy) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    x, y = xy
    draw.text((x + 1, y + 1), text, fill=(0, 0, 0))
    draw.text((x, y), text, fill=(255, 255, 255))
    return np.asarray(img)


def write_report(report: dict, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=float) + "\n")
