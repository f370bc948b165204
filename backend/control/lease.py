"""The control lease: one controlling client at a time; everyone else watches.

Freed by the holder's `release` (the webapp also calls it when the holder's socket closes) or by expiry: a holder
that sends nothing (no command, no heartbeat) for `timeout_s` (30 s by default) loses it, so a dead tab cannot lock
everyone out. Expiry only frees the lease; the arm already holds still 200 ms after the last command.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

DEFAULT_LEASE_TIMEOUT_S = 30.0


class LeaseHeldError(Exception):
    """Another client controls the robot (the message names who)."""

    def __init__(self, operator: str, expires_in_s: float) -> None:
        super().__init__(
            f"the robot is controlled by {operator!r}; control frees when they release it, disconnect, "
            f"or stay silent for the lease timeout (at most {expires_in_s:.0f} s from now)"
        )
        self.operator = operator


class NotControllerError(Exception):
    """A command from a client without the lease."""


@dataclass(frozen=True)
class LeaseInfo:
    client_id: str
    operator: str
    acquired_at: float  # time.monotonic()
    last_seen: float


class ControlLease:
    def __init__(self, timeout_s: float = DEFAULT_LEASE_TIMEOUT_S, clock=time.monotonic) -> None:
        if timeout_s <= 0:
            raise ValueError("lease timeout must be positive")
        self.timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._holder: LeaseInfo | None = None
        self.expired_count = 0

    def _expire_locked(self, now: float) -> LeaseInfo | None:
        h = self._holder
        if h is not None and now - h.last_seen > self.timeout_s:
            self._holder = None
            self.expired_count += 1
            return h
        return None

    def expire(self) -> LeaseInfo | None:
        """Free the lease if its holder went silent; returns the expired holder, else None."""
        with self._lock:
            return self._expire_locked(self._clock())

    def acquire(self, client_id: str, operator: str) -> bool:
        """Take the lease (True: newly acquired; False: `client_id` already held it, now refreshed)."""
        if not isinstance(client_id, str) or not client_id:
            raise ValueError("client_id must be a non-empty string")
        if not isinstance(operator, str) or not operator.strip():
            raise ValueError("operator must be a non-empty name")
        now = self._clock()
        with self._lock:
            self._expire_locked(now)
            h = self._holder
            if h is not None and h.client_id != client_id:
                raise LeaseHeldError(h.operator, self.timeout_s - (now - h.last_seen))
            self._holder = LeaseInfo(client_id, operator.strip(), h.acquired_at if h else now, now)
            return h is None

    def release(self, client_id: str) -> bool:
        """Free the lease if `client_id` holds it (True); anyone else's release is a no-op (False)."""
        with self._lock:
            if self._holder is not None and self._holder.client_id == client_id:
                self._holder = None
                return True
            return False

    def touch(self, client_id: str) -> None:
        """Mark the holder alive; NotControllerError for anyone else (including a holder whose lease expired)."""
        now = self._clock()
        with self._lock:
            self._expire_locked(now)
            h = self._holder
            if h is None or h.client_id != client_id:
                who = f"{h.operator!r} controls the robot" if h else "nobody controls the robot"
                raise NotControllerError(
                    f"client {client_id!r} does not hold the control lease ({who}); acquire it first"
                )
            self._holder = LeaseInfo(h.client_id, h.operator, h.acquired_at, now)

    @property
    def holder(self) -> LeaseInfo | None:
        with self._lock:
            return self._holder

    def expires_in(self) -> float | None:
        with self._lock:
            h = self._holder
            return None if h is None else max(0.0, self.timeout_s - (self._clock() - h.last_seen))
