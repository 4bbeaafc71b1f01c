"""Output formats over real HTTP: PostgREST's CSV bytes, counts, and EXPLAIN plans.

Each dialect gets a database of its own with the same rows, so the CSV assertions also
show that SQLite answers with the same bytes as PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from headwater.testing import ServerProcess
from tests.conftest import _pg_execute, pg_url_for
from tests.integration import oracle

PG_DDL = """
CREATE TABLE owners (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE things (
  id int PRIMARY KEY, name text, note text, flag boolean, qty int, ratio float8,
  data jsonb, owner_id int REFERENCES owners(id));
CREATE TABLE many (id int PRIMARY KEY, grp int NOT NULL);
INSERT INTO many SELECT g, g % 10 FROM generate_series(1, 2000) g;
ANALYZE many;
"""
SQLITE_DDL = """
CREATE TABLE owners (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE things (
  id INTEGER PRIMARY KEY, name TEXT, note TEXT, flag BOOLEAN, qty INTEGER, ratio REAL,
  data JSON, owner_id INTEGER REFERENCES owners(id));
CREATE TABLE many (id INTEGER PRIMARY KEY, grp INTEGER NOT NULL);
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 2000)
INSERT INTO many SELECT n, n % 10 FROM g;
"""
ROWS = {
    "postgresql": """
INSERT INTO owners VALUES (1, 'Ann Lee'), (2, 'Bo');
INSERT INTO things VALUES
  (1, 'plain', 'has, comma', true, 3, 1.5, '{"b": [1, 2], "a": "x y"}', 1),
  (2, 'two words', 'say "hi"', false, -4, 2, '[1, "two", null]', 2),
  (3, '', NULL, NULL, NULL, NULL, NULL, NULL),
  (4, E'line\\nbreak', E'back\\\\slash', true, 0, 0.25, '"text"', 1),
  (5, '(paren)', 'ünïcode', false, 7, -3.5, '{"long key": 1, "k": true}', NULL);
""",
    "sqlite": """
INSERT INTO owners VALUES (1, 'Ann Lee'), (2, 'Bo');
INSERT INTO things VALUES
  (1, 'plain', 'has, comma', 1, 3, 1.5, '{"b": [1, 2], "a": "x y"}', 1),
  (2, 'two words', 'say "hi"', 0, -4, 2.0, '[1, "two", null]', 2),
  (3, '', NULL, NULL, NULL, NULL, NULL, NULL),
  (4, 'line' || char(10) || 'break', 'back\\slash', 1, 0, 0.25, '"text"', 1),
  (5, '(paren)', 'ünïcode', 0, 7, -3.5, '{"long key": 1, "k": true}', NULL);
""",
}


@dataclass(frozen=True)
class Server:
    url: str
    database_url: str
    dialect: str


def _database(dialect: str, tmp: pytest.TempPathFactory,
              request: pytest.FixtureRequest) -> str:
    if dialect == "sqlite":
        url = f"sqlite:///{Path(tmp.mktemp('formats')) / 'formats.db'}"
        oracle.execute(url, SQLITE_DDL + ROWS["sqlite"])
        return url
    admin = request.getfixturevalue("pg_admin")
    name = "hw_formats_" + secrets.token_hex(4)
    asyncio.run(_pg_execute(admin, f'CREATE DATABASE "{name}"'))
    request.addfinalizer(lambda: asyncio.run(
        _pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))
    url = pg_url_for(name)
    oracle.execute(url, PG_DDL + ROWS["postgresql"])
    return url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    url = _database(request.param, tmp_path_factory, request)
    with ServerProcess(url, env={"HEADWATER_CACHE_ENABLED": "false"}) as s:
        yield Server(s.url, url, request.param)


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


CSV = {"Accept": "text/csv"}

# What PostgREST answers for the same rows (PostgreSQL's record text, no final newline).
EXPECTED = (
    "id,name,note,flag,qty,ratio,data,owner_id\n"
    '1,plain,"has, comma",t,3,1.5,"{""a"": ""x y"", ""b"": [1, 2]}",1\n'
    '2,"two words","say ""hi""",f,-4,2,"[1, ""two"", null]",2\n'
    '3,"",,,,,,\n'
    '4,"line\nbreak","back\\\\slash",t,0,0.25,"""text""",1\n'
    '5,"(paren)",ünïcode,f,7,-3.5,"{""k"": true, ""long key"": 1}",'
)


