"""A circuit breaker per dependency: closed → open → half-open probe → closed.

Hand-written (see the README's design notes): the maintained async breakers on PyPI either
keep state in module globals, count only consecutive failures, or cannot report transitions
to our own metrics registry; this one is ~100 lines, has no I/O and is unit-tested with a
fake clock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from types import TracebackType

from headwater.errors import BreakerOpen


class BreakerState(IntEnum):
    """Values as exported by ``headwater_breaker_state``."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    #: Open after this many failures in a row...
    consecutive_failures: int = 5
    #: ...or when at least ``min_calls`` of the last ``window`` calls failed at this rate.
    failure_rate: float = 0.5
    window: int = 20
    min_calls: int = 10
    #: Seconds to stay open before letting one probe through.
    reset_timeout: float = 5.0


Listener = Callable[[str, BreakerState, BreakerState], None]
#: Exception classes, as ``isinstance`` takes them.
ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


class CircuitBreaker:
    def __init__(self, name: str, policy: BreakerPolicy | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 listener: Listener | None = None) -> None:
        self.name = name
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._listener = listener
        self.state = BreakerState.CLOSED
        self._consecutive = 0
        self._recent: deque[bool] = deque(maxlen=self.policy.window)
        self._opened_at = 0.0
        self._probing = False

    def allow(self) -> bool:
        """May a call go ahead now? An open breaker answers at once, without waiting."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self.policy.reset_timeout:
                return False
            self._move(BreakerState.HALF_OPEN)
        if self._probing:
            return False
        self._probing = True
        return True

    def check(self) -> None:
        if not self.allow():
            raise BreakerOpen(f"{self.name} is unavailable (circuit open)",
                              hint="retry after a short wait")

    def success(self) -> None:
        self._probing = False
        self._consecutive = 0
        self._recent.append(True)
        if self.state is not BreakerState.CLOSED:
            self._recent.clear()
            self._move(BreakerState.CLOSED)

    def failure(self) -> None:
        self._probing = False
        self._consecutive += 1
        self._recent.append(False)
        if self.state is BreakerState.HALF_OPEN:
            self._open()
            return
        p = self.policy
        failed = self._recent.count(False)
        if self._consecutive >= p.consecutive_failures or (
                len(self._recent) >= p.min_calls and failed / len(self._recent) >= p.failure_rate):
            self._open()

    def retry_after(self) -> float:
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.policy.reset_timeout - (self._clock() - self._opened_at))

    def _open(self) -> None:
        self._opened_at = self._clock()
        if self.state is not BreakerState.OPEN:
            self._move(BreakerState.OPEN)

    def _move(self, new: BreakerState) -> None:
        old, self.state = self.state, new
        if self._listener is not None and old is not new:
            self._listener(self.name, old, new)


class Guard:
    """One call through a breaker, as a context manager: refused at once while the breaker is
    open, and its outcome recorded when the block ends.

    An exception in ``failures`` counts as a failure; a clean end, or an exception in
    ``successes`` (the dependency answered, e.g. with a constraint violation), as a success;
    any other exception (a cancellation, a bug of ours) is not recorded. While open, entering
    raises ``opened(breaker)`` (by default ``BreakerOpen``). With no breaker it checks and records
    nothing. One guard per call: ``uncounted`` marks that call only.
    """

    __slots__ = ("_breaker", "_counted", "_failures", "_opened", "_successes")

    def __init__(self, breaker: CircuitBreaker | None, failures: ExceptionTypes, *,
                 successes: ExceptionTypes = (),
                 opened: Callable[[CircuitBreaker], BaseException] | None = None) -> None:
        self._breaker = breaker
        self._failures = failures
        self._successes = successes
        self._opened = opened
        self._counted = True

    def __enter__(self) -> Guard:
        b = self._breaker
        if b is not None and not b.allow():
            if self._opened is not None:
                raise self._opened(b)
            raise BreakerOpen(f"{b.name} is unavailable (circuit open)",
                              hint="retry after a short wait")
        return self

    def uncounted(self) -> None:
        """This call's end says nothing about the dependency (say, our own pool was
        exhausted before anything was sent): record nothing for it."""
        self._counted = False

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        b = self._breaker
        if b is None or not self._counted:
            return
        if exc is None:
            b.success()
        elif isinstance(exc, self._failures):
            b.failure()
        elif isinstance(exc, self._successes):
            b.success()
