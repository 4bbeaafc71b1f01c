"""Background probes of an open breaker: closed on the first answer, backing off meanwhile."""

from __future__ import annotations

import asyncio

from headwater.resilience.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from headwater.resilience.recovery import Recovery


def opened() -> CircuitBreaker:
    b = CircuitBreaker("redis", BreakerPolicy(consecutive_failures=1, reset_timeout=60))
    b.failure()
    assert b.state is BreakerState.OPEN
    return b


async def test_closes_on_the_first_successful_probe_long_before_the_reset_timeout() -> None:
    b = opened()
    calls: list[float] = []
    loop = asyncio.get_running_loop()

    async def probe() -> None:
        calls.append(loop.time())
        if len(calls) < 3:
            raise ConnectionError("still down")

    r = Recovery(b, probe, timeout=1, first=0.01, most=0.04)
    began = loop.time()
    r.opened()
    r.opened()  # once, however often it reopens
    for _ in range(200):
        if b.state is BreakerState.CLOSED:
            break
        await asyncio.sleep(0.005)
    assert b.state is BreakerState.CLOSED
    assert len(calls) == 3
    gaps = [calls[0] - began, calls[1] - calls[0], calls[2] - calls[1]]
    assert gaps[1] >= 0.015 and gaps[2] >= 0.03  # backing off: 0.01, 0.02, 0.04
    assert b.allow()
    await r.close()


async def test_a_probe_that_hangs_counts_as_a_failure_and_close_stops_it() -> None:
    b = opened()

    async def hang() -> None:
        await asyncio.sleep(10)

    r = Recovery(b, hang, timeout=0.01, first=0.01, most=0.01)
    r.opened()
    await asyncio.sleep(0.1)
    assert b.state is BreakerState.OPEN
    await r.close()


def test_opened_outside_an_event_loop_does_nothing() -> None:
    async def probe() -> None:
        return None

    Recovery(opened(), probe, timeout=1).opened()
