"""Export jobs: a dataset or a snapshot written as LeRobot v3.0 under <data dir>/exports/, run by a worker.

    job = submit_export(queue, store, snapshots, target="dataset", name="pick_red", user="alice")

The config names what to export and where: ``{"target": "dataset"|"snapshot", "name": ..., "out":
"exports/<folder>"}`` (relative to the data dir, chosen at submit time so the UI can show it at once). The export
writes into a hidden sibling folder and renames it into place (storage.lerobot_v3), so a killed or cancelled
export leaves no half folder; a re-run (re-queued after its worker died, resumed) first removes what a killed
attempt left, and one whose folder is complete already (killed after the rename) just reports it.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, Literal

from backend.jobs.context import JobContext, JobStopped
from backend.jobs.handlers import register_handler
from backend.jobs.queue import JobInfo, JobQueue
from storage.errors import NotFoundError
from storage.models import utcnow

KIND = "export"
EXPORTS_DIR = "exports"
Target = Literal["dataset", "snapshot"]
_STEPS_RE = re.compile(r"^(\d+)/(\d+) steps$")  # the message the handler reports (export_steps reads it back)


def submit_export(queue: JobQueue, store: Any, snapshots: Any, *, target: Target, name: str, user: str) -> JobInfo:
    """Queue an export; NotFoundError at once (nothing queued) if the dataset or snapshot does not exist."""
    if target == "dataset":
        if name not in {d.name for d in store.list_datasets()}:
            raise NotFoundError(f"no dataset named {name!r}")
    else:
        snapshots.get(name)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    folder = f"{target}-{safe}-{utcnow().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    config = {"target": target, "name": name, "out": f"{EXPORTS_DIR}/{folder}"}
    return queue.submit(KIND, config, user)


def out_dir(data_dir: Path, job: JobInfo) -> Path:
    """The export's folder (absolute), refusing a config that points outside <data dir>/exports/."""
    root = (Path(data_dir) / EXPORTS_DIR).resolve()
    out = (Path(data_dir) / str(job.config.get("out", ""))).resolve()
    if out.parent != root:
        raise ValueError(f"export job {job.id}: 'out' must name a folder directly in {EXPORTS_DIR}/")
    return out


def export_steps(job: JobInfo) -> tuple[int, int]:
    """(done, total) progress steps (one per episode table and per episode video): the result's once finished,
    else what the running export last reported; (0, 0) before it started."""
    if "steps" in job.result:
        return int(job.result["steps"]), int(job.result["steps"])
    found = _STEPS_RE.match(job.message or "")
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


@register_handler(KIND)
def run_export(ctx: JobContext) -> dict[str, Any]:
    from storage.lerobot_v3 import export_dataset, export_episodes
    from storage.snapshots import SnapshotService

    target, name = ctx.config["target"], ctx.config["name"]
    out = out_dir(ctx.settings.data_dir, ctx.job)
    steps = {"total": 0}
    if (out / "meta" / "info.json").is_file():  # an earlier attempt finished writing, then its worker died
        ctx.log.info("%s is complete already", out)
        return {"out": ctx.config["out"], "steps": _count_steps(out)}
    for leftover in out.parent.glob(f".{out.name}.export-*"):  # a killed attempt's hidden folder
        shutil.rmtree(leftover, ignore_errors=True)

    def progress(done: int, total: int) -> None:
        steps["total"] = total
        ctx.report(done / max(1, total), f"{done}/{total} steps")
        if ctx.should_stop():
            raise JobStopped  # export_episodes removes its hidden folder on the way out

    ctx.log.info("exporting %s %r to %s", target, name, out)
    if target == "dataset":
        export_dataset(ctx.store, name, out, progress=progress)
    elif target == "snapshot":
        infos = SnapshotService(ctx.store.session_factory, ctx.store).episodes(name)
        export_episodes(ctx.store, infos, out, label=f"snapshot {name}", progress=progress)
    else:
        raise ValueError(f"export target must be 'dataset' or 'snapshot', got {target!r}")
    return {"out": ctx.config["out"], "steps": steps["total"]}


def _count_steps(out: Path) -> int:
    """The step count of a finished export: its episodes times (1 + its video features)."""
    info = json.loads((out / "meta" / "info.json").read_text())
    videos = sum(1 for f in info.get("features", {}).values() if f.get("dtype") == "video")
    return int(info.get("total_episodes", 0)) * (1 + videos)