def test_csv_is_postgrest_bytes(client: httpx.Client) -> None:
    r = client.get("/things?order=id", headers=CSV)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.content == EXPECTED.encode()


def test_csv_empty_result_is_a_newline(client: httpx.Client) -> None:
    r = client.get("/things?id=eq.99", headers=CSV)
    assert r.status_code == 200
    assert r.content == b"\n"


def test_csv_with_embeds_and_select(client: httpx.Client) -> None:
    r = client.get("/owners?select=name,things(id)&order=id", headers=CSV)
    assert r.status_code == 200, r.text
    assert r.content == (b'name,things\n"Ann Lee","[{""id"":1}, \n {""id"":4}]"\n'
                         b'Bo,"[{""id"":2}]"')
    r = client.get("/things?select=id,owners(name)&id=in.(1,3)&order=id", headers=CSV)
    assert r.content == b'id,owners\n1,"{""name"":""Ann Lee""}"\n3,'


def test_csv_streamed_matches_small(server: Server) -> None:
    """Past the stream threshold the rows are streamed; the bytes are the same."""
    with ServerProcess(server.database_url,
                       env={"HEADWATER_STREAM_THRESHOLD_ROWS": "2",
                            "HEADWATER_STREAM_CHUNK_BYTES": "40"}) as s:
        r = httpx.get(s.url + "/things?order=id", headers=CSV, timeout=30)
        assert r.status_code == 200
        assert r.content == EXPECTED.encode()
        r = httpx.get(s.url + "/many?order=id&limit=1000", headers=CSV, timeout=30)
        lines = r.content.split(b"\n")
        assert lines[0] == b"id,grp" and lines[1] == b"1,1" and lines[-1] == b"1000,0"
        assert len(lines) == 1001


# --- Prefer: count=planned | estimated -------------------------------------------------------

def _planner_rows(url: str, where: str, *params: object) -> int:
    (doc,), = oracle.rows(url, f"EXPLAIN (FORMAT JSON) SELECT 1 FROM many WHERE {where}",
                          *params)
    tree = json.loads(doc) if isinstance(doc, str) else doc
    return int(tree[0]["Plan"]["Plan Rows"])


def test_planned_count_is_the_planners_estimate(server: Server, client: httpx.Client) -> None:
    r = client.get("/many?limit=10&order=id", headers={"Prefer": "count=planned"})
    assert r.status_code == 206, r.text
    assert r.headers["content-range"] == "0-9/2000"  # analyzed: the estimate is exact here
    # No row has both; the planner (independent columns) still expects one.
    r = client.get("/many?id=eq.5&grp=eq.1", headers={"Prefer": "count=planned"})
    assert r.json() == []
    if server.dialect == "postgresql":  # fewer rows than the total: 206, as PostgREST
        assert (r.status_code, r.headers["content-range"]) == (206, "*/1")
    else:  # SQLite counts exactly
        assert (r.status_code, r.headers["content-range"]) == (200, "*/0")


def test_planned_and_exact_counts_are_cached_apart(server: Server, client: httpx.Client) -> None:
    """The same read asked with ``count=planned`` then ``count=exact``: each its own answer
    (seen failing first: the exact count was served from the planned one's cache entry)."""
    path = "/many?id=eq.5&grp=eq.1&limit=1"
    client.get(path, headers={"Prefer": "count=planned"})
    r = client.get(path, headers={"Prefer": "count=exact"})
    assert r.headers["content-range"] == "*/0"


