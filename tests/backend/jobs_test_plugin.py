"""A job kind for the worker tests only, loaded into `run.py worker` with VLA_JOB_PLUGINS=jobs_test_plugin (and
tests/backend on PYTHONPATH): "test.sleep" works through config["steps"] steps of config["step_s"] seconds,
keeping its step in a checkpoint file in the job folder, so a re-queued or resumed job continues where its last
attempt stopped. Every attempt appends "<pid> <first step>" to runs.log there: the tests read who ran what. With
config["hold"], the last step waits until a file of that name appears in the job folder (the test says when the
job may end)."""

from __future__ import annotations

import os
import time

from backend.jobs import JobContext, JobStopped, register_handler

KIND = "test.sleep"


@register_handler(KIND)
def sleep_steps(ctx: JobContext) -> dict:
    checkpoint = ctx.job_dir / "step.txt"
    start = int(checkpoint.read_text()) if checkpoint.exists() else 0
    with open(ctx.job_dir / "runs.log", "a") as runs:
        runs.write(f"{os.getpid()} {start}\n")
    steps, step_s = int(ctx.config["steps"]), float(ctx.config["step_s"])
    for step in range(start, steps):
        if ctx.should_stop():
            raise JobStopped
        time.sleep(step_s)
        while step + 1 == steps and ctx.config.get("hold") and not (ctx.job_dir / ctx.config["hold"]).exists():
            if ctx.should_stop():
                raise JobStopped
            time.sleep(0.02)
        tmp = checkpoint.with_suffix(".tmp")
        tmp.write_text(str(step + 1))
        os.replace(tmp, checkpoint)  # a kill never leaves half a checkpoint
        ctx.write_metrics({"step": step + 1})
        ctx.report((step + 1) / steps, f"step {step + 1}/{steps}")
    return {"steps": steps, "first_step": start, "pid": os.getpid()}
