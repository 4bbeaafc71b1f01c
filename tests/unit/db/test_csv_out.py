"""PostgreSQL's record text, as PostgREST's CSV uses it (pure)."""

from __future__ import annotations

from headwater.db import csv_out
from headwater.model.plan import OutputColumn, ReadNode


def test_quoting_follows_record_out() -> None:
    assert csv_out.quote_field("plain") == "plain"
    assert csv_out.quote_field("") == '""'
    assert csv_out.quote_field("a b") == '"a b"'
    assert csv_out.quote_field("a,b") == '"a,b"'
    assert csv_out.quote_field('say "x"') == '"say ""x"""'
    assert csv_out.quote_field("a\\b") == '"a\\\\b"'
    assert csv_out.quote_field("(x)") == '"(x)"'
    assert csv_out.quote_field("a\tb") == '"a\tb"'
    assert csv_out.quote_field("ünï") == "ünï"


def test_header_is_empty_without_rows() -> None:
    assert csv_out.header(["a", "b"], 2) == "a,b\n"
    assert csv_out.header(["a", "b"], 0) == "\n"


def test_rows_render_as_postgresql_would() -> None:
    root = ReadNode(table="t", alias="t0", outputs=(
        OutputColumn("n", "n", "integer"), OutputColumn("f", "f", "float"),
        OutputColumn("b", "b", "boolean"), OutputColumn("j", "j", "json"),
        OutputColumn("s", "s", "text")))
    rows = [{"n": 1, "f": 2.0, "b": True, "j": {"bb": 1, "a": [1, "x"]}, "s": None},
            {"n": -1, "f": 0.5, "b": False, "j": "str", "s": ""}]
    assert list(csv_out.render_rows(rows, root)) == [
        '1,2,t,"{""a"": [1, ""x""], ""bb"": 1}",', '-1,0.5,f,"""str""",""']
