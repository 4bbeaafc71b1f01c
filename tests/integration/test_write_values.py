"""Written values of the types PostgreSQL reads itself (issue 15), over real HTTP.

PostgreSQL: ranges in their text form, arrays as JSON arrays or ``{a,b}`` literals (nested,
with NULLs and quoted elements), composites as objects or ``(a,b)``, enums, ``interval`` and
``bytea`` in PostgREST's ``\\x…`` hex form, on insert, bulk insert, update, upsert, filters
and RPC arguments; the database is the oracle. A value that cannot be read is a 400 naming
its column, never the driver's words. SQLite: the subset it has (BLOBs in hex form, JSON).
"""

from __future__ import annotations

import asyncio
import decimal
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from headwater.testing import ServerProcess
from tests.conftest import Served, _pg_execute, pg_url_for
from tests.integration import oracle

PG_SCHEMA = r"""
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE pair AS (a int, b text);
CREATE TABLE vals (
  id serial PRIMARY KEY,
  label text UNIQUE,
  span int4range,
  during tsrange,
  tags text[],
  grid int[],
  m mood,
  moods mood[],
  p pair,
  data bytea,
  dur interval,
  codes text[] UNIQUE,
  n int DEFAULT 7
);
CREATE TABLE amounts (id serial PRIMARY KEY, amt numeric(30,10), price numeric(10,2));
CREATE FUNCTION describe_values(r int4range, d bytea, t text[], p pair, m mood)
  RETURNS json LANGUAGE sql IMMUTABLE
  AS $$ SELECT json_build_object('len', upper(r) - lower(r), 'd', d, 't', t, 'p', p,
                                 'm', m) $$;
"""

REPRESENTATION = {"Prefer": "return=representation"}
#: What a caller must never read in an error: the driver and its Python types.
DRIVER_WORDS = ("asyncpg", "Range object", "list, tuple", "got type", "iterable", "timedelta",
                "query argument", "<class")


