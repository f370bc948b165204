"""The live rollout being run on a RobotSession: begun at the first tick the policy drives a scene, counted every
tick (steps, the task's success, the operator's takeovers), ended by a reset, a saved take, the policy unloaded,
the session stopped or an abort. The ended record (storage.models.Rollout's columns) goes to a sink, the
rollout log (backend.services.rollout_log.RolloutLog.record), which the web layer installs; the session calls the
sink off the loop thread. The operator (teleop) or the sim's scripted expert driving during the rollout is a
correction (CORRECTING_SOURCES).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

# Sources that correct the policy when they drive during its rollout: the operator (teleop) or, in the sim, the
# scripted expert planning from the current state (an automatic corrector, as DAgger's expert).
CORRECTING_SOURCES = ("teleop", "expert")


@dataclass
class LiveRollout:
    model: dict  # {"id", "name", "version"}
    task: str
    colour: str | None
    instruction: str
    seed: int | None
    operator: str | None
    started_at: datetime
    started_clock: float
    steps: int = 0
    success_ever: bool = False
    interventions: int = 0
    intervention_frames: int = 0
    last_source: str = "policy"
    extra: dict[str, Any] = field(default_factory=dict)


class RolloutTracker:
    """Counts one live rollout at a time; `end()` returns its record for the sink (None when none was running)."""

    def __init__(self) -> None:
        self.current: LiveRollout | None = None
        self.sink: Callable[[dict], Any] | None = None
        self.ended = 0

    def tick(self, *, source: str, success: bool, now: float, scene: Callable[[], dict]) -> None:
        """After each tick's apply: `source` drove it. The rollout begins at the policy's first tick in a scene."""
        r = self.current
        if r is None:
            if source != "policy":
                return
            info = scene()  # model, task, colour, instruction, seed, operator (only read when a rollout begins)
            r = self.current = LiveRollout(started_at=datetime.now(UTC), started_clock=now, **info)
        r.steps += 1
        r.success_ever |= bool(success)
        if source in CORRECTING_SOURCES:
            r.intervention_frames += 1
            if r.last_source not in CORRECTING_SOURCES:
                r.interventions += 1
        r.last_source = source

    def end(self, *, now: float, policy_status: dict | None, ended_by: str, episode_id: int | None = None,
            human_success: bool | None = None, aborted: str | None = None) -> dict | None:  # fmt: skip
        r, self.current = self.current, None
        if r is None:
            return None
        self.ended += 1
        stats = policy_status or {}
        return {
            "kind": "live",
            "model_id": r.model.get("id"),
            "model_name": r.model.get("name"),
            "model_version": r.model.get("version"),
            "task": r.task,
            "colour": r.colour,
            "instruction": r.instruction,
            "seed": r.seed,
            "operator": r.operator,
            "started_at": r.started_at,
            "duration_s": max(0.0, now - r.started_clock),
            "steps": r.steps,
            "auto_success": r.success_ever,
            "human_success": human_success,
            "interventions": r.interventions,
            "intervention_frames": r.intervention_frames,
            "help_prompts": int((stats.get("help") or {}).get("prompts", 0)),
            "uncertainty_mean": stats.get("uncertainty_mean"),
            "uncertainty_max": stats.get("uncertainty_max"),
            "episode_id": episode_id,
            "aborted": aborted is not None,
            "extra": {"ended_by": ended_by, **({"abort_reason": aborted} if aborted else {}), **r.extra},
        }
