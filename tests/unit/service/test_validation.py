"""The hot-path shortcuts agree with the general code they bypass."""

from __future__ import annotations

import asyncio
import decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater.errors import DatabaseUnavailable
from headwater.model.catalog import Column
from headwater.resilience.bulkhead import Bulkhead
from headwater.service.validation import _Bad, check_value, checker

COLUMNS = [
    Column("i", "integer", "int4", int_bits=32),
    Column("b", "integer", "int8", nullable=False),
    Column("n", "numeric", "numeric"),
    Column("t", "text", "text"),
    Column("v", "text", "varchar(3)", max_length=3),
]

json_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2 ** 70), max_value=2 ** 70), st.text(max_size=8),
    st.sampled_from(["12", " 7 ", "1e3", "x", "\x00", "1.5"]),
    st.lists(st.integers(), max_size=2))


def outcome(fn: Any, value: Any) -> tuple[str, Any]:
    try:
        result = fn(value)
    except _Bad as bad:
        return "bad", bad.code
    return type(result).__name__, result


@given(st.sampled_from(COLUMNS), json_values)
def test_checker_agrees_with_check_value(col: Column, value: Any) -> None:
    assert outcome(checker(col), value) == outcome(lambda v: check_value(col, v), value)


def test_numeric_fast_path_keeps_exact_decimals() -> None:
    n = checker(COLUMNS[2])
    assert n(0.1) == decimal.Decimal("0.1")
    assert n(10**30) == decimal.Decimal(10**30)


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
