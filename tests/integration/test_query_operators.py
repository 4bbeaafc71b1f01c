"""Issue 14, operators: every new filter over HTTP on both databases, each checked against
the database's own answer to the equivalent SQL (``oracle``)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from headwater.testing import ServerProcess
from tests.conftest import Served, _pg_execute, pg_url_for
from tests.integration import oracle

ROWS = [
    (1, "alpha beta", "Acme", "[1,2,3]", "{1,2,3}", "[1,5)", "the quick brown fox"),
    (2, "Beta gamma", "Acme", "[2,4]", "{2,4}", "[5,10)", "a lazy dog sleeps"),
    (3, "gamma", "Globex", "[]", "{}", "[10,20)", "quick dogs and lazy foxes"),
    (4, "delta_x", "Initech", "[5]", "{5}", "empty", "nothing to see"),
    (5, None, None, None, None, None, None),
]

PG_DDL = """
CREATE TABLE ops (id integer PRIMARY KEY, name text, "Company Name" text, tags integer[],
                  span int4range, body text, doc tsvector);
"""
SQLITE_DDL = """
CREATE TABLE ops (id INTEGER PRIMARY KEY, name TEXT, "Company Name" TEXT, tags TEXT, body TEXT);
"""


def _sql_text(v: object) -> str:
    return "NULL" if v is None else "'" + str(v).replace("'", "''") + "'"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def ops(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        ) -> Iterator[Served]:
    if request.param == "sqlite":
        db_url = f"sqlite:///{Path(tmp_path_factory.mktemp('ops')) / 'ops.db'}"
        values = ",".join(f"({i}, {_sql_text(n)}, {_sql_text(c)}, {_sql_text(j)}, "
                          f"{_sql_text(b)})" for i, n, c, j, _a, _r, b in ROWS)
        oracle.execute(db_url, SQLITE_DDL + f"INSERT INTO ops VALUES {values};")
    else:
        admin = request.getfixturevalue("pg_admin")
        name = "hw_ops_" + secrets.token_hex(4)
        asyncio.run(_pg_execute(admin, f'CREATE DATABASE "{name}"'))
        request.addfinalizer(lambda: asyncio.run(  # noqa: PT021
            _pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))
        db_url = pg_url_for(name)
        values = ",".join(
            f"({i}, {_sql_text(n)}, {_sql_text(c)}, {_sql_text(a)}, {_sql_text(r)}, "
            f"{_sql_text(b)}, to_tsvector('english', {_sql_text(b)}))"
            for i, n, c, _j, a, r, b in ROWS)
        oracle.execute(db_url, PG_DDL + f"INSERT INTO ops VALUES {values};")
    with ServerProcess(db_url) as server:
        yield Served(server.url, db_url, request.param)


def _ids(served: Served, query: str) -> list[int]:
    r = httpx.get(f"{served.url}/ops?select=id&order=id&{query}", timeout=10)
    assert r.status_code == 200, r.text
    return [row["id"] for row in r.json()]


def _oracle(served: Served, where: str, *params: object) -> list[int]:
    # (the oracle's own SQLite connection has SQLite's case-blind LIKE: its LIKEs are GLOBs)
    return oracle.ids(served.database_url, f"SELECT id FROM ops WHERE {where} ORDER BY id",
                      *params)


COMMON = [
    ("name=like(any).{*beta*,gam*}", "name LIKE ANY(ARRAY['%beta%','gam%'])",
     "(name GLOB '*beta*' OR name GLOB 'gam*')"),
    ("name=like(all).{*a*,*mm*}", "name LIKE ALL(ARRAY['%a%','%mm%'])",
     "(name GLOB '*a*' AND name GLOB '*mm*')"),
    ("name=ilike(any).{BETA*,*X}", "name ILIKE ANY(ARRAY['beta%','%x'])",
     "(lower(name) LIKE 'beta%' OR lower(name) LIKE '%x')"),
    ("name=not.ilike(all).{*A*,*E*}", "NOT (name ILIKE ALL(ARRAY['%a%','%e%']))",
     "NOT (lower(name) LIKE '%a%' AND lower(name) LIKE '%e%')"),
    ("id=gt(any).{3,4}", "id > ANY(ARRAY[3,4])", "(id > 3 OR id > 4)"),
    ("name=match.^[a-z]%2B [a-z]%2B$", "name ~ '^[a-z]+ [a-z]+$'", "id = 1"),
    ("name=imatch.^beta", "name ~* '^beta'", "id = 2"),
    ("name=not.match.a$", "NOT (name ~ 'a$')", "id = 4"),
    ("name=match.[[:digit:]]", "name ~ '[[:digit:]]'", "0 = 1"),
    ("name=match(any).{^al,^ga}", "name ~ ANY(ARRAY['^al','^ga'])", "id IN (1, 3)"),
    ('"Company Name"=eq.Acme', '"Company Name" = \'Acme\'', '"Company Name" = \'Acme\''),
    ('or=("Company Name".eq.Globex,id.eq.4)', '"Company Name" = \'Globex\' OR id = 4',
     '"Company Name" = \'Globex\' OR id = 4'),
    ("or=(name.like(any).{*beta*,*x},id.eq.3)", "name LIKE ANY(ARRAY['%beta%','%x']) OR id = 3",
     "name GLOB '*beta*' OR name GLOB '*x' OR id = 3"),
    ("name=isdistinct.gamma", "name IS DISTINCT FROM 'gamma'", "name IS NOT 'gamma'"),
]


@pytest.mark.parametrize(("query", "pg_sql", "sqlite_sql"), COMMON)
def test_operator_rows_match_the_database(ops: Served, query: str, pg_sql: str,
                                          sqlite_sql: str) -> None:
    expected = _oracle(ops, pg_sql if ops.dialect == "postgresql" else sqlite_sql)
    assert _ids(ops, query) == expected


PG_ONLY = [
    ("tags=cs.{2}", "tags @> '{2}'"),
    ("tags=cd.{1,2,3,4}", "tags <@ '{1,2,3,4}'"),
    ("tags=ov.{4,5}", "tags && '{4,5}'"),
    ("tags=not.cs.{2}", "NOT (tags @> '{2}')"),
    ("span=cs.[2,3)", "span @> '[2,3)'::int4range"),
    ("span=cd.[0,12)", "span <@ '[0,12)'::int4range"),
    ("span=ov.[4,6)", "span && '[4,6)'::int4range"),
    ("span=sl.[10,30)", "span << '[10,30)'::int4range"),
    ("span=sr.[1,3)", "span >> '[1,3)'::int4range"),
    ("span=nxl.[1,10)", "span &< '[1,10)'::int4range"),
    ("span=nxr.[5,6)", "span &> '[5,6)'::int4range"),
    ("span=adj.[20,30)", "span -|- '[20,30)'::int4range"),
    ("body=fts.quick", "to_tsvector(body) @@ to_tsquery('quick')"),
    ("body=fts(english).dogs", "to_tsvector('english', body) @@ to_tsquery('english', 'dogs')"),
    ("body=plfts(english).lazy dog",
     "to_tsvector('english', body) @@ plainto_tsquery('english', 'lazy dog')"),
    ("body=phfts.quick brown", "to_tsvector(body) @@ phraseto_tsquery('quick brown')"),
    ("body=wfts(english).lazy -dogs",
     "to_tsvector('english', body) @@ websearch_to_tsquery('english', 'lazy -dogs')"),
    ("body=not.fts.quick", "NOT (to_tsvector(body) @@ to_tsquery('quick'))"),
    ("doc=fts(english).fox", "doc @@ to_tsquery('english', 'fox')"),
    ("or=(tags.cs.{2},span.adj.\"[20,30)\")",
     "tags @> '{2}' OR span -|- '[20,30)'::int4range"),
]


@pytest.mark.parametrize(("query", "sql"), PG_ONLY)
def test_postgresql_operator_rows_match_the_database(ops: Served, query: str, sql: str) -> None:
    if ops.dialect != "postgresql":
        pytest.skip("PostgreSQL types")
    assert _ids(ops, query) == _oracle(ops, sql)


SQLITE_JSON = [
    ("tags=cs.{2}", "EXISTS (SELECT 1 FROM json_each(tags) WHERE value = 2)"),
    ("tags=cs.{1,3}", "id = 1"),
    ("tags=cd.{1,2,3,4}", "id IN (1, 2, 3)"),
    ("tags=ov.{4,5}", "id IN (2, 4)"),
    ("tags=not.ov.{4,5}", "id IN (1, 3)"),
]


@pytest.mark.parametrize(("query", "sql"), SQLITE_JSON)
def test_sqlite_json_array_containment(ops: Served, query: str, sql: str) -> None:
    if ops.dialect != "sqlite":
        pytest.skip("JSON arrays in text are the SQLite form")
    assert _ids(ops, query) == _oracle(ops, sql)


def test_order_by_a_quoted_name(ops: Served) -> None:
    r = httpx.get(f'{ops.url}/ops?select=id,"Company Name"&order="Company Name".desc.nullslast,id',
                  timeout=10)
    assert r.status_code == 200, r.text
    assert [row["id"] for row in r.json()] == [4, 3, 1, 2, 5]


def test_negative_limit_is_416(ops: Served) -> None:
    r = httpx.get(f"{ops.url}/ops?limit=-1", timeout=10)
    assert r.status_code == 416
    assert r.json() == {"code": "PGRST103", "message": "Requested range not satisfiable",
                        "details": "Limit should be greater than or equal to zero.",
                        "hint": None}


def test_sqlite_refuses_ranges_and_full_text_clearly(ops: Served) -> None:
    if ops.dialect != "sqlite":
        pytest.skip("SQLite's answer")
    for q in ("tags=sl.[1,2)", "body=fts.quick", "body=wfts(english).quick"):
        r = httpx.get(f"{ops.url}/ops?{q}", timeout=10)
        assert r.status_code == 400, (q, r.text)
        assert r.json()["code"] == "42883"


def test_an_operator_the_type_has_not_is_a_400(ops: Served) -> None:
    # (on SQLite any text column may hold a JSON array: cs on text is answered there)
    for q in ("id=sl.[1,2)", "name=cs.{a}")[: 2 if ops.dialect == "postgresql" else 1]:
        r = httpx.get(f"{ops.url}/ops?{q}", timeout=10)
        assert r.status_code == 400, (q, r.text)


def test_pathological_regex_never_hangs_the_server(ops: Served) -> None:
    """SQLite runs the pattern in Python, where one call cannot be interrupted: the pattern is
    refused up front; PostgreSQL's statement timeout covers its own engine."""
    t0 = time.monotonic()
    r = httpx.get(f"{ops.url}/ops?name=match.(a%2B)%2B$", timeout=30)
    if ops.dialect == "sqlite":
        assert r.status_code == 400
        assert r.json()["code"] == "2201B"
    else:
        assert r.status_code == 200
    assert time.monotonic() - t0 < 5
    assert httpx.get(f"{ops.url}/ops?select=id&id=eq.1", timeout=5).json() == [{"id": 1}]


