"""Full-text filters over real HTTP: PostgreSQL's text search, and SQLite through an
external-content FTS5 table, with the same answers for the same rows."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from headwater.testing import ServerProcess
from tests.conftest import _pg_execute, pg_url_for
from tests.integration import oracle

ROWS = """
INSERT INTO docs VALUES
  (1, 'The fat cat', 'ate the rat'),
  (2, 'impossible things', 'kind of fun'),
  (3, NULL, 'no title'),
  (4, 'a fat dog', 'also fun and possible');
"""
SQLITE = """
CREATE TABLE docs (id INTEGER PRIMARY KEY, title TEXT, body TEXT);
CREATE VIRTUAL TABLE docs_fts USING fts5(title, content='docs', content_rowid='id',
                                         tokenize='porter');
CREATE TRIGGER docs_ai AFTER INSERT ON docs BEGIN
  INSERT INTO docs_fts(rowid, title) VALUES (new.id, new.title);
END;
CREATE TRIGGER docs_ad AFTER DELETE ON docs BEGIN
  INSERT INTO docs_fts(docs_fts, rowid, title) VALUES ('delete', old.id, old.title);
END;
CREATE TRIGGER docs_au AFTER UPDATE ON docs BEGIN
  INSERT INTO docs_fts(docs_fts, rowid, title) VALUES ('delete', old.id, old.title);
  INSERT INTO docs_fts(rowid, title) VALUES (new.id, new.title);
END;
""" + ROWS
POSTGRES = "CREATE TABLE docs (id int PRIMARY KEY, title text, body text);" + ROWS


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def client(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    if request.param == "sqlite":
        url = f"sqlite:///{Path(tmp_path_factory.mktemp('fts')) / 'fts.db'}"
        oracle.execute(url, SQLITE)
    else:
        admin = request.getfixturevalue("pg_admin")
        name = "hw_fts_" + secrets.token_hex(4)
        asyncio.run(_pg_execute(admin, f'CREATE DATABASE "{name}"'))
        request.addfinalizer(lambda: asyncio.run(  # noqa: PT021
            _pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))
        url = pg_url_for(name)
        oracle.execute(url, POSTGRES)
    with ServerProcess(url) as s, httpx.Client(base_url=s.url, timeout=30) as c:
        c.headers["x-dialect"] = request.param
        yield c


@pytest.mark.parametrize(("query", "ids"), [
    ("title=fts.impossible", [2]),
    ("title=fts.fat%26cat", [1]),
    ("title=fts.fat%26!cat", [4]),
    ("title=fts.impossible%7Cdog", [2, 4]),
    ("title=plfts.fat%20cat", [1]),
    ("title=phfts.fat%20cat", [1]),
    ("title=phfts.cat%20fat", []),
    ("title=wfts.fat%20or%20impossible", [1, 2, 4]),
    ("title=wfts.fat%20-dog", [1]),
    ("title=wfts.%22a%20fat%20dog%22", [4]),
    ("title=not.fts.fat", [2]),  # NULL titles match neither way
    ("or=(title.fts.impossible,id.eq.1)", [1, 2]),
])
def test_full_text_filters(client: httpx.Client, query: str, ids: list[int]) -> None:
    r = client.get(f"/docs?select=id&order=id&{query}")
    assert r.status_code == 200, r.text
    assert [row["id"] for row in r.json()] == ids


def test_full_text_follows_writes(client: httpx.Client) -> None:
    assert client.post("/docs", json={"id": 9, "title": "zebra crossing"}).status_code == 201
    assert client.get("/docs?select=id&title=fts.zebra").json() == [{"id": 9}]
    assert client.delete("/docs?id=eq.9").status_code == 204
    assert client.get("/docs?select=id&title=fts.zebra").json() == []


def test_sqlite_without_an_index_says_how_to_make_one(client: httpx.Client) -> None:
    r = client.get("/docs?body=fts.fun")
    if client.headers["x-dialect"] == "postgresql":
        assert [d["id"] for d in r.json()] == [2, 4]
        return
    assert r.status_code == 400
    body = r.json()
    assert "FTS5" in body["message"] and "docs.body" in body["message"]
    assert "CREATE VIRTUAL TABLE docs_fts USING fts5(body, content='docs'" in body["hint"]
    r = client.get("/docs?title=fts(english).fat")
    assert r.status_code == 400 and "PostgreSQL" in r.json()["message"]


@pytest.mark.parametrize("query", ["(fat", "fat%20%26%20)", "()", "fat%20%26%20%26%20b",
                                   "%7C%20fat", "fat%20%26%20!"])
def test_a_malformed_search_is_a_400_not_a_500(client: httpx.Client, query: str) -> None:
    """Seen failing first on SQLite (FTS5's syntax error was a 500)."""
    r = client.get(f"/docs?select=id&title=fts.{query}")
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert r.json()["code"] in ("42601", "PGRST100")
