"""Consistency tokens as text (``headwater.model.consistency``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater.errors import RequestError
from headwater.model.consistency import caller_key, format_lsn, parse_lsn, token_from_cookie
from headwater.model.principal import Principal


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


def test_a_caller_with_a_subject_is_its_role_and_subject_wherever_it_calls_from() -> None:
    alice = Principal("member", {"sub": "alice"})
    assert caller_key(alice, "10.0.0.1") == caller_key(alice, "10.0.0.2")
    assert caller_key(alice, "10.0.0.1") != caller_key(Principal("member", {"sub": "bob"}),
                                                       "10.0.0.1")
    assert caller_key(alice, "") != caller_key(Principal("admin", {"sub": "alice"}), "")


@pytest.mark.parametrize("claims", [{}, {"sub": ""}])
def test_a_caller_without_a_subject_is_its_role_and_address(claims: dict[str, str]) -> None:
    anon = Principal("anon", claims)
    assert caller_key(anon, "10.0.0.1") != caller_key(anon, "10.0.0.2")
    assert caller_key(anon, "10.0.0.1") == caller_key(Principal("anon", {}), "10.0.0.1")
    # never the same as a subject that looks like an address
    assert caller_key(anon, "x") != caller_key(Principal("anon", {"sub": "@x"}), "x")
