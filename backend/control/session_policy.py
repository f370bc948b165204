"""The policy side of RobotSession (a mixin it inherits): installing a policy source, the operator stepping in
(take over, hand back, continue after a request for help), overlays on or off, and the live rollout handed to the
rollout log when it ends. Split out of backend/control/session.py so each file reads in one sitting; the methods
use the session's own state (`_sources`, `_source`, `_robot_lock`, `_rollouts`, ...), documented there.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from backend.control.rollout_tracker import CORRECTING_SOURCES

log = logging.getLogger("backend.control.session")


class PolicyControl:
    def set_policy(self, source) -> None:
        """Install `source` (a PolicySource, or None to remove it) as the "policy" source; the previous one is
        closed. If the old policy was driving, the arm holds (idle) until the new one is started."""
        self._end_rollout("unloaded")
        with self._robot_lock:
            old = self._sources.pop("policy", None)
            if old is not None and self._source is old:
                old.deactivate()
                self._source = self._sources["idle"]
            if source is not None:
                if source.name != "policy":
                    raise ValueError(f"a policy source must be named 'policy', got {source.name!r}")
                self._sources["policy"] = source
        if old is not None and hasattr(old, "close"):
            old.close()
        self._event("policy removed" if source is None else f"policy loaded: {source.model.name}")

    @property
    def policy(self):
        """The installed PolicySource, or None."""
        return self._sources.get("policy")

    def take_over(self, by: str = "teleop") -> None:
        """The operator takes over from the policy (within one tick); a take in progress goes on recording, its
        frames from now flagged `intervention` until the policy gets control back (`hand_back`). `by="expert"`:
        the sim's scripted expert corrects instead, planning from the current state (DAgger's expert)."""
        if by not in CORRECTING_SOURCES or by not in self._sources:
            available = [s for s in CORRECTING_SOURCES if s in self._sources]
            raise ValueError(f"cannot take over by {by!r}; this robot offers {', '.join(available)}")
        if self._source.name != "policy" and not (self.policy is not None and self._source.name == "idle"):
            raise ValueError(f"the policy is not driving (source {self._source.name!r}); nothing to take over")
        self._taking_over = True
        try:
            self.set_source(by)
        finally:
            self._taking_over = False
        if by == "teleop":
            self.mailbox.clear()  # the operator starts from a standstill, not from a stale command
        self._event("operator took over from the policy" if by == "teleop" else "the scripted expert took over")

    def hand_back(self) -> None:
        """Give control back to the policy after a takeover: it predicts afresh from the current observation."""
        policy = self.policy
        if policy is None:
            raise ValueError("no policy is loaded")
        self.set_source("policy")
        policy.resume()
        self._event("control handed back to the policy")

    def continue_policy(self) -> None:
        """Answer a request for help with 'continue': the policy drives on (and may ask again)."""
        policy = self.policy
        if policy is None or not policy.help.asking:
            raise ValueError("the policy is not asking for help")
        policy.resume()
        self._event("operator let the policy continue")

    def set_overlays(self, enabled: bool) -> None:
        self._overlays = bool(enabled)

    # ------------------------------------------------------------------ the rollout log
    def set_rollout_sink(self, sink) -> None:
        """`sink(record)` stores each ended live rollout (backend.services.rollout_log.RolloutLog.record)."""
        self._rollouts.sink = sink

    def _rollout_scene(self) -> dict:
        holder = self.lease.holder
        policy = self.policy
        return {
            "model": dict(policy.status()["model"]) if policy is not None else {},
            "task": self._task.name,
            "colour": getattr(self._task, "colour", None),
            "instruction": self._instruction,
            "seed": self._seed,
            "operator": holder.operator if holder else None,
        }

    def _end_rollout(self, ended_by: str, **kwargs) -> None:
        """End the live rollout (if one runs) and hand its record to the sink: here, or on the save thread when
        called from the loop thread (a database write takes longer than a tick)."""
        policy = self.policy
        record = self._rollouts.end(now=self.clock(), policy_status=policy.status() if policy else None,
                                    ended_by=ended_by, **kwargs)  # fmt: skip
        sink = self._rollouts.sink
        if record is None or sink is None:
            return
        if threading.current_thread() is self._thread:
            if self._saver is None:
                self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="episode-save")
            self._saver.submit(self._store_rollout, sink, record)
        else:
            self._store_rollout(sink, record)

    def _store_rollout(self, sink, record: dict) -> None:
        try:
            sink(record)
        except Exception as exc:  # the rollout is lost from the log, not the robot: say so
            self._error(f"logging the rollout failed: {exc!r}")
            log.exception("logging the rollout failed")
