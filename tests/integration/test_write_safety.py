"""Writes' safety nets and statuses as PostgREST gives them, over real HTTP on both databases.

The object Accept (``application/vnd.pgrst.object+json``) on a write is a guard: a write that
touches other than exactly one row answers 406 PGRST116 and is rolled back, whatever
``Prefer: return=`` says (PostgREST's ``SingularSpec``). The database itself is the oracle:
rows and outbox events are counted afterwards. The tables are hookless, so writes take the
single-statement path where it exists.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from postgrest import APIError, SyncPostgrestClient

from headwater.testing import ServerProcess
from tests.conftest import Served, _pg_execute, pg_url_for
from tests.integration import oracle

SINGULAR = {"Accept": "application/vnd.pgrst.object+json"}
SINGULAR_TYPE = "application/vnd.pgrst.object+json; charset=utf-8"
RETURNS = ("minimal", "headers-only", "representation", None)

DDL = {
    "sqlite": """
        CREATE TABLE addresses (id INTEGER PRIMARY KEY, address TEXT NOT NULL);
        CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE,
                            name TEXT);
        CREATE TABLE pairs (a INTEGER, b INTEGER, v TEXT, PRIMARY KEY (a, b));
        CREATE TABLE surr (id INTEGER PRIMARY KEY, name TEXT, extra TEXT,
                           kind TEXT DEFAULT 'plain');
    """,
    "postgresql": """
        CREATE TABLE addresses (id integer PRIMARY KEY, address text NOT NULL);
        CREATE TABLE users (id serial PRIMARY KEY, username text NOT NULL UNIQUE, name text);
        CREATE TABLE pairs (a integer, b integer, v text, PRIMARY KEY (a, b));
        CREATE TABLE surr (id serial PRIMARY KEY, name text, extra text,
                           kind text DEFAULT 'plain');
    """,
}
SEED = """
    DELETE FROM addresses;
    INSERT INTO addresses (id, address) VALUES (1, 'address 1'), (2, 'address 2'),
                                               (3, 'address 3'), (4, 'address 4');
    DELETE FROM users;
    INSERT INTO users (id, username, name) VALUES (1, 'dragarcia', 'Dra Garcia'),
                                                  (2, 'jdoe', 'J Doe');
"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[Served]:
    if request.param == "sqlite":
        db_url = f"sqlite:///{Path(tmp_path_factory.mktemp('safety')) / 'safety.db'}"
    else:
        admin = request.getfixturevalue("pg_admin")
        name = "hw_safety_" + secrets.token_hex(4)
        asyncio.run(_pg_execute(admin, f'CREATE DATABASE "{name}"'))
        request.addfinalizer(lambda: asyncio.run(  # noqa: PT021
            _pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))
        db_url = pg_url_for(name)
    oracle.execute(db_url, DDL[request.param])
    oracle.execute(db_url, SEED)
    with ServerProcess(db_url) as s:
        yield Served(s.url, db_url, request.param)


@pytest.fixture
def client(server: Served) -> Iterator[httpx.Client]:
    oracle.execute(server.database_url, SEED)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def addresses(server: Served) -> list[tuple[Any, ...]]:
    return oracle.rows(server.database_url, "SELECT id, address FROM addresses ORDER BY id")


def events(server: Served, table: str) -> int:
    """Events recorded for ``table``; none while the outbox does not exist yet (Headwater
    creates it with the first event it records, issue 17)."""
    exists = ("SELECT count(*) FROM sqlite_master WHERE name = '_headwater_outbox'"
              if server.dialect == "sqlite" else
              "SELECT count(*) FROM pg_class WHERE relname = '_headwater_outbox'")
    if not oracle.rows(server.database_url, exists)[0][0]:
        return 0
    return int(oracle.rows(server.database_url,
                           f"SELECT count(*) FROM _headwater_outbox WHERE tbl = '{table}'")[0][0])


def prefer(returning: str | None, *more: str) -> dict[str, str]:
    values = ([f"return={returning}"] if returning else []) + list(more)
    return {**SINGULAR, "Prefer": ", ".join(values)} if values else dict(SINGULAR)


def assert_singular_error(r: httpx.Response, n: int) -> None:
    assert r.status_code == 406, r.text
    assert r.json() == {"code": "PGRST116", "details": f"The result contains {n} rows",
                        "hint": None,
                        "message": "JSON object requested, multiple (or no) rows returned"}
    assert r.headers["content-type"] == SINGULAR_TYPE


