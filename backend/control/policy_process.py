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

A child that does not answer within `predict_timeout_s` is a failed prediction, not a hang: the parent asks it for
the stack of every thread (faulthandler on SIGUSR1, written to a file the parent reads), kills it, and raises
PolicyProcessError with that stack, so the session's status says where inference was stuck. The next `predict`
starts a fresh child (`restarts` counts them). A child that died (killed, out of memory) fails the request that
finds it dead, with its exit code, and the next request starts a fresh one.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

__all__ = ["PolicyProcessError", "ProcessPolicy"]

START_TIMEOUT_S = 120.0  # spawn + import torch + load the model, on a busy 2-core machine
NICE = 10  # the server process's lower priority: on a busy machine the loop gets the CPU first
PREDICT_TIMEOUT_S = 30.0  # a batch-1 prediction takes tens of ms; 30 s means the child is stuck, not slow
STACK_WAIT_S = 1.0  # how long the parent waits for a stuck child to write its stacks


class PolicyProcessError(RuntimeError):
    """The policy process failed to start, or died."""


def _serve(conn, model_dir: str, threads: int, nice: int, stack_file: str) -> None:
    import faulthandler

    import torch

    stacks = open(stack_file, "w")  # noqa: SIM115 - open for the child's life: faulthandler writes to its fd
    faulthandler.register(signal.SIGUSR1, file=stacks, all_threads=True)

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

    def __init__(
        self,
        model_dir: str | Path,
        *,
        cameras,
        config,
        threads: int = 1,
        nice: int = NICE,
        predict_timeout_s: float = PREDICT_TIMEOUT_S,
    ) -> None:
        if not predict_timeout_s > 0:
            raise ValueError(f"predict_timeout_s must be positive, got {predict_timeout_s!r}")
        self.cameras = tuple(cameras)
        self.model = SimpleNamespace(config=config)
        self.model_dir = str(model_dir)
        self.threads, self.nice = int(threads), int(nice)
        self.predict_timeout_s = float(predict_timeout_s)
        self.restarts = 0  # fresh children started after one died or stopped answering
        self._lock = threading.Lock()  # one request in flight
        self._dir = tempfile.TemporaryDirectory(prefix="policy-server-")
        self._stack_file = os.path.join(self._dir.name, "stacks.txt")
        self._proc = None
        self._conn = None
        self._closed = False
        self._start()

    # ------------------------------------------------------------------ the child
    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        args = (child, self.model_dir, self.threads, self.nice, self._stack_file)
        self._proc = ctx.Process(target=_serve, args=args, daemon=True, name="policy-server")
        self._proc.start()
        child.close()
        if not self._conn.poll(START_TIMEOUT_S):
            self._stop_child()
            raise PolicyProcessError(f"the policy process did not start within {START_TIMEOUT_S:.0f} s")
        kind, detail = self._recv()
        if kind != "ready":
            self._stop_child()
            raise PolicyProcessError(f"the policy process could not load {self.model_dir}: {detail}")

    def _recv(self) -> tuple[str, Any]:
        try:
            return self._conn.recv()
        except (EOFError, OSError) as exc:
            self._stop_child()
            raise PolicyProcessError(f"the policy process died (exit code {self._proc.exitcode})") from exc

    def dump_stacks(self, wait_s: float = STACK_WAIT_S) -> str:
        """The child's Python stack, every thread (faulthandler's text), or a line saying why there is none."""
        if not self._proc.is_alive():
            return "(no stack: the policy process is not running)"
        size = os.path.getsize(self._stack_file)
        os.kill(self._proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:  # faulthandler writes from a C signal handler, even inside recv
            time.sleep(0.05)
            if os.path.getsize(self._stack_file) > size:
                time.sleep(0.1)  # all threads are written in one go; let it finish
                with open(self._stack_file) as f:
                    f.seek(size)
                    return f.read().strip()
        return "(no stack: the policy process did not answer SIGUSR1; stopped or stuck outside Python)"

    def _stop_child(self) -> None:
        try:
            self._conn.close()
        except OSError:
            pass
        self._proc.join(timeout=5.0)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(timeout=5.0)

    # ------------------------------------------------------------------ the policy interface
    def predict(self, batch: dict, instruction: str):
        with self._lock:
            if self._closed:
                raise PolicyProcessError("the policy process was closed")
            if self._conn.closed:  # stopped after a timeout or found dead: this request gets a fresh child
                self.restarts += 1
                self._start()
            elif not self._proc.is_alive():  # died since the last request: say so once, restart on the next
                self._stop_child()
                raise PolicyProcessError(f"the policy process died (exit code {self._proc.exitcode})")
            try:
                self._conn.send((batch, instruction))
            except (BrokenPipeError, OSError) as exc:
                self._stop_child()
                raise PolicyProcessError(f"the policy process died (exit code {self._proc.exitcode})") from exc
            try:
                answered = self._conn.poll(self.predict_timeout_s)
            except (EOFError, OSError) as exc:  # closed by close() on another thread, or the child died
                self._stop_child()
                raise PolicyProcessError(f"the policy process died (exit code {self._proc.exitcode})") from exc
            if not answered:
                stacks = self.dump_stacks()
                self._proc.kill()  # its state is unknown: the next prediction starts a fresh one
                self._stop_child()
                raise PolicyProcessError(
                    f"the policy process gave no answer in {self.predict_timeout_s:g} s and was restarted; "
                    f"where it was stuck:\n{stacks}"
                )
            kind, value = self._recv()
        if kind != "ok":
            raise RuntimeError(f"prediction failed in the policy process: {value}")
        return value

    @property
    def alive(self) -> bool:
        return self._proc.is_alive()

    def close(self) -> None:
        self._closed = True
        self._stop_child()
        self._dir.cleanup()
