"""The persistent job runner: jobs in SQL (queue), run by worker processes (worker), one handler per kind
(handlers), each handed a JobContext (context). Importing the package registers the built-in kinds (evaluate,
export, train)."""

from backend.jobs import evaluate as _evaluate  # noqa: F401  (registers the "evaluate" kind)
from backend.jobs import export as _export  # noqa: F401  (registers the "export" kind)
from backend.jobs import train as _train  # noqa: F401  (registers the "train" kind; torch loads only when one runs)
from backend.jobs.context import JobContext, JobStopped
from backend.jobs.handlers import get_handler, known_kinds, load_plugins, register_handler
from backend.jobs.queue import JobInfo, JobQueue, job_dir
from backend.jobs.worker import Worker, default_threads

__all__ = [
    "JobContext",
    "JobInfo",
    "JobQueue",
    "JobStopped",
    "Worker",
    "default_threads",
    "get_handler",
    "job_dir",
    "known_kinds",
    "load_plugins",
    "register_handler",
]
