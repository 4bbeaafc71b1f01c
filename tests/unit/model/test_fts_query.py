"""PostgreSQL text search syntax → FTS5 queries (pure)."""

from __future__ import annotations

import pytest

from headwater.errors import UnsupportedFilter
from headwater.model.fts_query import fts5_query


@pytest.mark.parametrize(("op", "text", "query"), [
    ("fts", "fat", '"fat"'),
    ("fts", "fat & (rat | cat)", '"fat" AND ( "rat" OR "cat" )'),
    ("fts", "fat & !rat", '"fat" NOT "rat"'),
    ("plfts", "The Fat Rats", '"The" AND "Fat" AND "Rats"'),
    ("phfts", "fat cat", '"fat cat"'),
    ("wfts", '"fat cat" or rat -dog', '"fat cat" OR "rat" NOT "dog"'),
    ("wfts", "fat rat", '"fat" AND "rat"'),
    ("plfts", '" ; --', ""),
    ("fts", 'x"y', '"x y"'),
])
def test_translation(op: str, text: str, query: str) -> None:
    assert fts5_query(op, text) == query


@pytest.mark.parametrize(("op", "text"), [("fts", "!fat"), ("fts", "a <-> b"), ("wfts", "-fat")])
def test_what_fts5_cannot_say_is_a_400(op: str, text: str) -> None:
    with pytest.raises(UnsupportedFilter):
        fts5_query(op, text)
