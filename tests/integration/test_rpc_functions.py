"""Database functions over ``/rpc/{name}`` (issue 15), as PostgREST serves them.

PostgreSQL: a fresh database with a few functions, served by a real ``headwater serve``,
called with the ``postgrest`` client and raw HTTP. SQLite has no functions: ``/rpc`` for an
unknown name stays 404 PGRST202.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from postgrest import APIError, SyncPostgrestClient
from postgrest.types import CountMethod

from headwater.testing import ServerProcess
from tests.conftest import Served, _pg_execute, pg_url_for
from tests.integration import oracle

SCHEMA = r"""
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric NOT NULL,
                    category text NOT NULL);
INSERT INTO items VALUES (1, 'apple', 1.5, 'fruit'), (2, 'banana', 0.5, 'fruit'),
  (3, 'carrot', 0.8, 'veg'), (4, 'donut', 2.0, 'sweet'), (5, 'egg', 0.3, 'protein');
CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);

CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL);
INSERT INTO counters VALUES (1, 0), (2, 0);
CREATE FUNCTION bump(counter_id int) RETURNS int LANGUAGE sql VOLATILE
  AS $$ UPDATE counters SET n = n + 1 WHERE id = counter_id RETURNING n $$;
CREATE FUNCTION counter_value(counter_id int) RETURNS int LANGUAGE sql STABLE
  AS $$ SELECT n FROM counters WHERE id = counter_id $$;

CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT a + b $$;
CREATE FUNCTION items_cheaper(max_price numeric) RETURNS SETOF items LANGUAGE sql STABLE
  AS $$ SELECT * FROM items WHERE price <= max_price $$;
CREATE FUNCTION price_list(cat text DEFAULT NULL) RETURNS TABLE (item text, cost numeric)
  LANGUAGE sql STABLE
  AS $$ SELECT name, price FROM items WHERE cat IS NULL OR category = cat ORDER BY id $$;
CREATE FUNCTION first_item() RETURNS items LANGUAGE sql STABLE
  AS $$ SELECT * FROM items WHERE id = 1 $$;
CREATE FUNCTION add_note(body text) RETURNS void LANGUAGE sql VOLATILE
  AS $$ INSERT INTO notes (body) VALUES (body) $$;
CREATE FUNCTION add_notes(bodies text[]) RETURNS SETOF notes LANGUAGE sql VOLATILE
  AS $$ INSERT INTO notes (body) SELECT unnest(bodies) RETURNING * $$;
