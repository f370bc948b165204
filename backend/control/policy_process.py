"""A policy served from a process of its own, so its inference never holds the control loop's interpreter lock.

A small transformer's forward pass is hundreds of short torch calls with Python between them; run on a thread of
the web server's process it holds the GIL for most of each prediction, and the 30 Hz loop thread waits for it
(measured in bench/bench_policy_loop.py). Here the loop's process only pickles the observation (two small images
and a state vector) into a pipe and the prediction comes back as numpy arrays; the PolicySource's inference
thread blocks in `recv`, which releases the GIL.

    policy = ProcessPolicy(model_dir, cameras=("front", "wrist"), config=...)   # spawns, loads, answers `ready`
    out = policy.predict(batch, "pick up the red cube")                         # PolicyOutput of numpy arrays
    policy.close()

The child loads the folder with vla_core.policies.base.load_policy (one torch thread: batch-1 inference is
latency-bound), runs at a lower priority than the loop (nice 10: when the machine is busy, a chunk arrives later
rather than a tick), and exits when the pipe closes, so a killed parent leaves no orphan behind.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

__all__ = ["PolicyProcessError", "ProcessPolicy"]

START_TIMEOUT_S = 120.0  # spawn + import torch + load the model, on a busy 2-core machine
NICE = 10  # the server process's lower priority: on a busy machine the loop gets the CPU first


class PolicyProcessError(RuntimeError):
    """The policy process failed to start, or died."""


def _serve(conn, model_dir: str, threads: int, nice: int) -> None:
    import os

    import torch

    if nice:
        os.nice(nice)  # the control loop wins the CPU over inference: a late chunk is fine, a late tick is not
    from vla_core.policies.base import load_policy

    torch.set_num_threads(threads)
    try:
        model = load_policy(model_dir).eval()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", repr(exc)))
        return
    conn.send(("ready", None))
    while True:
        try:
            batch, instruction = conn.recv()
        except (EOFError, OSError):  # the parent closed the pipe or died
            return
        try:
            with torch.inference_mode():
                out = model.predict_chunk(batch, [instruction]).numpy()
            conn.send(("ok", out))
        except Exception as exc:  # noqa: BLE001 - one bad prediction is the caller's error, not the server's end
            conn.send(("error", repr(exc)))


class ProcessPolicy:
    """`predict(batch, instruction)` answered by a child process that holds the model (see the module docstring).
    `config` is the model's config (chunk size, ensembling) as the parent read it; `cameras` its cameras."""

    def __init__(self, model_dir: str | Path, *, cameras, config, threads: int = 1, nice: int = NICE) -> None:
        self.cameras = tuple(cameras)
        self.model = SimpleNamespace(config=config)
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, str(model_dir), int(threads), int(nice)), daemon=True,
                                 name="policy-server")  # fmt: skip
        self._proc.start()
        child.close()
        self._lock = threading.Lock()  # one request in flight
        if not self._conn.poll(START_TIMEOUT_S):
            self.close()
            raise PolicyProcessError(f"the policy process did not start within {START_TIMEOUT_S:.0f} s")
        kind, detail = self._recv()
        if kind != "ready":
            self.close()
            raise PolicyProcessError(f"the policy process could not load {model_dir}: {detail}")

    def _recv(self) -> tuple[str, Any]:
        try:
            return self._conn.recv()
        except (EOFError, OSError) as exc:
            raise PolicyProcessError(f"the policy process died (exit code {self._proc.exitcode})") from exc

    def predict(self, batch: dict, instruction: str):
        with self._lock:
            try:
                self._conn.send((batch, instruction))
            except (BrokenPipeError, OSError) as exc:
                raise PolicyProcessError(f"the policy process died (exit code {self._proc.exitcode})") from exc
            kind, value = self._recv()
        if kind != "ok":
            raise RuntimeError(f"prediction failed in the policy process: {value}")
        return value

    @property
    def alive(self) -> bool:
        return self._proc.is_alive()

    def close(self) -> None:
        try:
            self._conn.close()
        except OSError:
            pass
        self._proc.join(timeout=5.0)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(timeout=5.0)
