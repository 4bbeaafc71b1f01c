"""The circuit breaker: opens on consecutive failures or a failure rate, probes once, closes."""

from __future__ import annotations

from headwater.resilience.breaker import BreakerPolicy, BreakerState, CircuitBreaker


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
