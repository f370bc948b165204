"""Continual learning, as a rule an engineer switches on per model name (storage.models.LearningRule):

    every `every_n` new corrections of the production model
      -> retrain from them (backend.services.retrain, the rule's mode and preset)          [a training job]
      -> evaluate parent and child on the rule's suite (the parent only if it has no result there yet)
      -> A/B gate: the child is promoted only if Newcombe's 95% interval of (child - parent) success lies above
         `margin`; otherwise it stays a candidate. The decision and its reason are the rule's `last_event`, the
         evaluation job's result and a line in the child's notes.

The chain is carried in job configs, so it survives restarts and runs on any worker: the training job's config
has `after = {"gate": {...}}` (backend.jobs.train queues the evaluations when it has registered the child), each
evaluation job's config has `gate` (backend.jobs.evaluate calls `decide` once it has finished; the second of the
two to finish decides).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage.db import session_scope
from storage.episode_meta import validate_name
from storage.errors import NotFoundError
from storage.models import LearningRule, utcnow

__all__ = ["GATE_ACTOR", "LearningRules", "RuleInfo", "decide", "on_rollout"]

GATE_ACTOR = "continual-learning"  # who the audit log and the notes say promoted a model
MAX_EVERY_N = 10_000


@dataclass(frozen=True)
class RuleInfo:
    model_name: str
    enabled: bool
    every_n: int
    mode: str
    suite: str
    preset: str
    margin: float
    corrections_seen: int
    created_by: str | None
    updated_at: datetime
    last_event: str | None


def _info(r: LearningRule) -> RuleInfo:
    return RuleInfo(r.model_name, r.enabled, r.every_n, r.mode, r.suite, r.preset, r.margin, r.corrections_seen,
                    r.created_by, r.updated_at, r.last_event)  # fmt: skip


class LearningRules:
    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._sf = session_factory

    def set(self, model_name: str, *, enabled: bool, every_n: int, mode: str, suite: str, preset: str,
            margin: float, user: str) -> RuleInfo:  # fmt: skip
        """Create or change the rule of `model_name` (checked first: a bad value changes nothing)."""
        from backend.jobs.train import PRESETS
        from backend.services.eval_suites import get_suite
        from backend.services.retrain import MODES

        validate_name(model_name, "model name")
        if not 1 <= int(every_n) <= MAX_EVERY_N:
            raise ValueError(f"every_n must be between 1 and {MAX_EVERY_N} corrections, got {every_n}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
        get_suite(suite)
        if not 0.0 <= float(margin) < 1.0:
            raise ValueError(f"margin must be in [0, 1), got {margin}")
        with session_scope(self._sf) as s:
            row = s.scalar(select(LearningRule).where(LearningRule.model_name == model_name))
            if row is None:
                row = LearningRule(model_name=model_name, created_by=user, corrections_seen=0)
                s.add(row)
            row.enabled, row.every_n, row.mode, row.suite = bool(enabled), int(every_n), mode, suite
            row.preset, row.margin, row.updated_at = preset, float(margin), utcnow()
            row.last_event = f"rule {'on' if enabled else 'off'} (set by {user})"
            s.flush()
            return _info(row)

    def get(self, model_name: str) -> RuleInfo:
        with self._sf() as s:
            row = s.scalar(select(LearningRule).where(LearningRule.model_name == model_name))
            if row is None:
                raise NotFoundError(f"no learning rule for {model_name!r}")
            return _info(row)

    def find(self, model_name: str) -> RuleInfo | None:
        try:
            return self.get(model_name)
        except NotFoundError:
            return None

    def note(self, model_name: str, event: str, *, corrections_seen: int | None = None) -> None:
        with session_scope(self._sf) as s:
            row = s.scalar(select(LearningRule).where(LearningRule.model_name == model_name))
            if row is None:
                return
            row.last_event, row.updated_at = event, utcnow()
            if corrections_seen is not None:
                row.corrections_seen = corrections_seen


def on_rollout(record: dict[str, Any], *, curation: Any, registry: Any, queue: Any) -> Any | None:
    """Called for every ended live rollout: when it brought a correction of a model whose rule is on and the
    rule's count is reached, queue the retrain (with the gate after it). Returns the training job, or None."""
    from backend.services.retrain import corrections_of, launch_retrain

    model_id = record.get("model_id")
    if not record.get("interventions") or record.get("episode_id") is None or model_id is None:
        return None
    rules = LearningRules(curation.store.session_factory)
    parent = registry.get(model_id)
    rule = rules.find(parent.name)
    if rule is None or not rule.enabled:
        return None
    count = len(corrections_of(curation.store, model_id))
    if count - rule.corrections_seen < rule.every_n:
        rules.note(parent.name, f"{count - rule.corrections_seen}/{rule.every_n} new corrections of {parent.label}")
        return None
    gate = {"rule": parent.name, "parent_id": parent.id, "suite": rule.suite, "margin": rule.margin}
    try:
        snapshot, job = launch_retrain(queue, curation, registry, model_id=model_id, mode=rule.mode,
                                       preset=rule.preset, user=rule.created_by or GATE_ACTOR, after={"gate": gate})
    except (ValueError, LookupError) as error:  # e.g. a parent without a training snapshot: say why, stay off
        rules.note(parent.name, f"could not retrain {parent.label}: {error}", corrections_seen=count)
        return None
    rules.note(parent.name, f"retrain job {job.id} queued from {count} corrections of {parent.label} "
                            f"(snapshot {snapshot.name})", corrections_seen=count)  # fmt: skip
    return job


def decide(gate: dict[str, Any], *, registry: Any, session_factory: sessionmaker[Session],
           pending: dict[int, dict] | None = None) -> dict[str, Any] | None:  # fmt: skip
    """The A/B gate once parent and child both have an evaluation on the gate's suite (None while one is missing).
    Promotes the child only if the lower end of the 95% interval of (child - parent) success exceeds the margin.
    `pending`: {model id: result} of the evaluation job calling this (its row is not marked succeeded yet)."""
    from vla_core.metrics import difference_interval

    child_id, parent_id, suite = gate.get("child_id"), gate["parent_id"], gate["suite"]
    if child_id is None:
        return None
    results = {}
    for key, model_id in (("child", child_id), ("parent", parent_id)):
        done = [e for e in registry.evaluations(model_id) if e.get("suite") == suite]
        if pending and model_id in pending:
            done.insert(0, pending[model_id])
        if not done:
            return None
        overall = done[0]["overall"]
        results[key] = (int(overall["successes"]), int(overall["episodes"]))
    (kc, nc), (kp, np_) = results["child"], results["parent"]
    diff, low, high = difference_interval(kc, nc, kp, np_)
    child, parent = registry.get(child_id), registry.get(parent_id)
    promote = low > float(gate.get("margin", 0.0))
    reason = (f"{child.label} {kc}/{nc} vs {parent.label} {kp}/{np_} on suite {suite}: difference {diff:+.1%}, "
              f"95% interval [{low:+.1%}, {high:+.1%}] "
              + (f"above the margin {gate.get('margin', 0.0):.0%}: promoted" if promote else
                 f"not above the margin {gate.get('margin', 0.0):.0%}: stays a candidate"))  # fmt: skip
    if promote:
        registry.promote(child_id, actor=GATE_ACTOR)
    registry.set_notes(child_id, ((child.notes or "") + "\n" + reason).strip(), actor=GATE_ACTOR)
    LearningRules(session_factory).note(gate["rule"], reason)
    return {"promoted": promote, "reason": reason, "difference": diff, "difference_95": [low, high]}
