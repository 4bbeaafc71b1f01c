"""Which failures are worth another try, and the retry loops around them (stamina).

Reads are idempotent: any transient unavailability may be retried. A write transaction is
retried whole only when nothing can have reached the database (the connection failed before
the first statement) or when PostgreSQL aborted it for a serialization failure or deadlock.
Every retry stays inside the request's deadline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import stamina

from headwater.config import Settings
from headwater.errors import DatabaseUnavailable, TransactionConflict

T = TypeVar("T")


def read_retryable(exc: Exception) -> bool:
    return isinstance(exc, DatabaseUnavailable) and exc.retryable


def write_retryable(exc: Exception) -> bool:
    if isinstance(exc, TransactionConflict):
        return True
    return isinstance(exc, DatabaseUnavailable) and exc.retryable and not exc.sent


async def retrying(settings: Settings, work: Callable[[], Awaitable[T]],
                   on: Callable[[Exception], bool]) -> T:
    # The first try runs bare: stamina's machinery costs ~100 µs, which the hot path (where
    # nearly every call succeeds) should not pay. Only a retryable failure enters the loop.
    try:
        return await work()
    except Exception as exc:
        if not on(exc) or settings.retry_attempts <= 1:
            raise
    async for attempt in stamina.retry_context(
            on=on, attempts=settings.retry_attempts - 1, timeout=settings.statement_timeout,
            # The point of a retry here is a fresh connection, not waiting out an outage (the
            # breaker handles that): retry almost at once.
            wait_initial=0.002, wait_max=0.05, wait_jitter=0.005):
        with attempt:
            return await work()
    raise AssertionError("unreachable: stamina re-raises the last error")
