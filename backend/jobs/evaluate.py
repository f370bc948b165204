"""Evaluation jobs: a registered model rolled out in the sim on fixed seeds, closed-loop success per task and colour
with Wilson intervals, uncertainty and grounding (backend.services.evaluation, the code `run.py eval` runs).

    job = submit_evaluation(queue, registry, EvaluationRequest(model_id=3, episodes=20), user="alice")

Seeds: episode i of a colour uses ``seed_bases[colour] + i``. The defaults are the test seeds (100000 red, 101000
green, 102000 blue: disjoint from the training scenes and from the validation seeds checkpoint selection uses), so
two models evaluated with the same request are compared on the same scenes. The job's folder holds
``evaluation.json`` (every episode); its result is the summary the registry shows with the model
(ModelRegistry.evaluations) and compares between models. Resumable: groups finished by an earlier attempt are
kept in ``groups/<task>_<colour>.json`` and not rolled out again. ``videos/<task>_<colour>_<seed>.mp4`` holds the
failed rollouts' videos with the attention overlay (or every rollout's, or none: EvaluationRequest.videos), listed
in the result's ``failure_videos`` and served by GET /api/jobs/{id}/videos/{name}.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.jobs.context import JobContext, JobStopped
from backend.jobs.handlers import register_handler
from backend.jobs.queue import JobInfo, JobQueue

KIND = "evaluate"
TEST_SEEDS = {"red": 100_000, "green": 101_000, "blue": 102_000}  # the seeds `run.py eval` and bench_vla use
MAX_EPISODES = 1000  # per (task, colour)
VIDEO_CHOICES = ("failures", "all", "none")
VIDEOS_DIR = "videos"  # in the job's folder: <task>_<colour>_<seed>.mp4, served by GET /api/jobs/{id}/videos/{name}
SUMMARY_KEYS = ("success_rate", "successes", "episodes", "wilson_95", "mean_steps", "grounding_rate",
                "grounding_rate_keypoint_attention", "attention_mass", "wrong_object_rate", "uncertainty_auroc_max",
                "uncertainty_auroc_mean", "policy_ms_p95_max")  # fmt: skip
OCCLUSION_EVERY = 10  # the occlusion test runs on every 10th prediction's frame (faithfulness.occlusion_test)


@dataclass(frozen=True)
class EvaluationRequest:
    """`tasks` x `colours` (None: every sim colour), `episodes` per pair from `seed_bases` (None: TEST_SEEDS)."""

    model_id: int
    tasks: tuple[str, ...] = ("pick",)
    colours: tuple[str, ...] | None = None
    episodes: int = 10
    seed_bases: dict[str, int] | None = None
    max_steps: int = 200
    suite: str | None = None  # a named suite (backend.services.eval_suites) fixes all of the above
    gate: dict[str, Any] | None = None  # continual learning's A/B gate, decided when this job ends (services.continual)
    videos: str = "failures"  # MP4s with the attention overlay in the job's videos/: "failures", "all" or "none"


def submit_evaluation(queue: JobQueue, registry: Any, request: EvaluationRequest, *, user: str) -> JobInfo:
    """Check the request, then queue it; nothing is queued on any error. NotFoundError for an unknown model;
    ModelIntegrityError for one whose files are missing or altered; ValueError for a task or colour the sim does
    not know, a bad count, or a model the sim cannot drive (cameras, state or action size)."""
    from backend.services.eval_suites import get_suite
    from backend.services.models import ModelIntegrityError
    from backend.sim import CAMERAS, COLOURS, make_task
    from backend.sim.sim_robot import ARM_JOINTS

    instructions = None
    scene: dict[str, Any] = {}
    if request.suite is not None:
        suite = get_suite(request.suite)  # ValueError naming the known suites
        request = EvaluationRequest(model_id=request.model_id, tasks=suite.tasks, colours=suite.colours,
                                    episodes=suite.episodes, seed_bases=dict(suite.seed_bases),
                                    max_steps=suite.max_steps, suite=suite.name, gate=request.gate,
                                    videos=request.videos)  # fmt: skip
        instructions = list(suite.instructions) if suite.instructions else None
        scene = {"light_jitter": suite.light_jitter, "colour_jitter": suite.colour_jitter, "mask_cube": suite.mask_cube,
                 "layout": suite.layout}  # fmt: skip
    info = registry.get(request.model_id)
    problems = registry.verify(request.model_id)
    if problems:
        raise ModelIntegrityError(info.label, problems)
    if not 1 <= request.episodes <= MAX_EPISODES:
        raise ValueError(f"episodes must be between 1 and {MAX_EPISODES}, got {request.episodes}")
    if request.videos not in VIDEO_CHOICES:
        raise ValueError(f"videos must be one of {', '.join(VIDEO_CHOICES)}, got {request.videos!r}")
    if request.max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {request.max_steps}")
    colours = list(request.colours or COLOURS)
    bases = {**TEST_SEEDS, **(request.seed_bases or {})}
    tasks = list(dict.fromkeys(request.tasks))
    if not tasks:
        raise ValueError("name at least one task")
    for task in tasks:
        for colour in colours:
            make_task(task, colour=colour)  # UnknownTaskError (a ValueError) names the valid ones
    for colour in colours:
        if colour not in bases or not isinstance(bases[colour], int) or bases[colour] < 0:
            raise ValueError(f"no seed base for colour {colour!r} (a non-negative integer)")
    missing = sorted(set(info.config.get("cameras") or ()) - set(CAMERAS))
    if missing:
        raise ValueError(f"{info.label} needs camera(s) {', '.join(missing)}, which the sim does not render")
    arm = len(ARM_JOINTS) + 1  # joints + gripper, for state and action alike
    for key in ("state_dim", "action_dim"):
        if key in info.config and int(info.config[key]) != arm:
            raise ValueError(f"{info.label} has {key} {info.config[key]}; the sim arm has {arm}")
    seeds = {f"{t}/{c}": [bases[c], request.episodes] for t in tasks for c in colours}
    config = {"model_id": info.id, "model": info.label, "seeds": seeds, "max_steps": int(request.max_steps),
              "suite": request.suite, "instructions": instructions, "videos": request.videos, **scene}  # fmt: skip
    if request.gate is not None:
        config["gate"] = dict(request.gate)
    return queue.submit(KIND, config, user)


@register_handler(KIND)
def run_evaluation(ctx: JobContext) -> dict[str, Any]:
    from backend.services.evaluation import EvalConfig, evaluate_policy, summarize
    from backend.services.faithfulness import brief, pool_occlusion
    from backend.services.models import ModelRegistry
    from backend.services.rollout_log import RolloutLog
    from backend.sim import SimConfig, SimRobot

    config = ctx.config
    registry = ModelRegistry(ctx.store.session_factory, ctx.settings.models_dir)
    rollouts = RolloutLog(ctx.store.session_factory)
    model_id = int(config["model_id"])
    policy = registry.load(model_id)  # ModelIntegrityError: the job fails, naming what is wrong
    info = registry.get(model_id)
    groups: dict[str, list[int]] = config["seeds"]
    total = sum(n for _, n in groups.values())
    done_dir = ctx.job_dir / "groups"
    done_dir.mkdir(exist_ok=True)
    cameras = tuple(policy.config.cameras)
    robot = SimRobot(SimConfig(image_size=int(policy.config.image_size), cameras=cameras,
                               light_jitter=bool(config.get("light_jitter")),
                               colour_jitter=bool(config.get("colour_jitter")),
                               layout=config.get("layout") or "uniform"))  # fmt: skip
    reports: dict[str, dict] = {}
    finished = 0
    try:
        for group, (base, episodes) in groups.items():
            task, colour = group.split("/")
            saved = done_dir / f"{task}_{colour}.json"
            if saved.exists():  # a group an earlier attempt finished
                reports[group] = json.loads(saved.read_text())
                finished += episodes
                continue
            done_in_group: list[bool] = []

            def on_episode(result, group=group, done_in_group=done_in_group) -> None:
                nonlocal finished
                finished += 1
                done_in_group.append(result.success)
                ctx.report(finished / total, f"{group}: {sum(done_in_group)}/{len(done_in_group)} succeeded "
                                             f"({finished}/{total} rollouts)")  # fmt: skip
                if ctx.should_stop():  # between rollouts: the group is not saved, a resume rolls it out again
                    raise JobStopped()

            told = tuple(config["instructions"]) if config.get("instructions") else None
            videos = config.get("videos", "none")
            cfg = EvalConfig(task=task, colour=colour, episodes=episodes, seed_base=base,
                             max_steps=config["max_steps"], instructions=told,
                             video_dir=None if videos == "none" else ctx.job_dir / VIDEOS_DIR,
                             keep_videos="all" if videos == "all" else "failures",
                             occlusion_every=OCCLUSION_EVERY, mask_cube=config.get("mask_cube"))  # fmt: skip
            report = evaluate_policy(policy, cfg, robot=robot, on_episode=on_episode)
            _write_json(saved, report)
            reports[group] = report
            # Every rollout of the group in SQL, replacing what an interrupted attempt may have written (idempotent).
            rollouts.replace_evaluation_group(ctx.id, task, colour, [
                _rollout_record(e, info, ctx.id, config.get("suite"), ctx.job.created_by) for e in report["per_episode"]
            ])  # fmt: skip
            ctx.log.info("%s: %d/%d succeeded", group, report["successes"], report["episodes"])
    finally:
        robot.close()
    everything = [e for r in reports.values() for e in r["per_episode"]]
    overall = summarize(
        [_episode(e) for e in everything], threshold=getattr(policy.config, "uncertainty_threshold", None)
    )
    overall["occlusion"] = pool_occlusion([r.get("occlusion") for r in reports.values()])
    _write_json(ctx.job_dir / "evaluation.json", {"model": info.label, "seeds": groups, "overall": overall,
                                                  "groups": reports})  # fmt: skip
    result = {"model_id": model_id, "seeds": groups, "max_steps": config["max_steps"], "suite": config.get("suite")}
    result["overall"] = {**{k: overall.get(k) for k in SUMMARY_KEYS}, "occlusion": brief(overall["occlusion"])}
    result["per_group"] = {g: {**{k: r.get(k) for k in SUMMARY_KEYS}, "occlusion": brief(r.get("occlusion"))}
                           for g, r in reports.items()}  # fmt: skip
    # The failures' videos, for the registry's one-click player: [{"group", "seed", "video": file name}, ...].
    result["failure_videos"] = [
        {"group": g, "seed": e["seed"], "video": Path(e["video"]).name}
        for g, r in reports.items() for e in r["per_episode"] if not e["success"] and e.get("video")
    ]  # fmt: skip
    ctx.log.info("%s: %d/%d succeeded overall", info.label, overall["successes"], overall["episodes"])
    if config.get("gate"):  # the second of the gate's two evaluations to finish decides (see services.continual)
        from backend.services.continual import decide

        result["gate"] = decide(config["gate"], registry=registry, session_factory=ctx.store.session_factory,
                                pending={model_id: result})  # fmt: skip
        if result["gate"] is not None:
            ctx.log.info("A/B gate: %s", result["gate"]["reason"])
    return result


VIDEO_NAME = re.compile(r"^[a-z0-9]+_[a-z0-9]+_[0-9]{1,12}\.mp4$")  # what run_evaluation writes, nothing else


def evaluation_video(job_dir: Path, name: str) -> Path | None:
    """The path of an evaluation job's video `name` (<task>_<colour>_<seed>.mp4), or None when the name is not
    one it writes (no path tricks: the name is matched whole) or the file does not exist."""
    if not VIDEO_NAME.match(name):
        return None
    path = Path(job_dir) / VIDEOS_DIR / name
    return path if path.is_file() else None


def _episode(d: dict):
    """An EpisodeResult read back from its saved dict (without the per-prediction trace, which is not saved)."""
    from dataclasses import fields

    from backend.services.evaluation import EpisodeResult

    names = {f.name for f in fields(EpisodeResult)} - {"uncertainties"}
    return EpisodeResult(**{k: d[k] for k in names if k in d})


def _rollout_record(e: dict, info, job_id: int, suite: str | None, user: str | None) -> dict:
    """One evaluation episode (EpisodeResult.to_dict) as a rollout row."""
    return {
        "kind": "evaluation", "model_id": info.id, "model_name": info.name, "model_version": info.version,
        "snapshot_id": info.snapshot_id, "job_id": job_id, "suite": suite, "task": e["task"], "colour": e["colour"],
        "instruction": e["instruction"], "seed": e["seed"], "operator": user, "duration_s": e["wall_s"],
        "steps": e["steps"], "auto_success": bool(e["success"]), "uncertainty_mean": e.get("mean_uncertainty"),
        "uncertainty_max": e.get("max_uncertainty"),
        "extra": {"grounding_rate": e.get("grounding_rate"), "policy_ms_p95": e.get("policy_ms_p95"),
                  "wrong_object": e.get("wrong_object"), "touched": e.get("touched"),
                  "video": Path(e["video"]).name if e.get("video") else None},
    }  # fmt: skip


def _write_json(path, data) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=float))
    os.replace(tmp, path)  # a kill never leaves half a file


__all__ = ["KIND", "TEST_SEEDS", "VIDEO_CHOICES", "EvaluationRequest", "evaluation_video", "submit_evaluation"]
