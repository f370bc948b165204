"""Latest-frame-only fan-out from the control loop thread to asyncio viewers.

The loop calls `FrameHub.publish(frame)`; it never blocks on a viewer. Each subscription holds one slot: publishing
over a frame its viewer has not taken yet replaces it and counts one `skipped`. The viewer's event loop is woken
with `loop.call_soon_threadsafe`, at most one wake-up pending per subscription, so a stalled event loop queues one
callback per viewer, not one per frame.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from backend.control.commands import Frame


class SubscriptionClosed(Exception):
    """`next()` on a closed subscription."""


class FrameSubscription:
    """One viewer: `frame = await sub.next()` returns the newest frame newer than the last one returned."""

    def __init__(self, hub: FrameHub, loop: asyncio.AbstractEventLoop) -> None:
        self._hub = hub
        self._loop = loop
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self._wake_pending = False
        self._event = asyncio.Event()
        self.closed = False
        self.received = 0  # frames returned by next()
        self.skipped = 0  # frames published while this viewer still had an untaken one: it never got them

    # -- loop thread --------------------------------------------------------------------------------------------
    def _offer(self, frame: Frame) -> None:
        with self._lock:
            if self.closed:
                return
            if self._frame is not None:
                self.skipped += 1
            self._frame = frame
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            try:
                self._loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the viewer's event loop is closed: nobody is listening any more
                self.close()

    # -- viewer's event loop ------------------------------------------------------------------------------------
    def _wake(self) -> None:
        with self._lock:
            self._wake_pending = False
        self._event.set()

    def _take(self) -> Frame | None:
        with self._lock:
            frame, self._frame = self._frame, None
        if frame is not None:
            self.received += 1
        return frame

    async def next(self, timeout: float | None = None) -> Frame:
        """The newest frame not yet returned; waits for one. Raises SubscriptionClosed, or TimeoutError."""
        while True:
            if self.closed:
                raise SubscriptionClosed("frame subscription is closed")
            frame = self._take()
            if frame is not None:
                return frame
            self._event.clear()
            if timeout is None:
                await self._event.wait()
            else:
                async with asyncio.timeout(timeout):
                    await self._event.wait()

    def poll(self) -> Frame | None:
        """The newest untaken frame, or None, without waiting."""
        return None if self.closed else self._take()

    def close(self) -> None:
        """Stop receiving frames (idempotent); a pending next() raises SubscriptionClosed."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._frame = None
        self._hub._remove(self)
        try:
            self._loop.call_soon_threadsafe(self._event.set)
        except RuntimeError:
            pass

    def __aiter__(self) -> FrameSubscription:
        return self

    async def __anext__(self) -> Frame:
        try:
            return await self.next()
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> FrameSubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __enter__(self) -> FrameSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FrameHub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[FrameSubscription] = []
        self._taps: list[Callable[[Frame], None]] = []
        self.latest: Frame | None = None
        self.published = 0

    def subscribe(self, loop: asyncio.AbstractEventLoop | None = None) -> FrameSubscription:
        """A subscription for the running event loop (or `loop`); it starts with the latest frame, if any."""
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError("subscribe() needs a running asyncio event loop (or pass loop=)") from None
        sub = FrameSubscription(self, loop)
        with self._lock:
            self._subs.append(sub)
            latest = self.latest
        if latest is not None:
            sub._offer(latest)
        return sub

    def _remove(self, sub: FrameSubscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def add_tap(self, fn: Callable[[Frame], None]) -> None:
        """Call `fn(frame)` on the loop thread at each publish (must be quick: benchmarks, metrics)."""
        with self._lock:
            self._taps.append(fn)

    def publish(self, frame: Frame) -> None:
        """Hand `frame` to every subscriber; never waits on one."""
        with self._lock:
            self.latest = frame
            self.published += 1
            subs = list(self._subs)
            taps = list(self._taps)
        for sub in subs:
            sub._offer(frame)
        for fn in taps:
            fn(frame)
