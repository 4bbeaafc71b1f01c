"""Bulkheads: bounded concurrency per key (writes per table), with a bounded wait."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Protocol

from headwater.errors import DatabaseUnavailable


class _Acquirable(Protocol):
    def locked(self) -> bool: ...

    async def acquire(self) -> bool: ...


async def acquire_within(primitive: _Acquirable, seconds: float) -> None:
    """Acquire a lock or semaphore, raising ``TimeoutError`` after ``seconds``. The timeout
    machinery is only set up when the primitive is taken: the common, uncontended case costs
    one call."""
    if primitive.locked():
        async with asyncio.timeout(seconds):
            await primitive.acquire()
    else:
        await primitive.acquire()


class Bulkhead:
    """At most ``size`` holders per key at once; a caller that cannot get in within
    ``timeout`` seconds is refused with 503 (nothing was sent to the database)."""

    def __init__(self, size: int, timeout: float) -> None:
        self.size = size
        self.timeout = timeout
        self._slots: dict[str, asyncio.Semaphore] = {}

    def __call__(self, key: str) -> _Slot:
        sem = self._slots.get(key)
        if sem is None:
            sem = self._slots[key] = asyncio.Semaphore(self.size)
        return _Slot(sem, key, self.timeout)


class _Slot:
    """``async with bulkhead(key):`` (a class, not a generator-based context manager: this
    is on every write's path)."""

    __slots__ = ("key", "sem", "timeout")

    def __init__(self, sem: asyncio.Semaphore, key: str, timeout: float) -> None:
        self.sem = sem
        self.key = key
        self.timeout = timeout

    async def __aenter__(self) -> None:
        try:
            await acquire_within(self.sem, self.timeout)
        except TimeoutError:
            raise DatabaseUnavailable(f"Too many writes to {self.key} are waiting",
                                      sent=False, retryable=False) from None

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.sem.release()