# --- the object Accept guards writes -------------------------------------------------------------

@pytest.mark.parametrize("returning", RETURNS)
def test_insert_of_two_rows_is_refused_and_rolled_back(client: httpx.Client, server: Served,
                                                       returning: str | None) -> None:
    before, seen = addresses(server), events(server, "addresses")
    r = client.post("/addresses", json=[{"id": 200, "address": "xxx"},
                                        {"id": 201, "address": "yyy"}],
                    headers=prefer(returning, "tx=commit"))
    assert_singular_error(r, 2)
    assert "tx=commit" in r.headers["preference-applied"]
    assert addresses(server) == before
    assert events(server, "addresses") == seen


@pytest.mark.parametrize("returning", RETURNS)
def test_insert_of_no_rows_is_refused(client: httpx.Client, server: Served,
                                      returning: str | None) -> None:
    assert_singular_error(client.post("/addresses", json=[], headers=prefer(returning)), 0)


@pytest.mark.parametrize("returning", RETURNS)
def test_update_of_many_rows_is_refused_and_rolled_back(client: httpx.Client, server: Served,
                                                        returning: str | None) -> None:
    before, seen = addresses(server), events(server, "addresses")
    r = client.patch("/addresses?id=gt.0", json={"address": "zzz"},
                     headers=prefer(returning, "tx=commit"))
    assert_singular_error(r, 4)
    assert addresses(server) == before
    assert events(server, "addresses") == seen


@pytest.mark.parametrize("returning", RETURNS)
def test_update_of_no_rows_is_refused(client: httpx.Client, server: Served,
                                      returning: str | None) -> None:
    r = client.patch("/addresses?id=gt.0&id=lt.0", json={"address": "zzz"},
                     headers=prefer(returning))
    assert_singular_error(r, 0)


@pytest.mark.parametrize("returning", RETURNS)
def test_delete_of_many_rows_is_refused_and_rolled_back(client: httpx.Client, server: Served,
                                                        returning: str | None) -> None:
    before, seen = addresses(server), events(server, "addresses")
    r = client.delete("/addresses?id=gt.0&id=lt.3", headers=prefer(returning, "tx=commit"))
    assert_singular_error(r, 2)
    assert addresses(server) == before
    assert events(server, "addresses") == seen


@pytest.mark.parametrize("returning", RETURNS)
def test_delete_of_no_rows_is_refused(client: httpx.Client, server: Served,
                                      returning: str | None) -> None:
    assert_singular_error(client.delete("/addresses?id=lt.0", headers=prefer(returning)), 0)


def test_upsert_of_two_rows_is_refused_and_rolled_back(client: httpx.Client,
                                                       server: Served) -> None:
    before = addresses(server)
    r = client.post("/addresses", json=[{"id": 1, "address": "new 1"},
                                        {"id": 300, "address": "new 300"}],
                    headers=prefer("minimal", "resolution=merge-duplicates"))
    assert_singular_error(r, 2)
    assert addresses(server) == before


def test_max_affected_strict_rolls_back_a_single_statement(client: httpx.Client,
                                                           server: Served) -> None:
    before, seen = addresses(server), events(server, "addresses")
    r = client.delete("/addresses?id=gt.0",
                      headers={"Prefer": "max-affected=2, handling=strict"})
    assert (r.status_code, r.json()["code"]) == (400, "PGRST124")
    assert addresses(server) == before
    assert events(server, "addresses") == seen


# --- one row: the object Accept shapes the answer ----------------------------------------------