def test_estimated_count_is_exact_under_max_rows(server: Server) -> None:
    with ServerProcess(server.database_url, env={"HEADWATER_MAX_ROWS": "100"}) as s, \
            httpx.Client(base_url=s.url, timeout=30) as c:
        prefer = {"Prefer": "count=estimated"}
        r = c.get("/many?id=lte.50", headers=prefer)
        assert (r.status_code, r.headers["content-range"]) == (200, "0-49/50")
        r = c.get("/many?id=eq.5&grp=eq.1", headers=prefer)
        assert r.headers["content-range"] == "*/0"  # exact: under the threshold
        r = c.get("/many?grp=eq.1", headers=prefer)
        assert r.status_code == 206
        expected = 200
        if server.dialect == "postgresql":
            expected = max(101, _planner_rows(server.database_url, "grp = $1", 1))
        assert r.headers["content-range"] == f"0-99/{expected}"
        r = c.get("/many?grp=eq.1", headers={"Prefer": "count=exact"})
        assert r.headers["content-range"] == "0-99/200"


# --- Accept: application/vnd.pgrst.plan -------------------------------------------------------

PLAN_JSON = {"Accept": "application/vnd.pgrst.plan+json"}


def test_plan_is_not_offered_by_default(client: httpx.Client) -> None:
    r = client.get("/things?id=eq.1", headers={"Accept": "application/vnd.pgrst.plan"})
    assert r.status_code == 406
    assert r.json() == {"code": "PGRST107", "details": None, "hint": None,
                        "message": "None of these media types are available: "
                                   "application/vnd.pgrst.plan"}


def test_plan_when_enabled(server: Server) -> None:
    with ServerProcess(server.database_url, args=("--db-plan-enabled",)) as s, \
            httpx.Client(base_url=s.url, timeout=30) as c:
        if server.dialect == "sqlite":  # EXPLAIN is PostgreSQL's
            r = c.get("/things", headers=PLAN_JSON)
            assert r.status_code == 406 and r.json()["code"] == "PGRST107"
            return
        r = c.get("/things?id=in.(1,2,3)&select=id,owners(name)", headers=PLAN_JSON)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/vnd.pgrst.plan+json; charset=utf-8"
        assert isinstance(r.json()[0]["Plan"]["Total Cost"], float)
        r = c.get("/things?id=eq.1", headers={"Accept": "application/vnd.pgrst.plan"})
        assert r.headers["content-type"] == "application/vnd.pgrst.plan+text; charset=utf-8"
        assert "cost=" in r.text and "things" in r.text
        r = c.get("/things?id=eq.1", headers={
            "Accept": 'application/vnd.pgrst.plan+json; for="text/csv"; options=analyze|verbose'})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == ('application/vnd.pgrst.plan+json; for="text/csv"; '
                                             "options=analyze|verbose; charset=utf-8")
        top = r.json()[0]["Plan"]
        assert "Actual Rows" in top and "Output" in top
        assert any("string_agg" in o for o in top["Output"]) or "string_agg" in r.text
        # A better-ranked JSON is answered as JSON.
        r = c.get("/things?id=eq.1",
                  headers={"Accept": "application/json, application/vnd.pgrst.plan;q=0.5"})
        assert r.json()[0]["id"] == 1
        bad = c.get("/things", headers={"Accept": "application/vnd.pgrst.plan; options=drop"})
        assert bad.status_code == 406
    # A plan never runs what the read itself may not: aggregates switched off stay off.
    with ServerProcess(server.database_url, args=("--db-plan-enabled", "--no-aggregates")) as s, \
            httpx.Client(base_url=s.url, timeout=30) as c:
        r = c.get("/things?select=id.sum()",
                  headers={"Accept": "application/vnd.pgrst.plan+json; options=analyze"})
        assert (r.status_code, r.json()["code"]) == (400, "PGRST123"), r.text
        # Writes are not explained (nor run) with a plan Accept.
        w = c.post("/owners", json={"id": 9, "name": "x"},
                   headers={"Accept": "application/vnd.pgrst.plan+json; options=analyze"})
        assert w.status_code == 406
        assert oracle.rows(server.database_url, "SELECT count(*) FROM owners WHERE id = 9") \
            == [(0,)]
