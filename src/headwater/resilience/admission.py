"""Admission control: refuse work at once when taking it would only make everyone slower.

Two signals, either of which rejects a request with 503 and ``Retry-After``:
- requests in flight on this worker above ``max_inflight``;
- event-loop lag above ``max_loop_lag_ms``: the loop is CPU-bound, so every admitted request
  already waits behind others; accepting more would grow every latency without bound
  (the technique of Node's ``toobusy``).

A request that waits on its client (reading a slow body) gives its slot back while it waits
(``waiting``): otherwise a few hundred clients trickling bodies hold every slot and everyone
else gets 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator


class LoopLag:
    """Measures how late the event loop wakes a timer; smoothed, in seconds."""

    def __init__(self, interval: float = 0.01, smoothing: float = 0.3) -> None:
        self.interval = interval
        self.smoothing = smoothing
        self.lag = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval)
            late = max(0.0, time.perf_counter() - before - self.interval)
            self.lag += self.smoothing * (late - self.lag)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class Admission:
    def __init__(self, max_inflight: int, max_loop_lag: float) -> None:
        self.max_inflight = max_inflight
        self.max_loop_lag = max_loop_lag
        self.inflight = 0
        self.lag = LoopLag()
        self.rejected = 0

    def admit(self) -> bool:
        if self.inflight >= self.max_inflight or (
                self.max_loop_lag > 0 and self.lag.lag > self.max_loop_lag):
            self.rejected += 1
            return False
        return True

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a wait on the client: the request's slot is given back, and taken again
        when the wait is over (never refused then: the request was admitted)."""
        self.inflight -= 1
        try:
            yield
        finally:
            self.inflight += 1
