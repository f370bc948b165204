"""Training under torchrun: process group, device choice, per-rank data shards and seeds, rank-0-only writes.

`train(cfg)` calls `setup(cfg.device)` and then behaves the same with one process or many: under `torchrun`
(RANK / WORLD_SIZE / LOCAL_RANK in the environment, WORLD_SIZE > 1) it joins the process group -- gloo on CPU, nccl
on CUDA -- wraps the policy in DistributedDataParallel (gradients averaged every step, so every rank holds the same
weights), draws each rank's batches from its own disjoint shard of the training windows with its own generator,
and lets rank 0 alone write checkpoints, metrics and the final model while the others wait at barriers. With one
process every helper here is the identity, so a plain run is exactly what it was before DDP existed.

Decisions every rank must take alike (stop on a `minutes` budget or a cancel, a time-based checkpoint, the learning
rate of a time-based schedule) use rank 0's clock, broadcast each step (`from_main`): clocks differ between
processes, and one rank leaving the loop early would leave the others blocked in the next gradient all-reduce.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

DEVICES = ("auto", "cpu", "cuda")
# Long enough for the other ranks to wait at a barrier while a large dataset's frames are decoded into the cache.
GROUP_TIMEOUT = dt.timedelta(minutes=60)

__all__ = [
    "DEVICES",
    "DistContext",
    "autocast",
    "default_threads",
    "env_rank",
    "rank_seed",
    "resolve_device",
    "setup",
    "shard",
    "torchrun_command",
]


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def env_rank() -> tuple[int, int, int, int]:
    """(rank, world_size, local_rank, local_world_size) as torchrun set them; (0, 1, 0, 1) outside torchrun."""
    world = _env_int("WORLD_SIZE", 1)
    return (_env_int("RANK", 0), world, _env_int("LOCAL_RANK", 0), _env_int("LOCAL_WORLD_SIZE", world))


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    """The device for `choice` "auto" (this rank's GPU when CUDA is present, else the CPU), "cpu" or "cuda"."""
    if choice not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {choice!r}")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but this torch build sees no CUDA device; use auto or cpu")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def default_threads(local_world_size: int) -> int:
    """Torch intra-op threads per process: the cores shared out among this machine's ranks (at least one)."""
    return max(1, (os.cpu_count() or 1) // max(local_world_size, 1))


def rank_seed(seed: int, rank: int) -> int:
    """Rank 0 keeps `seed` (a single-process run is unchanged); other ranks get independent streams from it."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed % 2**63, rank]).generate_state(1, dtype=np.uint64)[0] % 2**63)


def shard(n: int, rank: int, world_size: int) -> np.ndarray:
    """Rank `rank`'s disjoint share of n training windows, strided so every rank sees frames of every episode."""
    return np.arange(rank, n, world_size)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA (no loss scaling needed, unlike fp16); full precision on the CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def torchrun_command(nproc_per_node: int, script_and_args: Sequence[str]) -> list[str]:
    """The argv that runs `script_and_args` as `nproc_per_node` local ranks (torchrun without it on PATH)."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={int(nproc_per_node)}",
        *script_and_args,
    ]  # fmt: skip


@dataclass
class DistContext:
    """This process's place in the run; the methods are collectives every rank must call at the same point."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # setup() started the process group, so close() ends it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean(self, value: float) -> float:
        """The mean of `value` over every rank (e.g. the logged loss: each rank's own batches)."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def from_main(self, values: Sequence[float]) -> list[float]:
        """Rank 0's `values` on every rank."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.broadcast(t, src=0)
        return t.tolist()

    def gather(self, obj: Any) -> list[Any]:
        """[rank 0's obj, rank 1's obj, ...] on every rank (a picklable object, e.g. RNG states)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """The module to call for training: DDP-wrapped when distributed, else the module itself.

        Every parameter of vla_tiny gets a gradient each step (its grounding loss reads the attention it already
        computes), so DDP skips the per-step search for unused ones; a policy with a head that some batches skip
        would fail in DDP's reducer with a message naming find_unused_parameters.
        """
        if not self.distributed:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self.owns_group = False


def setup(device: str = "auto") -> DistContext:
    """Join torchrun's process group when there is one (WORLD_SIZE > 1) and pick this rank's device."""
    rank, world, local_rank, local_world = env_rank()
    dev = resolve_device(device, local_rank)
    ctx = DistContext(rank, world, local_rank, local_world, dev)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=GROUP_TIMEOUT)
        ctx.owns_group = True
    return ctx