def test_single_row_writes_answer_one_object(client: httpx.Client, server: Served) -> None:
    r = client.post("/addresses", json=[{"id": 102, "address": "xxx"}],
                    headers=prefer("representation"))
    assert (r.status_code, r.json()) == (201, {"id": 102, "address": "xxx"})
    assert r.headers["content-type"] == SINGULAR_TYPE

    r = client.post("/addresses", json=[{"id": 103, "address": "xxx"}], headers=prefer("minimal"))
    assert (r.status_code, r.content) == (201, b"")
    assert "content-type" not in r.headers
    assert r.headers["content-range"] == "*/*"

    r = client.patch("/addresses?id=eq.1", json={"address": "B Street"},
                     headers=prefer("representation"))
    assert (r.status_code, r.json()) == (200, {"id": 1, "address": "B Street"})
    assert r.headers["content-type"] == SINGULAR_TYPE

    r = client.patch("/addresses?id=eq.1", json={"address": "C Street"}, headers=prefer("minimal"))
    assert (r.status_code, r.content) == (204, b"")
    assert "content-type" not in r.headers

    r = client.put("/addresses?id=eq.2", json={"id": 2, "address": "D Street"},
                   headers=prefer("representation"))
    assert (r.status_code, r.json()) == (200, {"id": 2, "address": "D Street"})
    assert r.headers["content-type"] == SINGULAR_TYPE

    r = client.delete("/addresses?id=eq.3", headers=prefer("representation"))
    assert (r.status_code, r.json()) == (200, {"id": 3, "address": "address 3"})
    r = client.delete("/addresses?id=eq.4", headers=prefer("minimal"))
    assert (r.status_code, r.content) == (204, b"")
    assert addresses(server) == [(1, "C Street"), (2, "D Street"), (102, "xxx"), (103, "xxx")]


# --- counts --------------------------------------------------------------------------------------

def test_exact_counts_of_writes(client: httpx.Client, server: Served) -> None:
    rows = [{"id": i, "address": f"a{i}"} for i in (10, 11, 12)]
    r = client.post("/addresses", json=rows, headers={"Prefer": "count=exact"})
    assert (r.status_code, r.headers["content-range"]) == (201, "*/3")
    assert "count=exact" in r.headers["preference-applied"]
    r = client.post("/addresses", json=[{"id": 13, "address": "a"}],
                    headers={"Prefer": "return=representation, count=exact"})
    assert (r.status_code, r.headers["content-range"]) == (201, "*/1")
    assert r.headers["preference-applied"] == "return=representation, count=exact"

    r = client.patch("/addresses?id=gte.10&id=lte.12", json={"address": "b"},
                     headers={"Prefer": "count=exact"})
    assert (r.status_code, r.headers["content-range"]) == (204, "0-2/3")
    r = client.patch("/addresses?id=lt.0", json={"address": "b"},
                     headers={"Prefer": "count=exact"})
    assert (r.status_code, r.headers["content-range"]) == (204, "*/0")

    r = client.delete("/addresses?id=gte.10&id=lte.12",
                      headers={"Prefer": "return=representation, count=exact"})
    assert (r.status_code, r.headers["content-range"]) == (200, "*/3")
    assert len(r.json()) == 3
    r = client.delete("/addresses?id=eq.13", headers={"Prefer": "count=exact"})
    assert (r.status_code, r.headers["content-range"]) == (204, "*/1")
    # Without count=exact the total stays unknown, as in PostgREST.
    r = client.delete("/addresses?id=eq.1")
    assert (r.status_code, r.headers["content-range"]) == (204, "*/*")
    assert [a[0] for a in addresses(server)] == [2, 3, 4]


# --- upsert statuses -----------------------------------------------------------------------------

MERGE = "resolution=merge-duplicates"


@pytest.mark.parametrize("returning", ["representation", "minimal"])
def test_upsert_status_says_whether_a_row_was_inserted(client: httpx.Client, server: Served,
                                                       returning: str) -> None:
    head = {"Prefer": f"return={returning}, {MERGE}"}
    r = client.post("/addresses", json=[{"id": 1, "address": "x1"}, {"id": 2, "address": "x2"}],
                    headers=head)
    assert r.status_code == 200, r.text
    r = client.post("/addresses", json=[{"id": 1, "address": "y1"}, {"id": 50, "address": "y50"}],
                    headers=head)
    assert r.status_code == 201, r.text
    if returning == "representation":
        assert sorted(x["id"] for x in r.json()) == [1, 50]
    # ignore-duplicates stays 201, as in PostgREST
    r = client.post("/addresses", json=[{"id": 1, "address": "z"}],
                    headers={"Prefer": f"return={returning}, resolution=ignore-duplicates"})
    assert r.status_code == 201
    assert addresses(server) == [(1, "y1"), (2, "x2"), (3, "address 3"), (4, "address 4"),
                                 (50, "y50")]


