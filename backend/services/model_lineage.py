"""Where a registered model came from (parent chain, snapshot and its episodes, job), how it did in evaluation
jobs, and how two models differ (config diff, metrics side by side, whether their closed-loop success was measured
on the same seeds, and their evaluations on the same seeds with the difference's interval)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage.errors import NotFoundError
from storage.models import Job, JobStatus, RegisteredModel
from storage.snapshots import SnapshotService
from vla_core.metrics import difference_interval

if TYPE_CHECKING:
    from backend.services.models import ModelInfo

_MISSING = object()


def lineage_of(session_factory: sessionmaker[Session], row: RegisteredModel) -> dict[str, Any]:
    """{"parents": [nearest first], "snapshot": {..., "episode_ids"} | None, "job": {...} | None}. A parent, snapshot
    or job deleted since is simply absent (the foreign keys are ON DELETE SET NULL)."""
    parents, seen = [], {row.id}
    with session_factory() as s:
        parent_id = row.parent_id
        while parent_id is not None and parent_id not in seen:  # `seen`: a hand-edited cycle cannot loop forever
            parent = s.get(RegisteredModel, parent_id)
            if parent is None:
                break
            parents.append(_model_ref(parent))
            seen.add(parent.id)
            parent_id = parent.parent_id
        job = s.get(Job, row.job_id) if row.job_id is not None else None
        job_ref = None if job is None else {"id": job.id, "kind": job.kind, "status": str(job.status.value)}
        if job is not None:
            job_ref |= {"created_by": job.created_by, "finished_at": job.finished_at}
    return {"parents": parents, "snapshot": _snapshot_ref(session_factory, row.snapshot_id), "job": job_ref}


def _model_ref(row: RegisteredModel) -> dict[str, Any]:
    fields = ("id", "name", "version", "snapshot_id", "job_id")
    return {k: getattr(row, k) for k in fields} | {"stage": str(row.stage.value)}


def _snapshot_ref(session_factory: sessionmaker[Session], snapshot_id: int | None) -> dict[str, Any] | None:
    if snapshot_id is None:
        return None
    try:
        snap = SnapshotService(session_factory, store=None).get(snapshot_id)  # reads rows only: no store needed
    except NotFoundError:
        return None
    return {
        "id": snap.id,
        "name": snap.name,
        "dataset": snap.dataset,
        "num_episodes": snap.num_episodes,
        "episode_ids": [episode_id for episode_id, _ in snap.episodes or []],
    }


EVALUATIONS_SCANNED = 2000  # newest finished evaluation jobs looked through for one model's


def evaluations_of(session_factory: sessionmaker[Session], model_id: int, *, limit: int = 50) -> list[dict[str, Any]]:
    """The model's succeeded evaluation jobs, newest first: {"job_id", "finished_at", "created_by", "seeds",
    "max_steps", "overall", "per_group", "suite", "failure_videos"} (backend.jobs.evaluate writes the result)."""
    from backend.jobs.evaluate import KIND

    query = (
        select(Job)
        .where(Job.kind == KIND, Job.status == JobStatus.SUCCEEDED)
        .order_by(Job.id.desc())
        .limit(EVALUATIONS_SCANNED)
    )
    out = []
    with session_factory() as s:
        for job in s.scalars(query):
            result = job.result or {}
            if result.get("model_id") != model_id:
                continue
            keys = ("seeds", "max_steps", "overall", "per_group", "suite", "failure_videos")
            out.append({"job_id": job.id, "finished_at": job.finished_at, "created_by": job.created_by,
                        **{k: result.get(k) for k in keys}})  # fmt: skip
            if len(out) >= limit:
                break
    return out


def compare_evaluations(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For every set of seeds (and step limit) both models were evaluated on, the newest evaluation of each and
    the difference of their success rates with its 95% interval (significant when it excludes 0)."""

    def key(e: dict) -> str:
        return repr((sorted((e.get("seeds") or {}).items()), e.get("max_steps")))

    newest_b: dict[str, dict] = {}
    for e in b:
        newest_b.setdefault(key(e), e)
    pairs, seen = [], set()
    for e in a:
        k = key(e)
        if k in seen or k not in newest_b:
            continue
        seen.add(k)
        other = newest_b[k]
        oa, ob = e.get("overall") or {}, other.get("overall") or {}
        pair = {"seeds": e["seeds"], "max_steps": e.get("max_steps"), "a": e, "b": other}
        if oa.get("episodes") and ob.get("episodes"):
            d, low, high = difference_interval(oa["successes"], oa["episodes"], ob["successes"], ob["episodes"])
            pair |= {"difference": d, "difference_95": [low, high], "significant": not low <= 0.0 <= high}
        pairs.append(pair)
    return pairs


def compare_models(a: ModelInfo, b: ModelInfo, evaluations: tuple[list[dict], list[dict]] = ([], [])) -> dict[str, Any]:
    """The differences between two models, for the side-by-side view (`evaluations`: evaluations_of each)."""
    config_diff = [
        {"key": k, "a": a.config.get(k), "b": b.config.get(k)}
        for k in sorted(set(a.config) | set(b.config))
        if a.config.get(k, _MISSING) != b.config.get(k, _MISSING)
    ]
    keys = sorted((set(a.metrics) | set(b.metrics)) - {"closed_loop"})
    metrics = [{"key": k, "a": a.metrics.get(k), "b": b.metrics.get(k)} for k in keys]
    loop_a, loop_b = a.metrics.get("closed_loop"), b.metrics.get("closed_loop")
    same_seeds, note = _same_seeds(loop_a, loop_b)
    return {
        "config_diff": config_diff,
        "metrics": metrics,
        "closed_loop": {"a": loop_a, "b": loop_b, "same_seeds": same_seeds, "note": note},
        "evaluations": compare_evaluations(*evaluations),
    }


def _same_seeds(a: Any, b: Any) -> tuple[bool | None, str]:
    if not isinstance(a, dict) or not isinstance(b, dict):
        missing = " and ".join(side for side, loop in (("A", a), ("B", b)) if not isinstance(loop, dict))
        return None, f"no closed-loop success recorded for {missing}"
    seeds_a, seeds_b = _seed_set(a.get("seeds")), _seed_set(b.get("seeds"))
    if seeds_a is None or seeds_b is None:
        return None, "closed-loop success of both, but the seeds were not recorded: they may not compare"
    if a.get("task") != b.get("task") or a.get("split") != b.get("split") or seeds_a != seeds_b:
        return False, "closed-loop success measured on different seeds or tasks: the rates do not compare directly"
    return True, f"both measured on the same {len(seeds_a)} seeds: the success rates compare directly"


def _seed_set(seeds: Any) -> set[str] | None:
    """The seeds of a closed-loop record as comparable text: a list of seeds ("7"), or {group: [seeds]} as the
    trainer's selection records them ("pick/red:200000"); None when absent."""
    if isinstance(seeds, list):
        return {str(s) for s in seeds}
    if isinstance(seeds, dict) and all(isinstance(v, list) for v in seeds.values()):
        return {f"{group}:{s}" for group, values in seeds.items() for s in values}
    return None
