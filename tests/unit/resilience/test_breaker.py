"""The breaker's guard: refused at once while open, and each outcome recorded as the caller says."""

from __future__ import annotations

import asyncio

import pytest

from headwater.errors import BreakerOpen
from headwater.resilience.breaker import (
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    Guard,
)


class Recording(CircuitBreaker):
    """A breaker that also lists what it was told."""

    def __init__(self, policy: BreakerPolicy | None = None, now: list[float] | None = None) -> None:
        clock = now or [0.0]
        super().__init__("dep", policy, clock=lambda: clock[0])
        self.told: list[str] = []

    def success(self) -> None:
        self.told.append("success")
        super().success()

    def failure(self) -> None:
        self.told.append("failure")
        super().failure()


class Down(Exception):
    pass


class Refused(Exception):
    """The dependency answered, with an error of the caller's."""


class Closed(Exception):
    def __init__(self, breaker: CircuitBreaker) -> None:
        super().__init__(breaker.name)
        self.retry_after = breaker.retry_after()


def open_breaker(now: list[float]) -> Recording:
    b = Recording(BreakerPolicy(consecutive_failures=1, reset_timeout=5), now)
    b.failure()
    b.told.clear()
    assert b.state is BreakerState.OPEN
    return b


def test_clean_end_is_a_success() -> None:
    b = Recording()
    with Guard(b, Down):
        pass
    assert b.told == ["success"]


def test_failures_count_and_propagate_unchanged() -> None:
    b = Recording()
    err = Down("gone")
    with pytest.raises(Down) as caught, Guard(b, Down):
        raise err
    assert caught.value is err
    assert b.told == ["failure"]


def test_successes_count_as_health() -> None:
    b = Recording()
    with pytest.raises(Refused), Guard(b, Down, successes=Refused):
        raise Refused
    assert b.told == ["success"]


def test_failures_win_over_successes() -> None:
    # ``DatabaseUnavailable`` is a ``HeadwaterError``: the narrower class decides.
    class Unavailable(Refused):
        pass

    b = Recording()
    with pytest.raises(Unavailable), Guard(b, Unavailable, successes=Refused):
        raise Unavailable
    assert b.told == ["failure"]


@pytest.mark.parametrize("exc", [KeyError("bug"), asyncio.CancelledError()])
def test_other_exceptions_are_not_recorded(exc: BaseException) -> None:
    b = Recording()
    with pytest.raises(type(exc)), Guard(b, Down, successes=Refused):
        raise exc
    assert b.told == []


def uncounted_failure(breaker: CircuitBreaker | None) -> None:
    with Guard(breaker, Down) as call:
        call.uncounted()
        raise Down


def test_uncounted_records_nothing() -> None:
    b = Recording()
    with pytest.raises(Down):
        uncounted_failure(b)
    assert b.told == []


def test_open_refuses_at_once_with_the_callers_error() -> None:
    now = [0.0]
    b = open_breaker(now)
    now[0] = 2.0
    ran = False
    with pytest.raises(Closed) as caught, Guard(b, Down, opened=Closed):
        ran = True
    assert not ran
    assert str(caught.value) == "dep" and caught.value.retry_after == 3.0
    assert b.told == []


def test_open_refuses_with_breaker_open_by_default() -> None:
    b = open_breaker([0.0])
    with pytest.raises(BreakerOpen, match="dep is unavailable"), Guard(b, Down):
        pytest.fail("the body ran while the breaker was open")
    assert b.told == []


def test_half_open_lets_one_probe_through() -> None:
    now = [0.0]
    b = open_breaker(now)
    now[0] = 5.1
    with Guard(b, Down):
        during = b.state
        with pytest.raises(BreakerOpen), Guard(b, Down):
            pass  # a second call while the probe is out
    assert (during, b.state) == (BreakerState.HALF_OPEN, BreakerState.CLOSED)
    assert b.told == ["success"]


def test_a_failed_probe_opens_again() -> None:
    now = [0.0]
    b = open_breaker(now)
    now[0] = 5.1
    with pytest.raises(Down), Guard(b, Down):
        raise Down
    assert b.state is BreakerState.OPEN


def test_no_breaker_checks_and_records_nothing() -> None:
    with Guard(None, Down):
        pass
    with pytest.raises(Down):
        uncounted_failure(None)


async def test_guards_a_call_across_awaits() -> None:
    b = Recording(BreakerPolicy(consecutive_failures=2))

    async def call(fail: bool) -> str:
        with Guard(b, Down):
            await asyncio.sleep(0)
            if fail:
                raise Down
            return "ok"

    assert await call(False) == "ok"
    for _ in range(2):
        with pytest.raises(Down):
            await call(True)
    with pytest.raises(BreakerOpen):
        await call(False)
    assert b.told == ["success", "failure", "failure"]


def test_breaker_opens_probes_and_closes() -> None:
    now = [0.0]
    seen: list[tuple[BreakerState, BreakerState]] = []
    b = CircuitBreaker("db", BreakerPolicy(consecutive_failures=3, reset_timeout=5),
                       clock=lambda: now[0], listener=lambda n, o, s: seen.append((o, s)))
    for _ in range(3):
        assert b.allow()
        b.failure()
    assert b.state is BreakerState.OPEN
    assert not b.allow()
    assert b.retry_after() == 5
    now[0] = 5.1
    assert b.allow()  # one probe
    assert not b.allow()  # and only one
    b.failure()
    assert b.state is BreakerState.OPEN
    now[0] = 11
    assert b.allow()
    b.success()
    assert b.state.name == "CLOSED"
    assert seen == [(BreakerState.CLOSED, BreakerState.OPEN),
                    (BreakerState.OPEN, BreakerState.HALF_OPEN),
                    (BreakerState.HALF_OPEN, BreakerState.OPEN),
                    (BreakerState.OPEN, BreakerState.HALF_OPEN),
                    (BreakerState.HALF_OPEN, BreakerState.CLOSED)]


def test_breaker_failure_rate() -> None:
    b = CircuitBreaker("x", BreakerPolicy(consecutive_failures=100, failure_rate=0.5, window=10,
                                          min_calls=10))
    for i in range(10):
        (b.failure if i % 2 else b.success)()
    assert b.state is BreakerState.OPEN
