"""A worker process: claims queued jobs one at a time and runs each in this process, beside a heartbeat thread.

    worker = Worker(queue, settings, store, "host:1234")
    worker.install_signal_handlers()   # SIGTERM/SIGINT: stop the running job, hand it back to the queue, exit
    worker.run()                       # until a signal; run(once=True) stops when the queue is empty

The loop re-queues jobs whose worker died (stale heartbeat), claims the oldest queued job of a kind it knows, and
records how the handler ended: a result -> succeeded, an exception -> failed (traceback in `error` and the job
log; the loop carries on), a stop -> cancelled (cancel requested), queued again (this worker shutting down) or
nothing (the job was taken away because its heartbeat went stale: someone else runs it now).

The heartbeat thread writes the handler's progress and `heartbeat_at` every `heartbeat_s` (sooner after a
report, at most 4 times a second) and turns what it learns into `ctx.should_stop()`: a cancel request, a lost
job, or a shutdown signal.

Draining (SIGUSR1, `drain()`, or the parent process gone: `parent_pid`, the server that embeds this worker) lets
the running job go on to its end, claims nothing more, then exits. So restarting `run.py serve` leaves a running
job running: the old embedded worker finishes it while the new server starts a worker of its own.

CPU threads: a job may use `threads` (torch intra-op threads and the OpenMP/BLAS variables; default every core
but one, which stays with the robot's control loop and the web server).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

from backend.jobs.context import JobContext, JobStopped
from backend.jobs.handlers import get_handler, known_kinds
from backend.jobs.queue import JobInfo, JobQueue, JobStatus
from backend.settings import Settings

log = logging.getLogger("backend.jobs")

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
MIN_WRITE_INTERVAL_S = 0.25  # progress writes at most this often, however often a handler reports
ERROR_MAX_CHARS = 20_000  # of a traceback kept in Job.error (the job log has all of it)


def default_threads() -> int:
    """Every core but one (that one stays with the control loop), and at least one."""
    return max(1, (os.cpu_count() or 1) - 1)


def apply_thread_limit(threads: int) -> None:
    """Limit this process's compute threads: the OpenMP/BLAS variables (read when torch or numpy's BLAS starts
    its pools) and, if torch is loaded already, torch's intra-op threads now."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