@pytest.fixture(scope="module")
def pg(pg_admin: str) -> Iterator[Served]:
    name = "hw_values_" + secrets.token_hex(4)
    asyncio.run(_pg_execute(pg_admin, f'CREATE DATABASE "{name}"'))
    url = pg_url_for(name)
    try:
        asyncio.run(_pg_execute(url, PG_SCHEMA))
        with ServerProcess(url) as s:
            yield Served(s.url, url, "postgresql")
    finally:
        asyncio.run(_pg_execute(pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def h(pg: Served) -> Iterator[httpx.Client]:
    oracle.execute(pg.database_url, "DELETE FROM vals")
    with httpx.Client(base_url=pg.url) as c:
        yield c


def row(pg: Served, label: str, *columns: str) -> tuple[Any, ...]:
    """The row as PostgreSQL prints it (``::text``)."""
    cols = ", ".join(f"{c}::text" for c in columns)
    [found] = oracle.rows(pg.database_url, f"SELECT {cols} FROM vals WHERE label = $1", label)
    return found


def test_ranges_take_their_text_form(h: httpx.Client, pg: Served) -> None:
    r = h.post("/vals", json={"label": "a", "span": "[20,25)",
                              "during": '["2020-01-01 10:00","2020-01-02 10:00")'},
               headers=REPRESENTATION)
    assert r.status_code == 201, r.text
    assert r.json()[0]["span"] == "[20,25)"
    assert row(pg, "a", "span", "during") == (
        "[20,25)", '["2020-01-01 10:00:00","2020-01-02 10:00:00")')
    r = h.post("/vals", json=[{"label": "b", "span": "empty"}, {"label": "c", "span": "[1,3]"}])
    assert r.status_code == 201, r.text
    assert row(pg, "b", "span") == ("empty",) and row(pg, "c", "span") == ("[1,4)",)
    r = h.patch("/vals?label=eq.b", json={"span": "(0,10]"})
    assert r.status_code == 204, r.text
    assert row(pg, "b", "span") == ("[1,11)",)
    # A range literal compares as a range (``[20,24]`` is ``[20,25)``).
    r = h.get("/vals?select=label&span=eq.[20,24]")
    assert r.json() == [{"label": "a"}]
    r = h.get("/vals?select=label&span=ov.[2,3)&order=label")
    assert r.json() == [{"label": "b"}, {"label": "c"}]


def test_arrays_take_json_arrays_and_literals(h: httpx.Client, pg: Served) -> None:
    r = h.post("/vals", json={"label": "a", "tags": ["x", "b,c", None, '"q"', "{y}"],
                              "grid": [[1, 2], [3, 4]], "moods": ["ok", "happy"]},
               headers=REPRESENTATION)
    assert r.status_code == 201, r.text
    got = r.json()[0]
    assert got["tags"] == ["x", "b,c", None, '"q"', "{y}"]
    assert got["grid"] == [[1, 2], [3, 4]] and got["moods"] == ["ok", "happy"]
    assert row(pg, "a", "tags", "grid") == ('{x,"b,c",NULL,"\\"q\\"","{y}"}', "{{1,2},{3,4}}")
    # Literals, and a bulk insert of two-dimensional arrays (one array per row, not unnested
    # element by element).
    r = h.post("/vals", json=[{"label": "b", "tags": '{a,"b c",NULL}', "grid": "{{5,6}}"},
                              {"label": "c", "tags": [], "grid": [[7], [8]]}])
    assert r.status_code == 201, r.text
    assert row(pg, "b", "tags", "grid") == ('{a,"b c",NULL}', "{{5,6}}")
    assert row(pg, "c", "tags", "grid") == ("{}", "{{7},{8}}")
    r = h.patch("/vals?label=eq.c", json={"tags": ["z"], "moods": "{sad}"})
    assert r.status_code == 204, r.text
    assert row(pg, "c", "tags", "moods") == ("{z}", "{sad}")
    r = h.get("/vals?select=label&tags=cs.{z}")
    assert r.json() == [{"label": "c"}]
    r = h.get('/vals?select=label&tags=eq.{"a","b c",NULL}')
    assert r.json() == [{"label": "b"}]


def test_composites_and_enums_round_trip(h: httpx.Client, pg: Served) -> None:
    r = h.post("/vals", json=[{"label": "a", "p": {"a": 1, "b": "x y"}, "m": "happy"},
                              {"label": "b", "p": '(2,"r s")', "m": "sad"}],
               headers=REPRESENTATION)
    assert r.status_code == 201, r.text
    assert [(x["p"], x["m"]) for x in r.json()] == [({"a": 1, "b": "x y"}, "happy"),
                                                   ({"a": 2, "b": "r s"}, "sad")]
    assert row(pg, "a", "p", "m") == ('(1,"x y")', "happy")
    got = h.get("/vals?select=p,m&label=eq.b").json()
    assert got == [{"p": {"a": 2, "b": "r s"}, "m": "sad"}]
    assert h.get("/vals?select=label&m=eq.happy").json() == [{"label": "a"}]


def test_bytea_and_interval(h: httpx.Client, pg: Served) -> None:
    r = h.post("/vals", json={"label": "a", "data": "\\x00ff10", "dur": "1 day 02:00:00"},
               headers=REPRESENTATION)
    assert r.status_code == 201, r.text
    assert r.json()[0]["data"] == "\\x00ff10"
    assert oracle.rows(pg.database_url, "SELECT data, dur::text FROM vals") == [
        (b"\x00\xff\x10", "1 day 02:00:00")]
    assert h.get("/vals?select=label&data=eq.\\x00ff10").json() == [{"label": "a"}]
    r = h.patch("/vals?label=eq.a", json={"data": "\\x", "dur": "90 minutes"})
    assert r.status_code == 204, r.text
    assert oracle.rows(pg.database_url, "SELECT data, dur::text FROM vals") == [
        (b"", "01:30:00")]


def test_upserts_of_such_values(h: httpx.Client, pg: Served) -> None:
    h.post("/vals", json={"label": "a", "span": "[1,2)", "tags": ["old"]})
    r = h.post("/vals?on_conflict=label&select=label,span,tags",
               json=[{"label": "a", "span": "[5,6)", "tags": ["u", None]},
                     {"label": "b", "span": "empty", "tags": "{v}"}],
               headers={"Prefer": "return=representation,resolution=merge-duplicates"})
    assert r.status_code == 201, r.text
    assert row(pg, "a", "span", "tags") == ("[5,6)", "{u,NULL}")
    assert row(pg, "b", "span", "tags") == ("empty", "{v}")


def test_upsert_on_an_array_key(h: httpx.Client, pg: Served) -> None:
    """The conflict key itself an array, sent as a JSON array: 201 when inserted, 200 when
    it existed (the key is looked up as an array literal)."""
    head = {"Prefer": "return=representation, resolution=merge-duplicates"}
    body = {"codes": ['a "q"', "b,c", None], "label": "one"}
    r = h.post("/vals?on_conflict=codes&select=codes,label", json=body, headers=head)
    assert (r.status_code, r.json()) == (201, [body]), r.text
    r = h.post("/vals?on_conflict=codes&select=codes,label", json={**body, "label": "two"},
               headers=head)
    assert (r.status_code, r.json()) == (200, [{**body, "label": "two"}]), r.text
    assert oracle.rows(pg.database_url, "SELECT label FROM vals") == [("two",)]


@pytest.mark.parametrize(("body", "column", "code"), [
    ({"span": "[20,"}, "span", "22P02"),
    ({"span": 5}, "span", "22P02"),
    ({"span": "[a,b)"}, "span", "22P02"),
    ({"during": "[2020-13-01,)"}, "during", "22008"),
    ({"tags": "not an array"}, "tags", "22P02"),
    ({"tags": {"an": "object"}}, "tags", "22P02"),
    ({"m": "nope"}, "m", "22P02"),
    ({"moods": ["ok", "nope"]}, "moods", "22P02"),
    ({"data": "\\xzz"}, "data", "22P02"),
    ({"dur": "forever"}, "dur", "22007"),
])
def test_a_value_that_cannot_be_read_is_a_400_naming_its_column(
        h: httpx.Client, pg: Served, body: dict[str, Any], column: str, code: str) -> None:
    oracle.execute(pg.database_url, "INSERT INTO vals (label) VALUES ('z')")
    for method, path, sent in [("POST", "/vals", {"label": "x", **body}),
                               ("POST", "/vals", [{"label": "y"}, {"label": "x", **body}]),
                               ("PATCH", "/vals?label=eq.z", body)]:
        r = h.request(method, path, json=sent)
        assert r.status_code == 400, (method, sent, r.text)
        err = r.json()
        assert err["code"] == code, (sent, err)
        text = f"{err['message']} {err['details']}"
        assert re.search(rf"\b{column}: ", text), (sent, err)
        assert not any(w in text for w in DRIVER_WORDS), (sent, err)
    assert oracle.rows(pg.database_url, f"SELECT label, {column} IS NULL FROM vals") == [
        ("z", True)]


def test_malformed_filter_literal_is_a_400(h: httpx.Client) -> None:
    for query in ["span=eq.garbage", "tags=eq.nope", "m=eq.nope"]:
        r = h.get("/vals?" + query)
        assert r.status_code == 400 and r.json()["code"] == "22P02", (query, r.text)


def test_rpc_arguments(h: httpx.Client) -> None:
    args: dict[str, Any] = {"r": "[2,9)", "d": "\\x0a0b", "t": ["a", None], "p": {"a": 3, "b": "c"},
            "m": "happy"}
    want = {"len": 7, "d": "\\x0a0b", "t": ["a", None], "p": {"a": 3, "b": "c"},
            "m": "happy"}
    r = h.post("/rpc/describe_values", json=args)
    assert (r.status_code, r.json()) == (200, want), r.text
    r = h.get("/rpc/describe_values", params={**args, "t": "{a,NULL}", "p": "(3,c)"})
    assert (r.status_code, r.json()) == (200, want), r.text
    r = h.post("/rpc/describe_values", json={**args, "r": "[2,"})
    assert r.status_code == 400 and r.json()["code"] == "22P02", r.text
    assert not any(w in r.text for w in DRIVER_WORDS)


# --- SQLite: BLOBs in hex form, JSON ----------------------------------------------------------

SQLITE_SCHEMA = """
CREATE TABLE files (id INTEGER PRIMARY KEY, name TEXT UNIQUE, body BLOB, meta JSON);
"""


@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('values')) / 'values.db'}"
    oracle.execute(url, SQLITE_SCHEMA)
    with ServerProcess(url) as s:
        yield Served(s.url, url, "sqlite")


