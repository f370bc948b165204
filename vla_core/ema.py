"""An exponential moving average (EMA) of a policy's weights: the model training saves and hands over.

Why: closed-loop success of behavioural cloning swings from checkpoint to checkpoint (20% -> 88% -> 43% -> 65% ->
43% at 3-minute intervals on the VLA benchmark) while the loss barely moves, because one noisy AdamW step moves
where the arm goes. Averaging the weights over the last few hundred steps smooths those swings out (Diffusion
Policy, LeRobot's diffusion policy and timm all evaluate an EMA).

The decay warms up as `1 - (1 + n) ** -power` (Diffusion Policy's `EMAModel`, power 0.75) capped at `decay`: the
averaging horizon `1 / (1 - decay_n)` grows with the number of updates n (~ n^0.75), so it stays a similar share
of a run whether a machine fits 2,000 or 5,000 steps into the budget, and the first checkpoints are not dominated
by the random initial weights (a fixed 0.999 would still give them 58% weight after 536 steps).
"""

from __future__ import annotations

import copy

import torch

DEFAULT_POWER = 0.75


class WeightEMA:
    """A shadow copy of `model` whose parameters track the model's by EMA; its buffers follow the model's as they are.

    `module` is a full model (same class and config), so it can be evaluated and `save_pretrained` like the one it
    averages. Buffers (normalisation stats, fixed priors, running statistics) are copied, not averaged.
    """

    def __init__(self, model: torch.nn.Module, decay: float, power: float = DEFAULT_POWER) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.power = float(power)
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        # The tensors are updated in place (optimizer steps, load_state_dict), so the pairs are bound once.
        params = dict(model.named_parameters())
        self._shadow_params = [p for _, p in self.module.named_parameters()]
        self._model_params = [params[name] for name, _ in self.module.named_parameters()]
        buffers = dict(model.named_buffers())
        self._buffer_pairs = [(b, buffers[name]) for name, b in self.module.named_buffers()]

    def decay_at(self, updates: int) -> float:
        """The decay applied at update number `updates` (0-based): 0 at first, so the shadow starts at the model."""
        return min(self.decay, 1.0 - (1.0 + updates) ** -self.power)

    @torch.no_grad()
    def update(self) -> None:
        """shadow <- decay * shadow + (1 - decay) * model, after one optimizer step of the model."""
        weight = 1.0 - self.decay_at(self.updates)
        # One fused kernel over every parameter: 4x faster than a Python loop of lerp_ (~6 ms for 1.6 M parameters
        # on 2 busy cores, ~3% of a training step); the same call torch's own AveragedModel EMA uses.
        torch._foreach_lerp_(self._shadow_params, self._model_params, weight)
        for shadow, live in self._buffer_pairs:
            shadow.copy_(live)
        self.updates += 1

    def state_dict(self) -> dict:
        """Everything an exact resume needs: the shadow weights and the update count (which sets the decay)."""
        return {"decay": self.decay, "power": self.power, "updates": self.updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
        self.decay, self.power = float(state["decay"]), float(state["power"])