CREATE FUNCTION echo_json(json) RETURNS json LANGUAGE sql IMMUTABLE AS $$ SELECT $1 $$;
CREATE FUNCTION wrap(payload jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
  AS $$ SELECT jsonb_build_object('got', payload) $$;
CREATE FUNCTION describe(x int) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'int' $$;
CREATE FUNCTION describe(s text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'text' $$;
CREATE FUNCTION pick(a int DEFAULT 1) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT a $$;
CREATE FUNCTION pick(b text DEFAULT 'two') RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT b $$;
CREATE FUNCTION joined(VARIADIC parts text[]) RETURNS text LANGUAGE sql IMMUTABLE
  AS $$ SELECT array_to_string(parts, '-') $$;
CREATE FUNCTION fail_plain() RETURNS int LANGUAGE plpgsql
  AS $$ BEGIN RAISE EXCEPTION 'plain failure'; END $$;
CREATE FUNCTION fail_custom() RETURNS int LANGUAGE plpgsql
  AS $$ BEGIN RAISE EXCEPTION 'custom failure' USING ERRCODE = 'AB123', DETAIL = 'why',
                                                   HINT = 'fix it'; END $$;
CREATE FUNCTION fail_teapot() RETURNS int LANGUAGE plpgsql
  AS $$ BEGIN RAISE SQLSTATE 'PT418' USING MESSAGE = 'I am a teapot'; END $$;
CREATE FUNCTION fail_pgrst() RETURNS int LANGUAGE plpgsql AS $$ BEGIN
  RAISE SQLSTATE 'PGRST' USING
    MESSAGE = '{"code":"123","message":"Payment Required","details":"Quota exceeded",'
              || '"hint":"Upgrade your plan"}',
    DETAIL = '{"status":402,"headers":{"X-Powered-By":"Nerd Rage"}}';
END $$;
"""

POLICY = """
[auth]
jwt_secret = "{secret}"
anonymous_role = "anon"

[[policy]]
role = "anon"
table = "items"
actions = ["select"]
rpc = ["add"]
"""


@pytest.fixture(scope="module")
def functions_db(pg_admin: str) -> Iterator[str]:
    name = "hw_fn_" + secrets.token_hex(4)
    asyncio.run(_pg_execute(pg_admin, f'CREATE DATABASE "{name}"'))
    url = pg_url_for(name)
    try:
        asyncio.run(_pg_execute(url, SCHEMA))
        yield url
    finally:
        asyncio.run(_pg_execute(pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def server(functions_db: str) -> Iterator[Served]:
    with ServerProcess(functions_db) as s:
        yield Served(s.url, functions_db, "postgresql")


@pytest.fixture
def client(server: Served) -> Iterator[SyncPostgrestClient]:
    c = SyncPostgrestClient(server.url)
    try:
        yield c
    finally:
        c.session.close()


def _args(**kw: Any) -> Any:
    """RPC arguments (the client types them as strings; JSON numbers are what we send)."""
    return kw


def test_scalar_with_the_postgrest_client(client: SyncPostgrestClient) -> None:
    assert client.rpc("add", _args(a=2, b=40)).execute().data == 42


def test_set_with_filters_order_limit(client: SyncPostgrestClient) -> None:
    res = (client.rpc("items_cheaper", _args(max_price=1.5)).gte("price", 0.5)
           .order("price", desc=True).limit(2).execute())
    data: Any = res.data
    assert [r["name"] for r in data] == ["apple", "carrot"]
    assert set(data[0]) == {"id", "name", "price", "category"}
    picked = client.rpc("items_cheaper", _args(max_price=10)).select("name").eq("category", "veg")
    assert picked.execute().data == [{"name": "carrot"}]
    one: Any = client.rpc("items_cheaper", _args(max_price=10)).eq("id", 4).single().execute()
    assert one.data["name"] == "donut"
    counted: Any = client.rpc("items_cheaper", _args(max_price=1),
                              count=CountMethod.exact).limit(1).execute()
    assert counted.count == 3 and len(counted.data) == 1


def test_returns_table_and_composite(server: Served) -> None:
    with httpx.Client(base_url=server.url) as h:
        r = h.post("/rpc/price_list?order=cost.asc&limit=2", json={"cat": "fruit"})
        assert r.status_code == 200, r.text
        assert r.json() == [{"item": "banana", "cost": 0.5}, {"item": "apple", "cost": 1.5}]
        r = h.get("/rpc/price_list", params={"cost": "gt.1", "select": "item"},
                  headers={"Range": "0-0"})
        assert r.status_code == 200, r.text
        assert r.json() == [{"item": "apple"}]
        assert r.headers["content-range"].startswith("0-0/")
        r = h.post("/rpc/first_item", json={})
        assert r.json() == {"id": 1, "name": "apple", "price": 1.5, "category": "fruit"}
        r = h.get("/rpc/price_list?cat=veg", headers={"Accept": "text/csv"})
        assert r.status_code == 200 and r.text.splitlines() == ["item,cost", "carrot,0.8"]


def test_get_with_query_arguments(server: Served) -> None:
    with httpx.Client(base_url=server.url) as h:
        r = h.get("/rpc/add", params={"a": "1", "b": "2"})
        assert (r.status_code, r.json()) == (200, 3)
        r = h.get("/rpc/joined?parts=a&parts=b&parts=c")
        assert (r.status_code, r.json()) == (200, "a-b-c")
        r = h.post("/rpc/joined", json={"parts": ["x", "y"]})
        assert (r.status_code, r.json()) == (200, "x-y")


def test_volatile_function_writes_and_invalidates_the_cache(server: Served) -> None:
    with httpx.Client(base_url=server.url) as h:
        before = h.get("/notes")
        assert before.status_code == 200 and before.json() == []
        again = h.get("/notes")
        assert again.headers.get("x-cache") == "HIT"
        r = h.get("/rpc/add_note", params={"body": "via get"})
        assert r.status_code == 405, r.text
        r = h.post("/rpc/add_note", json={"body": "hello"})
        assert r.status_code == 204, r.text
        assert oracle.rows(server.database_url, "SELECT body FROM notes") == [("hello",)]
        after = h.get("/notes")
        assert [n["body"] for n in after.json()] == ["hello"]


def test_cached_reads_around_a_volatile_update(server: Served) -> None:
    """A VOLATILE function that updates a row: the cached read of that row is not served
    again after the call; a STABLE function's call leaves the cache alone."""
    with httpx.Client(base_url=server.url) as h:
        assert h.get("/counters?id=eq.1").json() == [{"id": 1, "n": 0}]
        assert h.get("/counters?id=eq.1").headers.get("x-cache") == "HIT"
        assert h.post("/rpc/counter_value", json={"counter_id": 1}).json() == 0
        cached = h.get("/counters?id=eq.1")
        assert cached.headers.get("x-cache") == "HIT" and cached.json() == [{"id": 1, "n": 0}]
        r = h.post("/rpc/bump", json={"counter_id": 1})
        assert (r.status_code, r.json()) == (200, 1), r.text
        assert oracle.rows(server.database_url, "SELECT n FROM counters WHERE id = 1") == [(1,)]
        after = h.get("/counters?id=eq.1")
        assert after.headers.get("x-cache") != "HIT"
        assert after.json() == [{"id": 1, "n": 1}]
        # Rolled back (tx=rollback is allowed when no policies are configured): nothing
        # written, and the cached read stays valid.
        assert h.get("/counters?id=eq.1").headers.get("x-cache") == "HIT"
        r = h.post("/rpc/bump", json={"counter_id": 1}, headers={"Prefer": "tx=rollback"})
        assert (r.status_code, r.json()) == (200, 2), r.text
        assert oracle.rows(server.database_url, "SELECT n FROM counters WHERE id = 1") == [(1,)]
        assert h.get("/counters?id=eq.1").json() == [{"id": 1, "n": 1}]


def test_a_volatile_call_is_one_event_committed_with_it(server: Served) -> None:
    """The rows a function writes are its own business (no triggers on the user's tables);
    each committed VOLATILE call is one ``rpc.{name}.call`` event with its arguments, in the
    call's transaction: none for a rolled-back or failed call, none for a STABLE one."""
    def calls() -> list[tuple[Any, ...]]:
        return oracle.rows(server.database_url,
                           "SELECT tbl, op, new::text FROM _headwater_outbox "
                           "WHERE tbl LIKE 'rpc.%' ORDER BY seq")

    before = len(calls())
    with httpx.Client(base_url=server.url) as h:
        assert h.post("/rpc/bump", json={"counter_id": 2}).status_code == 200
        assert h.post("/rpc/bump", json={"counter_id": 2},
                      headers={"Prefer": "tx=rollback"}).status_code == 200
        assert h.post("/rpc/counter_value", json={"counter_id": 2}).status_code == 200
        assert h.post("/rpc/add_notes", json={"bodies": ["a", "b"]}).status_code == 200
        assert h.post("/rpc/fail_plain", json={}).status_code == 400
    got = [(t, o, json.loads(n)) for t, o, n in calls()[before:]]
    assert got == [
        ("rpc.bump", "call", {"function": "bump", "args": {"counter_id": 2}}),
        ("rpc.add_notes", "call", {"function": "add_notes", "args": {"bodies": ["a", "b"]}})]


def test_single_json_parameter_and_single_object(server: Served) -> None:
    with httpx.Client(base_url=server.url) as h:
        r = h.post("/rpc/echo_json", json={"any": [1, 2], "shape": True})
        assert (r.status_code, r.json()) == (200, {"any": [1, 2], "shape": True})
        r = h.post("/rpc/wrap", json={"k": 1}, headers={"Prefer": "params=single-object"})
        assert (r.status_code, r.json()) == (200, {"got": {"k": 1}})


def test_overloads_by_argument_names(server: Served) -> None:
    with httpx.Client(base_url=server.url) as h:
        assert h.post("/rpc/describe", json={"x": 1}).json() == "int"
        assert h.post("/rpc/describe", json={"s": "a"}).json() == "text"
        r = h.post("/rpc/pick", json={})
        assert r.status_code == 300 and r.json()["code"] == "PGRST203"
        assert h.post("/rpc/pick", json={"b": "seven"}).json() == "seven"
        r = h.post("/rpc/describe", json={"nope": 1})
        assert r.status_code == 404 and r.json()["code"] == "PGRST202"


def test_raised_errors_map_like_postgrest(server: Served, client: SyncPostgrestClient) -> None:
    with httpx.Client(base_url=server.url) as h:
        r = h.post("/rpc/fail_plain", json={})
        assert r.status_code == 400
        assert r.json() == {"code": "P0001", "message": "plain failure", "details": None,
                            "hint": None}
        r = h.post("/rpc/fail_custom", json={})
        assert r.status_code == 400
        assert r.json() == {"code": "AB123", "message": "custom failure", "details": "why",
                            "hint": "fix it"}
        r = h.post("/rpc/fail_teapot", json={})
        assert (r.status_code, r.json()["code"], r.json()["message"]) == (
            418, "PT418", "I am a teapot")
        r = h.post("/rpc/fail_pgrst", json={})
        assert r.status_code == 402
        assert r.headers["x-powered-by"] == "Nerd Rage"
        assert r.json() == {"code": "123", "message": "Payment Required",
                            "details": "Quota exceeded", "hint": "Upgrade your plan"}
    with pytest.raises(APIError) as info:
        client.rpc("fail_plain", {}).execute()
    assert info.value.code == "P0001"


def test_openapi_lists_database_functions(server: Served) -> None:
    doc = httpx.get(server.url + "/").json()
    assert "post" in doc["paths"]["/rpc/add"] and "get" in doc["paths"]["/rpc/add"]
    assert "get" not in doc["paths"]["/rpc/add_note"]


def test_policies_allow_or_deny_each_function(functions_db: str,
                                               tmp_path: Path) -> None:
    config = tmp_path / "headwater.toml"
    config.write_text(POLICY.format(secret="s" * 40))
    with ServerProcess(functions_db, args=("--config", str(config))) as s, \
            httpx.Client(base_url=s.url) as h:
        assert h.post("/rpc/add", json={"a": 1, "b": 1}).json() == 2
        paths = h.get("/").json()["paths"]
        assert "/rpc/add" in paths and "/rpc/add_note" not in paths
        r = h.post("/rpc/add_note", json={"body": "anon"})
        assert r.status_code in (401, 403), r.text
        assert oracle.rows(functions_db, "SELECT count(*) FROM notes WHERE body = 'anon'") \
            == [(0,)]


def test_policies_refuse_a_function_by_name(functions_db: str, tmp_path: Path) -> None:
    """``rpc = ["*", "!add_note"]``: every function but that one."""
    config = tmp_path / "headwater.toml"
    config.write_text(POLICY.format(secret="s" * 40).replace(
        'rpc = ["add"]', 'rpc = ["*", "!add_note"]'))
    with ServerProcess(functions_db, args=("--config", str(config))) as s, \
            httpx.Client(base_url=s.url) as h:
        assert h.post("/rpc/add", json={"a": 1, "b": 1}).json() == 2
        assert h.post("/rpc/describe", json={"x": 1}).json() == "int"
        r = h.post("/rpc/add_note", json={"body": "refused"})
        assert r.status_code == 401 and r.json()["code"] == "42501", r.text
        paths = h.get("/").json()["paths"]
        assert "/rpc/describe" in paths and "/rpc/add_note" not in paths
        assert oracle.rows(functions_db,
                           "SELECT count(*) FROM notes WHERE body = 'refused'") == [(0,)]


def test_object_accept_rolls_back_a_set_function(server: Served) -> None:
    """``.single()`` on a function that writes two rows: 406, and neither row stays."""
    with httpx.Client(base_url=server.url) as h:
        r = h.post("/rpc/add_notes", json={"bodies": ["one", "two"]},
                   headers={"Accept": "application/vnd.pgrst.object+json"})
        assert r.status_code == 406 and r.json()["code"] == "PGRST116", r.text
        assert oracle.rows(server.database_url,
                           "SELECT count(*) FROM notes WHERE body IN ('one', 'two')") == [(0,)]
        r = h.post("/rpc/add_notes?select=body", json={"bodies": ["three"]},
                   headers={"Accept": "application/vnd.pgrst.object+json"})
        assert (r.status_code, r.json()) == (200, {"body": "three"})


def test_caller_mistakes_are_4xx(server: Served) -> None:
    with httpx.Client(base_url=server.url) as h:
        for method, path, body in [
            ("POST", "/rpc/add", {"a": "x", "b": 1}),
            ("POST", "/rpc/add", {"a": 1e40, "b": 1}),
            ("POST", "/rpc/add", [1, 2]),
            ("POST", "/rpc/add", {"a": 1, "b": 2, "c": 3}),
            ("GET", "/rpc/add?a=1&b=2&c=3", None),
            ("GET", "/rpc/items_cheaper?max_price=1&nope=eq.1", None),
            ("GET", "/rpc/items_cheaper?max_price=1&select=nope", None),
            ("GET", "/rpc/items_cheaper?max_price=abc", None),
            ("POST", "/rpc/joined", {"parts": {"not": "an array"}}),
        ]:
            r = h.request(method, path, json=body)
            assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text)
            assert set(r.json()) == {"code", "message", "details", "hint"}


def test_python_function_shadows_a_database_function(functions_db: str,
                                                     tmp_path: Path) -> None:
    log_file = tmp_path / "server.log"
    with ServerProcess(functions_db, args=("--app", "tests.integration.rpc_shadow_app:app"),
                       log_file=str(log_file)) as s, httpx.Client(base_url=s.url) as h:
        assert h.post("/rpc/describe", json={"x": 1}).json() == "python 1"
        assert h.post("/rpc/add", json={"a": 1, "b": 1}).json() == 2
    log = log_file.read_text()
    # The warning at start names the function (and only that one).
    warnings = [line for line in log.splitlines() if "rpc_shadows_database_function" in line]
    assert len(warnings) == 1 and "describe" in warnings[0], log


def test_functions_reload_with_the_catalog(functions_db: str) -> None:
    """A function created after start is served once the catalog is reloaded (SIGHUP)."""
    with ServerProcess(functions_db) as s, httpx.Client(base_url=s.url) as h:
        assert h.post("/rpc/late_one", json={}).status_code == 404
        oracle.execute(functions_db, "CREATE FUNCTION late_one() RETURNS int LANGUAGE sql "
                                     "IMMUTABLE AS $$ SELECT 1 $$")
        s.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while h.post("/rpc/late_one", json={}).status_code == 404:
            assert time.monotonic() < deadline, "not reloaded"
            time.sleep(0.1)
        assert h.post("/rpc/late_one", json={}).json() == 1


def test_unknown_function_is_404(served: Served) -> None:
    r = httpx.post(served.url + "/rpc/no_such_function", json={})
    assert r.status_code == 404 and r.json()["code"] == "PGRST202"
