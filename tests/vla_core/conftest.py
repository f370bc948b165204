"""Synthetic data for the policy tests: no dataset, no sim.

The task: a grey table with a red, a green and a blue square at random places; the instruction names one colour
and the target action chunk is that square's (x, y) centre in [-1, 1] (the same for every chunk step, plus a
small drift so steps differ). Only the colour word says which square, so a policy that ignores language is at
chance, and one that reads it puts its action on the named square.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from storage.features import ACTION, OBS_STATE, TASK, grounding_key, image_key
from vla_core.constants import ACTION_IS_PAD

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 60, 220)}
TEMPLATES = ("pick up the {} cube", "grab the {} block", "lift the {} cube")
CAMERAS = ("front", "wrist")


def tiny_config_kwargs(**overrides):
    """A policy small enough to train hundreds of steps in seconds on 2 CPU cores."""
    kw = dict(
        cameras=CAMERAS,
        image_size=48,  # 3 x 3 token grid
        state_dim=3,
        action_dim=2,
        chunk_size=4,
        d_model=64,
        n_heads=8,
        n_layers=1,
        n_decoder_layers=1,
        intermediate_size=128,
        vision_channels=(16, 32, 64),
        n_text_layers=1,
        max_text_len=32,
        dropout=0.0,
        uncertainty_samples=4,
        head_hidden=64,
        # The synthetic actions are image positions and the state is noise: nothing to be relative to.
        relative_action_dims=0,
    )
    kw.update(overrides)
    return kw


def make_scene(rng: np.random.Generator, size: int, colour: str, square: int | None = None):
    """One frame (H, W, 3) uint8 with three squares, and the named square's centre in [-1, 1]^2."""
    sq = square or max(4, size // 6)
    img = np.full((size, size, 3), 128, dtype=np.int16) + rng.integers(-6, 7, (size, size, 3))
    cells = rng.choice(9, size=3, replace=False)  # one square per cell of a 3x3 layout: never overlapping
    cell = size // 3
    target = None
    for (name, rgb), c in zip(COLOURS.items(), cells, strict=True):
        r0 = (c // 3) * cell + rng.integers(0, cell - sq + 1)
        c0 = (c % 3) * cell + rng.integers(0, cell - sq + 1)
        img[r0 : r0 + sq, c0 : c0 + sq] = rgb
        if name == colour:
            target = np.array([(c0 + sq / 2) / size * 2 - 1, (r0 + sq / 2) / size * 2 - 1], dtype=np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), target


def make_batch(rng: np.random.Generator, n: int, *, size: int = 48, chunk: int = 4, colours=None):
    """A contract-shaped training batch of n synthetic frames (the wrist camera sees the frame mirrored)."""
    names = list(COLOURS)
    frames, targets, tasks = [], [], []
    for i in range(n):
        colour = colours[i] if colours is not None else names[rng.integers(3)]
        img, tgt = make_scene(rng, size, colour)
        frames.append(img)
        targets.append(tgt)
        tasks.append(TEMPLATES[rng.integers(len(TEMPLATES))].format(colour))
    front = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()  # (n, 3, H, W) uint8
    drift = torch.linspace(0, 0.1, chunk).view(1, chunk, 1)
    centre = torch.from_numpy(np.stack(targets))  # (n, 2) the named square's (x, y) in [-1, 1]
    action = centre.unsqueeze(1) + drift  # (n, T, 2)
    return {
        image_key("front"): front,
        image_key("wrist"): front.flip(-1),
        OBS_STATE: torch.from_numpy(rng.normal(0, 1, (n, 3)).astype(np.float32)),
        ACTION: action.float(),
        ACTION_IS_PAD: torch.zeros(n, chunk, dtype=torch.bool),
        TASK: tasks,
        # The training-only grounding signal, as the sim records it: where the named square is in each camera.
        grounding_key("front"): centre,
        grounding_key("wrist"): centre * torch.tensor([-1.0, 1.0]),
    }


def train_tiny(policy, steps: int, *, batch_size: int = 32, lr: float = 2e-3, seed: int = 0):
    """A few hundred AdamW steps on fresh synthetic batches; returns the losses."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=1e-4)
    # Short warm-up then a constant rate: the attention read-out learns in a jump after ~250 steps, and a
    # schedule that decays early (one-cycle) stalls before it.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / 20))
    size, chunk = policy.config.image_size, policy.config.chunk_size
    policy.train()
    losses = []
    for _ in range(steps):
        loss, _ = policy(make_batch(rng, batch_size, size=size, chunk=chunk))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 10.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    policy.eval()
    return losses


@pytest.fixture(scope="session")
def trained_tiny_policy():
    """A tiny policy trained on the synthetic colour task (shared by the behaviour tests, ~30 s)."""
    from vla_core.policies import make_policy

    torch.manual_seed(0)
    # Pinned, whatever earlier tests left (a training or job test may have set 1): the reduction order, and with it
    # the trained weights, depend on the thread count, and the uncertainty test's margin is thin (it fails with 1).
    threads_before = torch.get_num_threads()
    torch.set_num_threads(2)
    # The default configuration (spatial-softmax keypoints on), trained with the grounding signal the batches
    # carry: without that signal the action was decodable from tokens the map does not peak on, and whether the
    # cross-attention localised the named square at all depended on the CPU's rounding (passed on AMD, 0.17 on Intel).
    policy = make_policy("vla_tiny", **tiny_config_kwargs())
    policy.set_normalization(
        {OBS_STATE: {"mean": [0.0] * 3, "std": [1.0] * 3}, ACTION: {"mean": [0.0, 0.05], "std": [0.6, 0.6]}}
    )
    losses = train_tiny(policy, steps=400)
    torch.set_num_threads(threads_before)
    return policy, losses


@pytest.fixture(scope="session")
def synth():
    """The helpers above for test modules (tests/ is not a package, so they come as a fixture)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        CAMERAS=CAMERAS,
        COLOURS=COLOURS,
        TEMPLATES=TEMPLATES,
        make_scene=make_scene,
        make_batch=make_batch,
        tiny_config_kwargs=tiny_config_kwargs,
        train_tiny=train_tiny,
    )