def test_sqlite_blobs_in_hex_form(lite: Served) -> None:
    with httpx.Client(base_url=lite.url) as h:
        r = h.post("/files", json=[{"name": "a", "body": "\\x00ff", "meta": {"tags": ["x"]}},
                                   {"name": "b", "body": "\\x", "meta": [1, None]}],
                   headers=REPRESENTATION)
        assert r.status_code == 201, r.text
        assert [(x["body"], x["meta"]) for x in r.json()] == [
            ("\\x00ff", {"tags": ["x"]}), ("\\x", [1, None])]
        assert oracle.rows(lite.database_url, "SELECT body FROM files ORDER BY id") == [
            (b"\x00\xff",), (b"",)]
        r = h.patch("/files?name=eq.b", json={"body": "\\x0a0b"})
        assert r.status_code == 204, r.text
        r = h.post("/files?on_conflict=name", json={"name": "a", "body": "\\x01"},
                   headers={"Prefer": "resolution=merge-duplicates"})
        assert r.status_code in (200, 201), r.text
        assert oracle.rows(lite.database_url, "SELECT name, body FROM files ORDER BY id") == [
            ("a", b"\x01"), ("b", b"\x0a\x0b")]
        assert h.get("/files?select=name,body&order=id").json() == [
            {"name": "a", "body": "\\x01"}, {"name": "b", "body": "\\x0a0b"}]
        r = h.post("/files", json={"name": "c", "body": "\\xzz"})
        assert r.status_code == 400 and r.json()["code"] == "22P02", r.text
        assert "body" in r.json()["message"]
        assert oracle.rows(lite.database_url, "SELECT count(*) FROM files") == [(2,)]



def test_numeric_digits_survive_a_write_representation(h: httpx.Client) -> None:
    """PostgreSQL numeric in return=representation, as a GET renders it: every digit and the
    column's scale (seen failing first: 9.876543210987654e19, and 5.0 for numeric(10,2))."""
    big = "98765432109876543210.9876543219"
    r = h.post("/amounts", json=[{"amt": big, "price": 5}, {"amt": "1.5", "price": "7.25"}],
               headers=REPRESENTATION)
    assert r.status_code == 201, r.text
    assert f'"amt":{big}' in r.text and '"price":5.00' in r.text
    got = json.loads(r.text, parse_float=decimal.Decimal)
    assert [(g["amt"], g["price"]) for g in got] == [
        (decimal.Decimal(big), decimal.Decimal("5.00")),
        (decimal.Decimal("1.5000000000"), decimal.Decimal("7.25"))]
    first = got[0]["id"]
    r = h.patch(f"/amounts?id=eq.{first}", json={"price": "11"}, headers=REPRESENTATION)
    assert '"price":11.00' in r.text, r.text
    assert r.text == h.get(f"/amounts?id=eq.{first}").text
