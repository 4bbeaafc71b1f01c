"""Write validation: the hot-path checkers agree with the general code they bypass."""

from __future__ import annotations

import decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater.errors import InvalidBody
from headwater.errors import InvalidField as _Bad
from headwater.model.catalog import Column
from headwater.service.validation import check_value, checker

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


def test_non_ascii_digits_are_not_an_integer() -> None:
    """``"¹".isdigit()`` is true, yet ``int("¹")`` fails: it was a ValueError (a 500)."""
    col = next(c for c in COLUMNS if c.kind == "integer")
    assert outcome(lambda v: check_value(col, v), "¹")[0] == "bad"
    assert outcome(checker(col), "¹")[0] == "bad"


def test_numeric_fast_path_keeps_exact_decimals() -> None:
    n = checker(COLUMNS[2])
    assert n(0.1) == decimal.Decimal("0.1")
    assert n(10**30) == decimal.Decimal(10**30)


def _bad_body(rows: int) -> InvalidBody:
    from types import MappingProxyType

    from headwater.model.catalog import Table
    from headwater.service.validation import check_rows
    cols = {"id": Column("id", "integer", "int4", nullable=False, has_default=True),
            "a": Column("a", "integer", "int4", nullable=False),
            "b": Column("b", "text", "text", nullable=False)}
    table = Table("t", MappingProxyType(cols), ("id",), ())
    try:
        check_rows(table, [{} for _ in range(rows)], mode="insert")
    except InvalidBody as exc:
        return exc
    raise AssertionError("no error")


def test_the_first_hundred_problems_are_listed_and_the_rest_counted() -> None:
    err = _bad_body(1000)
    assert len(err.details.split("; ")) == 100
    assert err.message == ("2000 invalid values for t: the first 100 are in details, "
                           "and 1900 more")
    err = _bad_body(50)
    assert len(err.details.split("; ")) == 100 and "more" not in err.message
    err = _bad_body(51)
    assert err.message.endswith("and 2 more")


def test_values_postgresql_reads_itself() -> None:
    from headwater.model.values import JsonText

    tags = Column("tags", "other", "text[]")
    span = Column("span", "other", "int4range")
    pair = Column("p", "other", "nulltype")
    assert check_value(tags, ["a", None]) == JsonText('["a",null]')
    assert isinstance(check_value(tags, ["a"]), JsonText)
    assert check_value(tags, '{a,"b c"}') == '{a,"b c"}'
    assert check_value(span, "[1,5)") == "[1,5)" and check_value(span, "EMPTY") == "EMPTY"
    assert check_value(pair, {"a": 1}) == JsonText('{"a":1}')
    assert check_value(pair, "(1,x)") == "(1,x)"
    for col, bad in [(tags, "a,b"), (tags, 5), (tags, {"a": 1}), (span, "[1,"), (span, 5),
                     (span, ["1", "2"])]:
        with pytest.raises(_Bad) as info:
            check_value(col, bad)
        assert info.value.code == "22P02"
        assert col.db_type in info.value.message
