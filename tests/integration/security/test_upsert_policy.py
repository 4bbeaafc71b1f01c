"""Upserts under row policies, over real HTTP on both databases; the database is the oracle.

Roles: ``user`` reads public posts and its own, and inserts and updates only its own
(``user_id = claims.sub``); ``admin`` may do everything. Any row an upsert would overwrite
must pass the caller's update policy, whether its key came from the body or from a default
(a sequence, a column default); and ``on_conflict`` must name a primary key or a unique
constraint or index, with one answer whatever rows the caller cannot see.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from headwater.testing import ServerProcess
from tests.conftest import _pg_execute, pg_url_for
from tests.integration import oracle
from tests.integration.security.conftest import SECRET_ENV, Keys

SETTINGS = """
[auth]
jwt_secret = "env:HW_TEST_JWT_SECRET"
audience = "headwater-test"

[[policy]]
role = "user"
table = "*"
actions = ["select"]
rows = "or=(private.is.false,user_id.eq.{claims.sub})"

[[policy]]
role = "user"
table = "*"
actions = ["insert", "update"]
rows = "user_id=eq.{claims.sub}"

[[policy]]
role = "admin"
table = "*"
actions = ["*"]
"""

PG_DDL = """
CREATE TABLE posts (
  id serial PRIMARY KEY,
  user_id text NOT NULL,
  title text NOT NULL DEFAULT 'untitled',
  slug text,
  body text,
  private boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX posts_user_slug ON posts (user_id, slug);
CREATE TABLE notes (
  id serial PRIMARY KEY,
  handle text NOT NULL UNIQUE DEFAULT 'inbox',
  user_id text NOT NULL,
  body text,
  private boolean NOT NULL DEFAULT false
);
INSERT INTO posts (user_id, title, body)
  SELECT 'carol', 'seed ' || n, 'seed' FROM generate_series(1, 14) AS n;
"""

SQLITE_DDL = """
CREATE TABLE posts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL,
  title TEXT NOT NULL DEFAULT 'untitled',
  slug TEXT,
  body TEXT,
  private BOOLEAN NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX posts_user_slug ON posts (user_id, slug);
CREATE TABLE notes (
  id INTEGER PRIMARY KEY,
  handle TEXT NOT NULL UNIQUE DEFAULT 'inbox',
  user_id TEXT NOT NULL,
  body TEXT,
  private BOOLEAN NOT NULL DEFAULT 0
);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 14)
INSERT INTO posts (user_id, title, body) SELECT 'carol', 'seed ' || i, 'seed' FROM n;
"""

MERGE = {"Prefer": "resolution=merge-duplicates,return=representation"}
_n = itertools.count(1)


@dataclass
class Served:
    url: str
    database_url: str
    dialect: str
    keys: Keys

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return oracle.rows(self.database_url, sql, *params)

    def as_(self, who: str) -> dict[str, str]:
        return self.keys.bearer("admin" if who == "admin" else "user", who)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           jwt_keys: Keys) -> Iterator[Served]:
    dialect = request.param
    admin = ""
    if dialect == "sqlite":
        url = f"sqlite:///{Path(tmp_path_factory.mktemp('upsert')) / 'upsert.db'}"
        oracle.execute(url, SQLITE_DDL)
    else:
        admin = request.getfixturevalue("pg_admin")
        name = "hw_upsert_" + secrets.token_hex(4)
        asyncio.run(_pg_execute(admin, f'CREATE DATABASE "{name}"'))
        url = pg_url_for(name)
        oracle.execute(url, PG_DDL)
    config = Path(tmp_path_factory.mktemp("upsert_cfg")) / "headwater.toml"
    config.write_text(SETTINGS)
    try:
        with ServerProcess(url, env=dict(SECRET_ENV), args=("--config", str(config))) as server:
            yield Served(server.url, url, dialect, jwt_keys)
    finally:
        if admin:
            asyncio.run(_pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30) as c:
        yield c


def _post_row(served: Served, post_id: int) -> tuple[Any, ...]:
    [row] = served.rows("SELECT user_id, title, body, private FROM posts WHERE id = $1", post_id)
    return row[0], row[1], row[2], bool(row[3])


def _next_id(served: Served) -> int:
    """The id the next defaulted row gets."""
    if served.dialect == "postgresql":
        [(last, called)] = served.rows("SELECT last_value, is_called FROM posts_id_seq")
        return int(last) + (1 if called else 0)
    [(top,)] = served.rows("SELECT seq FROM sqlite_sequence WHERE name = 'posts'")
    return int(top) + 1


def test_upsert_with_defaulted_keys_cannot_take_over_a_hidden_row(
        client: httpx.Client, served: Served) -> None:
    # Bob writes a private post with an explicit id ahead of the sequence...
    bob_id = _next_id(served) + 4
    r = client.post("/posts", headers=served.as_("bob"),
                    json={"id": bob_id, "user_id": "bob", "title": "bob's secret",
                          "body": "diary", "private": True})
    assert r.status_code == 201, r.text
    before = _post_row(served, bob_id)
    alice_before = served.rows("SELECT count(*) FROM posts WHERE user_id = 'alice'")
    # ...and Alice upserts five rows without ids: on PostgreSQL the fifth default is bob's id.
    rows = [{"user_id": "alice", "title": f"mine {i}", "body": "taken", "private": False}
            for i in range(5)]
    r = client.post("/posts", headers={**served.as_("alice"), **MERGE}, json=rows)
    assert _post_row(served, bob_id) == before == ("bob", "bob's secret", "diary", True)
    if served.dialect == "postgresql":
        assert (r.status_code, r.json()["code"]) == (403, "42501"), r.text
        assert served.rows("SELECT count(*) FROM posts WHERE user_id = 'alice'") == alice_before
    else:
        # SQLite's AUTOINCREMENT never hands out an id below one already used.
        assert r.status_code == 201, r.text
        assert bob_id not in {p["id"] for p in r.json()}


def test_upsert_with_a_defaulted_unique_key_cannot_take_over_a_hidden_row(
        client: httpx.Client, served: Served) -> None:
    handle = "inbox"  # the column's default
    r = client.post("/notes", headers=served.as_("bob"),
                    json={"handle": handle, "user_id": "bob", "body": "diary", "private": True})
    assert r.status_code == 201, r.text
    before = served.rows("SELECT id, user_id, body, private FROM notes WHERE handle = $1", handle)
    r = client.post("/notes?on_conflict=handle", headers={**served.as_("alice"), **MERGE},
                    json=[{"user_id": "alice", "body": "taken"}])
    assert (r.status_code, r.json()["code"]) == (403, "42501"), r.text
    assert served.rows("SELECT id, user_id, body, private FROM notes WHERE handle = $1",
                       handle) == before
    assert served.rows("SELECT count(*) FROM notes WHERE user_id = 'alice'") == [(0,)]


def test_upsert_of_own_rows_still_works(client: httpx.Client, served: Served) -> None:
    h = {**served.as_("alice"), **MERGE}
    r = client.post("/posts", headers=h, json=[{"user_id": "alice", "title": "own",
                                                "body": "v1"}])
    assert r.status_code == 201, r.text
    own = r.json()[0]["id"]
    mixed = {**h, "Prefer": h["Prefer"] + ",missing=default"}
    r = client.post("/posts", headers=mixed, json=[
        {"id": own, "user_id": "alice", "title": "own", "body": "v2"},
        {"user_id": "alice", "title": "new", "body": "v1"}])
    assert r.status_code in (200, 201), r.text
    assert len(r.json()) == 2
    assert _post_row(served, own) == ("alice", "own", "v2", False)
    # a visible but foreign row is refused just the same, and the request rolls back
    carol = served.rows("SELECT id FROM posts WHERE user_id = 'carol' ORDER BY id LIMIT 1")[0][0]
    r = client.post("/posts", headers=h, json=[
        {"id": own, "user_id": "alice", "title": "own", "body": "v3"},
        {"id": carol, "user_id": "alice", "title": "mine now", "body": "taken"}])
    assert (r.status_code, r.json()["code"]) == (403, "42501"), r.text
    assert _post_row(served, own) == ("alice", "own", "v2", False)
    assert _post_row(served, carol)[0] == "carol"
    # PUT of an own row
    r = client.put(f"/posts?id=eq.{own}", headers=served.as_("alice"),
                   json={"id": own, "user_id": "alice", "title": "own", "body": "v4"})
    assert r.status_code in (200, 204), r.text
    assert _post_row(served, own)[2] == "v4"


def test_an_update_that_would_hand_the_row_to_someone_else_is_refused(
        client: httpx.Client, served: Served) -> None:
    h = {**served.as_("alice"), **MERGE}
    own = client.post("/posts", headers=h, json=[{"user_id": "alice", "body": "x"}]).json()[0]
    r = client.post("/posts", headers=h, json=[{"id": own["id"], "user_id": "bob"}])
    assert (r.status_code, r.json()["code"]) == (403, "42501"), r.text
    assert _post_row(served, own["id"])[0] == "alice"


def test_on_conflict_must_name_a_unique_key(client: httpx.Client, served: Served) -> None:
    h = {**served.as_("alice"), **MERGE}
    # title is not unique: 400 whether or not a row the caller cannot see has the value
    client.post("/posts", headers=served.as_("bob"),
                json={"user_id": "bob", "title": "hidden title", "private": True})
    answers = []
    for title in ("hidden title", f"no such title {next(_n)}"):
        r = client.post("/posts?on_conflict=title", headers=h,
                        json=[{"user_id": "alice", "title": title, "body": "b"}])
        answers.append((r.status_code, r.json()))
    assert answers[0] == answers[1]
    status, body = answers[0]
    assert (status, body["code"]) == (400, "42P10"), body
    assert "(id)" in body["hint"] and "(slug, user_id)" in body["hint"]
    # a unique index, named in any column order; a unique column constraint
    for keys in ("user_id,slug", "slug,user_id"):
        slug = f"s{next(_n)}"
        for body_text in ("one", "two"):
            r = client.post(f"/posts?on_conflict={keys}", headers=h,
                            json=[{"user_id": "alice", "slug": slug, "body": body_text}])
            assert r.status_code in (200, 201), r.text
        assert served.rows("SELECT body FROM posts WHERE slug = $1", slug) == [("two",)]
    r = client.post("/notes?on_conflict=handle", headers=h,
                    json=[{"handle": f"h{next(_n)}", "user_id": "alice"}])
    assert r.status_code == 201, r.text
    # also without policies in the way, and for ignore-duplicates
    r = client.post("/posts?on_conflict=body", headers={
        **served.as_("admin"), "Prefer": "resolution=ignore-duplicates"}, json=[{"user_id": "x"}])
    assert (r.status_code, r.json()["code"]) == (400, "42P10"), r.text