def test_invalid_regex_is_a_400(ops: Served) -> None:
    r = httpx.get(f"{ops.url}/ops?name=match.(unclosed", timeout=10)
    assert r.status_code == 400, r.text


def test_is_unknown_end_to_end(ops: Served) -> None:
    r = httpx.get(f"{ops.url}/ops?select=id&name=is.unknown", timeout=10)
    assert r.status_code == 400  # is.unknown is for booleans, as in PostgreSQL


def _data(response: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = response.data
    return rows


def test_postgrest_python_client(ops: Served) -> None:
    """The encodings the real ``postgrest`` client sends."""
    import postgrest

    client = postgrest.SyncPostgrestClient(ops.url)
    try:
        got = _data(client.from_("ops").select("id").like_any_of("name", "*beta*,gam*") \
            .order("id").execute())
        assert [r["id"] for r in got] == _ids(ops, "name=like(any).{*beta*,gam*}")
        got = _data(client.from_("ops").select("id").ilike_all_of("name", "*A*,*MM*") \
            .order("id").execute())
        assert [r["id"] for r in got] == _ids(ops, "name=ilike(all).{*a*,*mm*}")
        got = _data(client.from_("ops").select("id").eq("Company Name", "Acme").order("id") \
            .execute())
        assert [r["id"] for r in got] == [1, 2]
        if ops.dialect == "postgresql":
            got = _data(client.from_("ops").select("id").contains("tags", [2]).order("id") \
                .execute())
            assert [r["id"] for r in got] == _oracle(ops, "tags @> '{2}'")
            got = _data(client.from_("ops").select("id").overlaps("tags", [4, 5]).order("id") \
                .execute())
            assert [r["id"] for r in got] == _oracle(ops, "tags && '{4,5}'")
            got = _data(client.from_("ops").select("id").range_adjacent("span", (19, 30)) \
                .order("id").execute())
            assert [r["id"] for r in got] == _oracle(ops, "span -|- '(19,30)'::int4range")
            got = _data(client.from_("ops").select("id").filter("body", "fts(english)", "lazy & dog") \
                .order("id").execute())
            assert [r["id"] for r in got] == _oracle(
                ops, "to_tsvector('english', body) @@ to_tsquery('english', 'lazy & dog')")
        else:
            got = _data(client.from_("ops").select("id").contains("tags", [2]).order("id") \
                .execute())
            assert [r["id"] for r in got] == [1, 2]
    finally:
        client.session.close()