class Worker:
    """Runs jobs from `queue`. Timing defaults come from Settings (job_heartbeat_s, job_stale_after_s,
    worker_threads); `kinds`: the job kinds it claims (default: every registered kind)."""

    def __init__(
        self,
        queue: JobQueue,
        settings: Settings,
        store: Any,
        name: str,
        *,
        poll_s: float = 1.0,
        heartbeat_s: float | None = None,
        stale_after_s: float | None = None,
        threads: int | None = None,
        kinds: list[str] | None = None,
        parent_pid: int | None = None,
    ) -> None:
        self.queue, self.settings, self.store, self.name = queue, settings, store, name
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else settings.job_heartbeat_s
        self.stale_after_s = stale_after_s if stale_after_s is not None else settings.job_stale_after_s
        if self.stale_after_s < 3 * self.heartbeat_s:
            # A busy machine delays heartbeats; a limit too close to the interval re-queues live jobs (run twice).
            raise ValueError(
                f"the stale limit ({self.stale_after_s} s) must be at least 3 heartbeat intervals "
                f"({self.heartbeat_s} s)"
            )
        self.threads = threads or settings.worker_threads or default_threads()
        self.kinds = kinds
        self.parent_pid = parent_pid
        self._shutdown = threading.Event()
        self._draining = threading.Event()  # finish the running job, claim no more
        self._drain_signalled = False  # set by the SIGUSR1 handler
        self._signalled = False  # set by the signal handler (which must not take locks: see _on_signal)
        self._current: JobContext | None = None

    # -- the loop ------------------------------------------------------------------------------------------------------
    def run(self, *, once: bool = False) -> int:
        """Claim and run jobs until shut down (or, with `once`, until none is queued); returns how many ran."""
        ran = 0
        while not self.stopping():
            try:
                requeued = self.queue.requeue_stale(self.stale_after_s)
                if requeued:
                    log.warning("re-queued jobs %s: their workers stopped sending heartbeats", requeued)
                job = self.queue.claim(self.name, kinds=self.kinds if self.kinds is not None else known_kinds())
            except Exception:  # noqa: BLE001 - the database is away (restart, network): try again shortly
                log.warning("cannot reach the job queue; retrying in %s s", self.poll_s, exc_info=True)
                self._shutdown.wait(self.poll_s)
                continue
            if job is None:
                if once:
                    break
                self._shutdown.wait(self.poll_s)
                continue
            apply_thread_limit(self.threads)  # again before each job: the last one may have changed torch's
            try:
                self.run_job(job)
            except Exception:  # noqa: BLE001 - recording the end failed: the job goes stale and is re-queued
                log.exception("could not record how job %d ended", job.id)
            ran += 1
        return ran

    def stopping(self) -> bool:
        """Whether the loop should end (it claims no job once this is true)."""
        return self._signalled or self._shutdown.is_set() or self.draining()

    def draining(self) -> bool:
        if not self._draining.is_set():
            if self._drain_signalled:
                log.info("asked to drain: finishing the running job, then exiting")
                self._draining.set()
            elif self.parent_pid is not None and os.getppid() != self.parent_pid:
                log.warning("the process that started this worker is gone: finishing the running job, then exiting")
                self._draining.set()
        return self._draining.is_set()

    def drain(self) -> None:
        """Let the running job finish, then stop (from another thread)."""
        self._draining.set()

    def shutdown(self) -> None:
        """Stop after the running job was handed back to the queue (from another thread; signals: see below)."""
        self._shutdown.set()
        if self._current is not None:
            self._current.stop("shutdown")

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the worker cleanly (its job goes back to the queue); a second one interrupts
        the handler at once (KeyboardInterrupt), and the job is still handed back. SIGUSR1 drains: the running job
        goes on to its end, then the worker exits."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGUSR1, self._on_drain_signal)

    def _on_drain_signal(self, _signum: int, _frame: Any) -> None:
        self._drain_signalled = True  # a flag, like _on_signal: Event.set takes a lock the main thread may hold

    def _on_signal(self, signum: int, _frame: Any) -> None:
        # Runs in the main thread between two bytecodes, maybe while it holds a lock: only a flag is set here; the
        # heartbeat thread and the loop read it within a fraction of a second.
        if self._signalled:
            raise KeyboardInterrupt
        self._signalled = True

    # -- one job -------------------------------------------------------------------------------------------------------
    def run_job(self, job: JobInfo) -> None:
        """Run `job` (claimed by this worker) to the end and record how it ended (the thread limit is run()'s)."""
        try:
            ctx = JobContext(job, settings=self.settings, store=self.store, threads=self.threads)
        except OSError as error:  # its folder or log cannot be made (disk full, permissions): the job fails
            self.queue.fail(job.id, self.name, f"cannot prepare the job folder: {error}")
            return
        self._current = ctx
        ctx.log.info("%s job %d started on %s (attempt %d)", job.kind, job.id, self.name, job.attempts)
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(ctx, done), name=f"heartbeat-{job.id}", daemon=True)
        beat.start()
        result: Any = None
        error: str | None = None
        interrupted = False
        try:
            try:
                result = get_handler(job.kind)(ctx)
            except JobStopped:
                ctx.log.info("the handler stopped early (%s)", ctx.stop_reason or "it said so")
            except KeyboardInterrupt:  # a second signal
                ctx.stop("shutdown")
                interrupted = True
            except Exception:  # noqa: BLE001 - a job's failure is recorded, never the end of the worker
                error = traceback.format_exc()
                ctx.log.error("failed:\n%s", error)
        finally:
            done.set()
            beat.join()
            try:
                self._record(ctx, result, error)
            finally:
                self._current = None
                ctx.close()
        if interrupted:
            raise KeyboardInterrupt

    def _record(self, ctx: JobContext, result: Any, error: str | None) -> None:
        job_id, reason = ctx.id, ctx.stop_reason
        if reason == "lost":
            ctx.log.warning("job %d was taken from this worker (its heartbeat went stale); nothing recorded", job_id)
            return
        if reason == "cancel":
            self.queue.mark_cancelled(job_id, self.name, result if _is_json_object(result) else None)
            ctx.log.info("cancelled")
        elif reason == "shutdown":
            self.queue.release(job_id, self.name)
            ctx.log.info("handed back to the queue: the worker is shutting down")
        elif error is not None:
            self.queue.fail(job_id, self.name, _tail(error, ERROR_MAX_CHARS))
        elif not _is_json_object(result):
            message = f"the {ctx.kind} handler returned {type(result).__name__}, not a JSON object of references"
            ctx.log.error(message)
            self.queue.fail(job_id, self.name, message)
        elif self.queue.finish(job_id, self.name, result):
            ctx.log.info("succeeded: %s", json.dumps(result)[:1000])
        else:
            ctx.log.warning("job %d was taken from this worker before it finished; its result is dropped", job_id)

    def _heartbeat(self, ctx: JobContext, done: threading.Event) -> None:
        """Every heartbeat_s (sooner after a report): write progress + heartbeat, and learn whether to stop."""
        tick = min(MIN_WRITE_INTERVAL_S, self.heartbeat_s)
        due = time.monotonic() + self.heartbeat_s
        while not done.is_set():
            ctx.progress_changed.wait(tick)
            if done.is_set():
                return
            if self._signalled or self._shutdown.is_set():
                ctx.stop("shutdown")  # draining is not stopping: the job runs on
            self.draining()  # notices a parent that went away (and logs it once)
            now = time.monotonic()
            if not (ctx.progress_changed.is_set() or now >= due):
                continue
            ctx.progress_changed.clear()
            due = now + self.heartbeat_s
            progress, message = ctx.progress()
            try:
                ours = self.queue.heartbeat(ctx.id, self.name, progress, message)
                if not ours and not ctx.should_stop():
                    job = self.queue.get(ctx.id)
                    mine = job.status == JobStatus.RUNNING and job.worker == self.name
                    ctx.stop("cancel" if mine and job.cancel_requested else "lost")
                    ctx.log.info("stopping: %s", "cancel requested" if ctx.stop_reason == "cancel" else "job lost")
            except Exception:  # noqa: BLE001 - a database hiccup: the next beat tries again
                log.warning("heartbeat of job %d failed", ctx.id, exc_info=True)
            done.wait(tick)  # progress writes at most every `tick`


def _is_json_object(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]