def test_put_status_says_whether_the_row_was_inserted(client: httpx.Client,
                                                      server: Served) -> None:
    rep = {"Prefer": "return=representation"}
    r = client.put("/addresses?id=eq.1", json={"id": 1, "address": "p1"}, headers=rep)
    assert (r.status_code, r.json()) == (200, [{"id": 1, "address": "p1"}])
    r = client.put("/addresses?id=eq.70", json={"id": 70, "address": "p70"}, headers=rep)
    assert (r.status_code, r.json()) == (201, [{"id": 70, "address": "p70"}])
    r = client.put("/addresses?id=eq.71", json={"id": 71, "address": "p71"})
    assert (r.status_code, r.content) == (204, b"")
    assert (1, "p1") in addresses(server)
    assert (71, "p71") in addresses(server)


def test_bulk_upsert_on_a_composite_key(client: httpx.Client, server: Served) -> None:
    """More rows than one existence check takes: the count of updated rows adds up."""
    oracle.execute(server.database_url, "DELETE FROM pairs")
    head = {"Prefer": f"return=minimal, {MERGE}, count=exact"}
    rows = [{"a": i % 7, "b": i, "v": "one"} for i in range(450)]
    r = client.post("/pairs", json=rows, headers=head)
    assert (r.status_code, r.headers["content-range"]) == (201, "*/450")
    r = client.post("/pairs", json=[{**x, "v": "two"} for x in rows], headers=head)
    assert (r.status_code, r.headers["content-range"]) == (200, "*/450")
    r = client.post("/pairs", json=[*rows[:-1], {"a": 99, "b": 99, "v": "new"}], headers=head)
    assert r.status_code == 201
    assert oracle.rows(server.database_url,
                       "SELECT count(*), sum(CASE WHEN v = 'one' THEN 1 ELSE 0 END) "
                       "FROM pairs") == [(451, 449)]


def test_upsert_of_only_the_conflict_key_returns_the_existing_row(client: httpx.Client,
                                                                  server: Served) -> None:
    r = client.post("/users?on_conflict=username", json={"username": "dragarcia"},
                    headers={"Prefer": f"return=representation, {MERGE}"})
    assert (r.status_code, r.json()) == (200, [{"id": 1, "username": "dragarcia",
                                                "name": "Dra Garcia"}])
    assert oracle.rows(server.database_url, "SELECT count(*) FROM users")[0][0] == 2


# --- missing=default, columns= and bulk upserts of different keys (PostgREST's UpsertSpec) -----

def _surr(server: Served) -> list[tuple[Any, ...]]:
    """``surr`` seeded with one row, its key sequence (PostgreSQL) past it."""
    oracle.execute(server.database_url,
                   "DELETE FROM surr; INSERT INTO surr (id, name, extra, kind) "
                   "VALUES (1, 'value', 'existing value', 'special')")
    if server.dialect == "postgresql":
        oracle.rows(server.database_url, "SELECT setval('surr_id_seq', 1)")
    return oracle.rows(server.database_url, "SELECT * FROM surr ORDER BY id")


def surr(server: Served) -> list[tuple[Any, ...]]:
    return oracle.rows(server.database_url,
                       "SELECT id, name, extra, kind FROM surr ORDER BY id")


@pytest.mark.parametrize("resolution", ["merge-duplicates", "ignore-duplicates"])
def test_upsert_with_missing_default_and_a_surrogate_key(client: httpx.Client, server: Served,
                                                         resolution: str) -> None:
    """PostgREST's "INSERTs and UPDATEs rows with SERIAL surrogate primary keys using Prefer:
    missing=default": the row without ``id`` takes the next one."""
    _surr(server)
    r = client.post("/surr?columns=id,name&select=name,extra",
                    json=[{"id": 1, "name": "updated value"}, {"name": "new value"}],
                    headers={"Prefer": f"return=representation, resolution={resolution}, "
                                       "missing=default"})
    assert r.status_code == 201, r.text
    assert r.headers["preference-applied"] == (f"return=representation, resolution="
                                               f"{resolution}, missing=default")
    merged = resolution == "merge-duplicates"
    assert r.json() == ([{"name": "updated value", "extra": "existing value"}] if merged
                        else []) + [{"name": "new value", "extra": None}]
    assert surr(server) == [(1, "updated value" if merged else "value", "existing value",
                             "special"), (2, "new value", None, "plain")]


