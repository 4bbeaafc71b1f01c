"""Several exposed schemas over real HTTP (PostgreSQL): Accept-Profile / Content-Profile."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from headwater.testing import ServerProcess
from tests.conftest import _pg_execute, pg_url_for
from tests.integration import oracle

DDL = """
CREATE SCHEMA v1;
CREATE SCHEMA v2;
CREATE TABLE v1.parents (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE v2.parents (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE v1.children (id int PRIMARY KEY, name text, parent_id int REFERENCES v1.parents);
CREATE TABLE v2.children (id int PRIMARY KEY, name text, parent_id int REFERENCES v2.parents);
CREATE TABLE v2.another_table (id int PRIMARY KEY, another_value text);
CREATE TABLE public.parents (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO v1.parents VALUES (1, 'parent v1-1'), (2, 'parent v1-2');
INSERT INTO v2.parents VALUES (3, 'parent v2-3'), (4, 'parent v2-4');
INSERT INTO v2.children VALUES (1, 'child v2-3', 3);
INSERT INTO v2.another_table VALUES (5, 'value 5');
INSERT INTO public.parents VALUES (9, 'public parent');
"""


@dataclass(frozen=True)
class Db:
    url: str


@pytest.fixture(scope="module")
def db(pg_admin: str) -> Iterator[Db]:
    name = "hw_schemas_" + secrets.token_hex(4)
    asyncio.run(_pg_execute(pg_admin, f'CREATE DATABASE "{name}"'))
    try:
        url = pg_url_for(name)
        oracle.execute(url, DDL)
        yield Db(url)
    finally:
        asyncio.run(_pg_execute(pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def multi(db: Db) -> Iterator[httpx.Client]:
    with ServerProcess(db.url, env={"HEADWATER_DB_SCHEMAS": "v1, v2"}) as s, \
            httpx.Client(base_url=s.url, timeout=30) as c:
        yield c


NOT_EXPOSED = {"code": "PGRST106", "details": None, "hint": None,
               "message": "The schema must be one of the following: v1, v2"}


def test_reads_choose_the_schema(multi: httpx.Client) -> None:
    r = multi.get("/parents?order=id")
    assert r.json() == [{"id": 1, "name": "parent v1-1"}, {"id": 2, "name": "parent v1-2"}]
    assert r.headers["content-profile"] == "v1"
    r = multi.get("/parents?order=id", headers={"Accept-Profile": "v1"})
    assert r.json()[0]["id"] == 1 and r.headers["content-profile"] == "v1"
    for _ in range(2):  # a second time: never the other schema's cached answer
        r = multi.get("/parents?order=id", headers={"Accept-Profile": "v2"})
        assert r.json() == [{"id": 3, "name": "parent v2-3"}, {"id": 4, "name": "parent v2-4"}]
        assert r.headers["content-profile"] == "v2"
        assert r.headers["vary"].endswith(", Accept-Profile")
    r = multi.get("/another_table", headers={"Accept-Profile": "v2"})
    assert r.json() == [{"id": 5, "another_value": "value 5"}]
    assert multi.get("/another_table", headers={"Accept-Profile": "v1"}).status_code == 404
    r = multi.get("/parents?select=name,children(name)&id=eq.3",
                  headers={"Accept-Profile": "v2"})
    assert r.json() == [{"name": "parent v2-3", "children": [{"name": "child v2-3"}]}]


def test_unexposed_schema_is_406(multi: httpx.Client) -> None:
    for headers in ({"Accept-Profile": "public"}, {"Accept-Profile": "unknown"}):
        r = multi.get("/parents", headers=headers)
        assert (r.status_code, r.json()) == (406, NOT_EXPOSED)
    r = multi.post("/children", json={"id": 7, "name": "x"},
                   headers={"Content-Profile": "public"})
    assert (r.status_code, r.json()) == (406, NOT_EXPOSED)
    r = multi.get("/", headers={"Accept-Profile": "nope"})
    assert (r.status_code, r.json()) == (406, NOT_EXPOSED)


def test_writes_choose_the_schema(db: Db, multi: httpx.Client) -> None:
    r = multi.post("/children?select=id,parents(*)", json={"id": 10, "name": "c", "parent_id": 4},
                   headers={"Content-Profile": "v2", "Prefer": "return=representation"})
    assert r.status_code == 201, r.text
    assert r.json() == [{"id": 10, "parents": {"id": 4, "name": "parent v2-4"}}]
    assert r.headers["content-profile"] == "v2"
    assert oracle.rows(db.url, "SELECT count(*) FROM v2.children WHERE id = 10") == [(1,)]
    assert oracle.rows(db.url, "SELECT count(*) FROM v1.children WHERE id = 10") == [(0,)]
    r = multi.patch("/children?id=eq.10", json={"name": "patched"},
                    headers={"Content-Profile": "v2", "Prefer": "return=representation"})
    assert r.json() == [{"id": 10, "name": "patched", "parent_id": 4}]
    r = multi.delete("/children?id=eq.10", headers={"Content-Profile": "v2"})
    assert r.status_code == 204
    assert oracle.rows(db.url, "SELECT count(*) FROM v2.children WHERE id = 10") == [(0,)]
    # No profile: the default schema, v1
    r = multi.post("/children", json={"id": 11, "name": "d", "parent_id": 1})
    assert r.status_code == 201 and r.headers["content-profile"] == "v1"
    assert oracle.rows(db.url, "SELECT count(*) FROM v1.children WHERE id = 11") == [(1,)]


def test_openapi_per_schema(multi: httpx.Client) -> None:
    r = multi.get("/", headers={"Accept-Profile": "v2"})
    assert r.status_code == 200 and r.headers["content-profile"] == "v2"
    assert "/another_table" in r.json()["paths"]
    r = multi.get("/")
    assert r.headers["content-profile"] == "v1"
    assert "/another_table" not in r.json()["paths"] and "/parents" in r.json()["paths"]


def test_functions_are_not_silently_served_from_another_schema(multi: httpx.Client) -> None:
    r = multi.get("/rpc/anything", headers={"Accept-Profile": "v2"})
    assert r.status_code == 406 and r.json()["code"] == "PGRST106"


def test_single_schema_is_unchanged(db: Db) -> None:
    with ServerProcess(db.url) as s, httpx.Client(base_url=s.url, timeout=30) as c:
        r = c.get("/parents")
        assert r.json() == [{"id": 9, "name": "public parent"}]
        assert "content-profile" not in r.headers
        assert c.get("/parents", headers={"Accept-Profile": "public"}).status_code == 200
        r = c.get("/parents", headers={"Accept-Profile": "v2"})
        assert (r.status_code, r.json()["message"]) == (
            406, "The schema must be one of the following: public")
