"""Noticing that a dependency is back: while its breaker is open, probe it in the background.

A breaker alone learns of a recovery only when its reset timeout lets a request through as a
probe, so for that long a dependency that is already back goes unused (Redis: the cache
neither stores nor serves; the database: every write is refused). ``Recovery`` probes with a
cheap call of its own (``PING``, ``SELECT 1`` on a fresh connection), from 100 ms and backing
off to ``most``, and closes the breaker on the first answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from headwater.resilience.breaker import BreakerState, CircuitBreaker

Probe = Callable[[], Awaitable[object]]


class Recovery:
    def __init__(self, breaker: CircuitBreaker, probe: Probe, *, timeout: float,
                 first: float = 0.1, most: float = 0.5, log: Any = None) -> None:
        self.breaker = breaker
        self.probe = probe
        self.timeout = timeout
        self.first = first
        self.most = most
        self.log = log
        self._task: asyncio.Task[None] | None = None

    def opened(self) -> None:
        """The breaker has just opened: start probing (once, however often it reopens)."""
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # opened outside the event loop (a test): nothing to run on
            return
        self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        delay = self.first
        while not self._closed():
            await asyncio.sleep(delay)
            if self._closed():  # a request's own probe got there first
                return
            try:
                await asyncio.wait_for(self.probe(), self.timeout)
            except Exception:  # any failure means: not back yet
                delay = min(self.most, delay * 2)
                continue
            if self.log is not None:
                self.log.info("dependency_recovered", dependency=self.breaker.name)
            self.breaker.success()
            return

    def _closed(self) -> bool:
        return self.breaker.state is BreakerState.CLOSED

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