def test_bulk_insert_with_missing_default_keeps_the_body_order(client: httpx.Client,
                                                               server: Served) -> None:
    """Rows of different keys: each absent column takes its default (not NULL), and the
    representation lists the rows as sent."""
    _surr(server)
    r = client.post("/surr?select=id,name,kind",
                    json=[{"id": 10, "name": "a"}, {"id": 11, "kind": "k"},
                          {"id": 12, "name": "c"}, {"id": 13}],
                    headers={"Prefer": "return=representation, missing=default"})
    assert r.status_code == 201, r.text
    assert r.json() == [{"id": 10, "name": "a", "kind": "plain"},
                        {"id": 11, "name": None, "kind": "k"},
                        {"id": 12, "name": "c", "kind": "plain"},
                        {"id": 13, "name": None, "kind": "plain"}]
    # Without missing=default, a key some row lacks is NULL (PostgREST's bulk insert).
    r = client.post("/surr", json=[{"id": 20, "name": "a"}, {"id": 21, "kind": "k"}])
    assert r.status_code == 201, r.text
    assert surr(server)[-2:] == [(20, "a", None, None), (21, None, None, "k")]


def test_bulk_upsert_of_different_keys(client: httpx.Client, server: Served) -> None:
    """As PostgREST's one statement: a merge sets every column some row names, to NULL
    where a row lacks it, or with missing=default to the column's default."""
    _surr(server)
    head = {"Prefer": f"return=representation, {MERGE}"}
    r = client.post("/surr?select=id,name,extra,kind",
                    json=[{"id": 1, "name": "n1"}, {"id": 30, "kind": "k30"}], headers=head)
    assert r.status_code == 201, r.text
    assert r.json() == [{"id": 1, "name": "n1", "extra": "existing value", "kind": None},
                        {"id": 30, "name": None, "extra": None, "kind": "k30"}]
    _surr(server)
    head = {"Prefer": f"return=representation, {MERGE}, missing=default"}
    r = client.post("/surr?select=id,name,extra,kind",
                    json=[{"id": 1, "name": "m1"}, {"id": 31, "kind": "k31"},
                          {"id": 32, "name": "m32"}], headers=head)
    assert r.status_code == 201, r.text
    assert r.json() == [{"id": 1, "name": "m1", "extra": "existing value", "kind": "plain"},
                        {"id": 31, "name": None, "extra": None, "kind": "k31"},
                        {"id": 32, "name": "m32", "extra": None, "kind": "plain"}]
    assert surr(server) == [(1, "m1", "existing value", "plain"), (31, None, None, "k31"),
                            (32, "m32", None, "plain")]


def test_upsert_with_columns(client: httpx.Client, server: Served) -> None:
    """``columns=`` names what is written: other keys of the body are ignored, on the
    inserted and on the updated rows."""
    _surr(server)
    r = client.post("/surr?columns=id,name",
                    json=[{"id": 1, "name": "c1", "extra": "IGNORED"},
                          {"id": 40, "name": "c40", "kind": "IGNORED"}],
                    headers={"Prefer": f"return=minimal, {MERGE}"})
    assert r.status_code == 201, r.text
    assert surr(server) == [(1, "c1", "existing value", "special"), (40, "c40", None, "plain")]


# --- the postgrest client from PyPI --------------------------------------------------------------

def test_postgrest_client_single_and_counts(client: httpx.Client, server: Served) -> None:
    pg = SyncPostgrestClient(server.url)
    try:
        res: Any = pg.from_("addresses").update({"address": "one"}).eq("id", 1).single().execute()
        assert res.data == {"id": 1, "address": "one"}
        before = addresses(server)
        with pytest.raises(APIError) as err:
            pg.from_("addresses").update({"address": "all"}).gt("id", 0).single().execute()
        assert err.value.code == "PGRST116"
        with pytest.raises(APIError) as err:
            pg.from_("addresses").delete().gt("id", 2).single().execute()
        assert err.value.code == "PGRST116"
        assert addresses(server) == before

        res = pg.from_("addresses").insert([{"id": 20, "address": "a"}, {"id": 21, "address": "b"},
                                             {"id": 22, "address": "c"}],
                                            count="exact").execute()  # type: ignore[arg-type]
        assert res.count == 3
        assert len(res.data) == 3
        res = pg.from_("addresses").delete(count="exact").gte(  # type: ignore[arg-type]
            "id", 20).execute()
        assert res.count == 3
        assert addresses(server) == before
    finally:
        pg.session.close()
