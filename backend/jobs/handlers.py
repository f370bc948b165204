"""The job kinds: a registry from kind name to the function a worker calls to run a job of that kind.

    @register_handler("export")
    def export(ctx: JobContext) -> dict:      # the result references, stored in Job.result
        ...

A kind must be registered in the process that submits it (JobQueue.submit refuses an unknown kind with
ValueError) and in the worker that runs it (a worker claims only the kinds it knows). Built-in kinds register when
``backend.jobs`` is imported; more come from plugin modules named in ``Settings.job_plugins`` (``load_plugins``),
imported by the server and by every worker alike.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.jobs.context import JobContext

Handler = Callable[["JobContext"], dict[str, Any]]
KIND_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")  # fits Job.kind (String(32))

_HANDLERS: dict[str, Handler] = {}


def register_handler(kind: str) -> Callable[[Handler], Handler]:
    """Decorator: `fn` runs the jobs of `kind`. Registering a kind twice is a bug (two modules disagree)."""
    if not KIND_RE.fullmatch(kind):
        raise ValueError(f"job kind {kind!r} must match {KIND_RE.pattern}")

    def decorate(fn: Handler) -> Handler:
        if kind in _HANDLERS and _HANDLERS[kind] is not fn:
            raise ValueError(f"job kind {kind!r} is already registered by {_HANDLERS[kind].__module__}")
        _HANDLERS[kind] = fn
        return fn

    return decorate


def get_handler(kind: str) -> Handler:
    """The handler of `kind`; ValueError naming the known kinds if there is none."""
    try:
        return _HANDLERS[kind]
    except KeyError:
        raise ValueError(f"unknown job kind {kind!r}; known kinds: {', '.join(known_kinds()) or 'none'}") from None


def known_kinds() -> list[str]:
    return sorted(_HANDLERS)


def load_plugins(modules: Iterable[str]) -> None:
    """Import each module (dotted name on sys.path) so its @register_handler calls run."""
    for name in modules:
        importlib.import_module(name)
