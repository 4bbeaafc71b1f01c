"""Consistency tokens as text (``headwater.model.consistency``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater.errors import RequestError
from headwater.model.consistency import format_lsn, parse_lsn, token_from_cookie


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_a_token_reads_back_as_written(lsn: int) -> None:
    assert parse_lsn(format_lsn(lsn)) == lsn


def test_postgresql_form() -> None:
    assert format_lsn((0x16 << 32) | 0xB374D848) == "16/B374D848"
    assert parse_lsn(" 16/b374d848 ") == (0x16 << 32) | 0xB374D848


@pytest.mark.parametrize("bad", ["", "16", "16/", "/1", "G/1", "123456789/1", "1/2/3"])
def test_a_malformed_header_is_a_400(bad: str) -> None:
    with pytest.raises(RequestError) as exc:
        parse_lsn(bad)
    assert exc.value.status == 400


def test_a_malformed_cookie_is_ignored() -> None:
    assert token_from_cookie("a=b; hw_lsn=0/10") == 16
    assert token_from_cookie("hw_lsn=nonsense") == 0
    assert token_from_cookie("") == 0
