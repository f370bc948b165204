"""Who a session cookie or API token resolved to, remembered for a moment so a page's burst of requests costs one
database lookup instead of one each (measured: 2-7 ms per browse request on SQLite without it).

Every change this process makes to a user or a token (disable, password reset, role change, revocation) clears the
cache in the same call, so those still end sessions at once. A change made by another process (`run.py users
disable` on the same database) takes effect within `ttl_s`, the bound the README states.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")
CREDENTIAL_TTL_S = 2.0  # how stale a resolved identity may be for changes made outside this process


class CredentialCache(Generic[V]):
    """A small thread-safe map credential key -> value with a time-to-live on an injected clock.

    Keys are what the caller has already verified or hashed (a MAC-checked session token, a token's sha256); only
    positive results are stored, so a flood of bad credentials cannot fill it. `max_entries` bounds memory: when
    full, it starts over (every live credential costs one lookup again).
    """

    def __init__(self, clock: Callable[[], float], ttl_s: float = CREDENTIAL_TTL_S, max_entries: int = 4096) -> None:
        self._clock, self.ttl_s, self.max_entries = clock, ttl_s, max_entries
        self._entries: dict[str, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        """The value stored for `key` if it is younger than ttl_s, else None."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            if self._clock() >= hit[0]:
                del self._entries[key]
                return None
            return hit[1]

    def put(self, key: str, value: V) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (self._clock() + self.ttl_s, value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
