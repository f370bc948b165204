"""Executing overlapping action chunks one control step at a time (any chunking policy).

A chunk policy predicts T future actions from each observation. Two ways to turn chunks into one action per step:

* temporal ensembling (`coeff` a number; ACT, Zhao et al. 2023): a fresh chunk every step; the action for step t
  is the weighted mean of what every chunk still covering t (predicted at t0 > t - T) says for t, with weights
  exp(-coeff * i), i = 0 for the oldest of them. coeff = 0 is the plain mean; larger coeff trusts older chunks more.
* open loop (`coeff` None): a fresh chunk only when the previous one is used up; its first `n_action_steps`
  actions are played in order.

The caller asks `needs_chunk` before each step, predicts only then, and passes the chunk to `update`:

    chunk = predict(obs) if ensembler.needs_chunk else None  # (T, A)
    action = ensembler.update(chunk)  # (A,) float32

A live robot loop cannot wait for a prediction (backend/control/policy_source.py predicts on a thread of its own),
so chunks can also arrive late, stamped with the step of the observation they were predicted from:

    ensembler.add(t0, chunk)        # (T, A) predicted from the observation of step t0
    action = ensembler.action_at(t) # (A,) for step t >= t0, or None when no chunk covers t (hold still)

With a chunk added at every step (t0 = t) `action_at` gives exactly what `update` gives.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class TemporalEnsembler:
    """Per-step actions from overlapping (T, A) chunks: ACT's exp(-coeff * age) weighting, or open loop when
    `coeff` is None. Every chunk given to one ensembler must have the same length T."""

    def __init__(self, coeff: float | None, n_action_steps: int = 1) -> None:
        self.coeff = coeff
        self.n_action_steps = n_action_steps  # open loop only: actions played from each chunk (clipped to [1, T])
        self._chunks: deque[tuple[int, np.ndarray]] = deque()  # ensembling: (step it was predicted at, (T, A))
        self._queue: deque[np.ndarray] = deque()  # open loop: (A,) actions still to play
        self._step = 0

    def reset(self) -> None:
        """Forget every chunk (call at each episode start)."""
        self._chunks.clear()
        self._queue.clear()
        self._step = 0

    @property
    def needs_chunk(self) -> bool:
        """Whether the next `update` takes a fresh chunk: every step when ensembling; open loop, once one is used up."""
        return self.coeff is not None or not self._queue

    def update(self, chunk: np.ndarray | None) -> np.ndarray:
        """Advance one step -> the (A,) float32 action to execute.

        `chunk` is the (T, A) prediction made at this step; pass one exactly when `needs_chunk` says so.
        """
        if (chunk is None) == self.needs_chunk:
            raise ValueError("pass a chunk exactly when needs_chunk is True")
        t = self._step
        self._step += 1
        if self.coeff is None:
            if chunk is not None:
                self._queue.extend(chunk[: max(1, min(self.n_action_steps, len(chunk)))])
            return np.asarray(self._queue.popleft(), dtype=np.float32)
        self._chunks.append((t, chunk))
        action = self.action_at(t)
        assert action is not None  # the chunk just added covers t
        return action

    # ------------------------------------------------------------------ chunks that arrive late (live robots)
    def add(self, t0: int, chunk: np.ndarray) -> None:
        """Store a (T, A) chunk predicted from the observation of step `t0` (steps must not go back in time)."""
        if self._chunks and t0 < self._chunks[-1][0]:
            raise ValueError(f"chunk of step {t0} is older than the newest one (step {self._chunks[-1][0]})")
        self._chunks.append((int(t0), np.asarray(chunk, dtype=np.float32)))

    def action_at(self, t: int) -> np.ndarray | None:
        """(A,) float32 for step t from the chunks added so far, or None when none covers t.

        Ensembling: ACT's weighted mean over every chunk covering t (oldest first, as in `update`). Open loop: the
        newest chunk's action for t (a late chunk starts at its own step t - t0, the steps it missed skipped)."""
        while self._chunks and self._chunks[0][0] + len(self._chunks[0][1]) <= t:  # no longer covers step t
            self._chunks.popleft()
        live = [(t0, c) for t0, c in self._chunks if t0 <= t]
        if not live:
            return None
        if self.coeff is None:
            t0, c = live[-1]
            return np.asarray(c[t - t0], dtype=np.float32)
        actions = np.stack([c[t - t0] for t0, c in live])  # (n_live, A), oldest first
        weights = np.exp(-self.coeff * np.arange(len(actions)))  # (n_live,)
        return ((weights[:, None] * actions).sum(0) / weights.sum()).astype(np.float32)


__all__ = ["TemporalEnsembler"]
