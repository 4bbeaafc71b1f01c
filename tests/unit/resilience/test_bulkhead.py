"""The bulkhead: a bound on concurrent holders per table, refusing after a timeout."""

from __future__ import annotations

import asyncio

import pytest

from headwater.errors import DatabaseUnavailable
from headwater.resilience.bulkhead import Bulkhead


async def test_bulkhead_bounds_holders_and_refuses_after_timeout() -> None:
    bulkhead = Bulkhead(2, timeout=0.05)
    entered = 0
    release = asyncio.Event()

    async def hold() -> None:
        nonlocal entered
        async with bulkhead("orders"):
            entered += 1
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(2)]
    await asyncio.sleep(0)
    assert entered == 2
    with pytest.raises(DatabaseUnavailable) as info:
        async with bulkhead("orders"):
            pass
    assert info.value.status == 503 and info.value.sent is False
    async with bulkhead("customers"):  # other tables are not affected
        pass
    release.set()
    await asyncio.gather(*holders)
    async with bulkhead("orders"):
        pass
