"""Columns a role may not read stay hidden, whatever the action (issue 16, items 3, 5, 12).

A role may filter, order and return only the columns its select policy lists; a hidden column
answers exactly like an unknown one (400 ``42703``), suggestions name only readable columns,
``Prefer: tx=rollback`` is ignored under policies unless the settings allow it, and constraint
errors echo no row values. The database, read directly, is the oracle: nothing changes.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from headwater.testing import ServerProcess
from tests.integration import oracle
from tests.integration.security.conftest import SECRET_ENV, Keys, writable_database

SETTINGS = """
[auth]
jwt_secret = "env:HW_TEST_JWT_SECRET"
audience = "headwater-test"
anonymous_role = "anon"

[[policy]]
role = "anon"
table = "customers"
actions = ["select"]
columns = ["id", "name"]

# support reads only id and email of customers, but may update and delete any row: its write
# policies list rows and no columns
[[policy]]
role = "support"
table = "customers"
actions = ["select"]
columns = ["id", "email"]

[[policy]]
role = "support"
table = "customers"
actions = ["update", "delete"]
rows = "id=gt.0"

[[policy]]
role = "support"
table = "orders"
actions = ["select"]
columns = ["id", "customer_id", "status"]

[[policy]]
role = "support"
table = "orders"
actions = ["update"]
rows = "id=gt.0"

[[policy]]
role = "admin"
table = "*"
actions = ["*"]

[encryption]
keys = { k1 = "env:HW_TEST_KEY1" }
current_key = "k1"
columns = ["orders.note"]
"""

_ids = itertools.count(910_000)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[str, str]]:
    """(API url, database url) of a server running SETTINGS on its own demo data."""
    db_url = writable_database(request, request.param, tmp_path_factory)
    config = Path(tmp_path_factory.mktemp("hidden")) / "headwater.toml"
    config.write_text(SETTINGS)
    with ServerProcess(db_url, env=SECRET_ENV, args=("--config", str(config))) as s:
        yield s.url, db_url


@pytest.fixture(scope="module")
def client(server: tuple[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[0], timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def db(server: tuple[str, str]) -> str:
    return server[1]


def rows(db: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return oracle.rows(db, sql, *params)


def new_customer(client: httpx.Client, keys: Keys, **values: Any) -> int:
    cid = next(_ids)
    body = {"id": cid, "name": f"c{cid}", "email": f"c{cid}@example.com", "country": "NO",
            "created_at": "2024-01-01T00:00:00", **values}
    client.post("/customers", json=body, headers=keys.bearer("admin")).raise_for_status()
    return cid


def same_as_unknown(r: httpx.Response, unknown: httpx.Response, hidden: str,
                    made_up: str) -> None:
    """``r`` (naming the hidden column) answers exactly as ``unknown`` (a made-up name)."""
    assert r.status_code == unknown.status_code == 400, (r.text, unknown.text)
    assert r.json()["code"] == unknown.json()["code"] == "42703"
    body = r.text.replace(hidden, made_up)
    assert body == unknown.text, (r.text, unknown.text)


# --- item 3: filters and order of writes --------------------------------------------------------

def test_delete_filter_on_hidden_column_is_unknown(client: httpx.Client, db: str,
                                                   jwt_keys: Keys) -> None:
    cid = new_customer(client, jwt_keys)
    h = {**jwt_keys.bearer("support"), "Prefer": "tx=rollback, count=exact"}
    unknown = client.delete(f"/customers?id=eq.{cid}&zzzzzzz=eq.NO", headers=h)
    for guess in ("NO", "SE"):  # matching or not, the answer is the same
        r = client.delete(f"/customers?id=eq.{cid}&country=eq.{guess}", headers=h)
        same_as_unknown(r, unknown, "country", "zzzzzzz")
        r = client.delete(f"/customers?id=eq.{cid}&country=like.{guess[0]}*", headers=h)
        assert (r.status_code, r.json()["code"]) == (400, "42703")
        r = client.delete(f"/customers?id=eq.{cid}&or=(country.eq.{guess},id.eq.0)", headers=h)
        assert (r.status_code, r.json()["code"]) == (400, "42703")
    assert rows(db, "SELECT count(*) FROM customers WHERE id = $1", cid)[0][0] == 1


def test_patch_filter_and_order_on_hidden_column_is_unknown(client: httpx.Client, db: str,
                                                            jwt_keys: Keys) -> None:
    cid = new_customer(client, jwt_keys)
    h = jwt_keys.bearer("support")
    before = rows(db, "SELECT name, email, country FROM customers WHERE id = $1", cid)
    unknown = client.patch(f"/customers?id=eq.{cid}&zzzzzzz=eq.NO", headers=h,
                           json={"name": "x"})
    r = client.patch(f"/customers?id=eq.{cid}&country=eq.NO", headers=h, json={"name": "x"})
    same_as_unknown(r, unknown, "country", "zzzzzzz")
    # the order oracle: which row comes first under a hidden column's order
    unknown = client.patch("/customers?id=gt.0&order=zzzzzzz&limit=1", headers=h,
                           json={"name": "x"})
    r = client.patch("/customers?id=gt.0&order=country&limit=1", headers=h, json={"name": "x"})
    same_as_unknown(r, unknown, "country", "zzzzzzz")
    r = client.delete(f"/customers?id=eq.{cid}&order=country.desc&limit=1", headers=h)
    assert (r.status_code, r.json()["code"]) == (400, "42703")
    assert rows(db, "SELECT name, email, country FROM customers WHERE id = $1", cid) == before
    # readable columns still filter a write (and the write happens)
    r = client.patch(f"/customers?id=eq.{cid}&email=eq.c{cid}@example.com", headers=h,
                     json={"name": "renamed"})
    assert r.status_code == 204, r.text
    assert rows(db, "SELECT name FROM customers WHERE id = $1", cid)[0][0] == "renamed"


def test_representation_of_hidden_column_is_unknown(client: httpx.Client, db: str,
                                                    jwt_keys: Keys) -> None:
    cid = new_customer(client, jwt_keys)
    h = {**jwt_keys.bearer("support"), "Prefer": "return=representation"}
    unknown = client.patch(f"/customers?id=eq.{cid}&select=id,zzzzzzz", headers=h,
                           json={"name": "x"})
    r = client.patch(f"/customers?id=eq.{cid}&select=id,country", headers=h, json={"name": "x"})
    same_as_unknown(r, unknown, "country", "zzzzzzz")
    assert rows(db, "SELECT name FROM customers WHERE id = $1", cid)[0][0] == f"c{cid}"
    r = client.patch(f"/customers?id=eq.{cid}", headers=h, json={"name": "y"})
    assert r.status_code == 200 and set(r.json()[0]) == {"id", "email"}


def test_reads_answer_hidden_like_unknown(client: httpx.Client, jwt_keys: Keys) -> None:
    for query in ("select=id,{}", "{}=eq.x", "order={}", "or=({}.eq.x,id.eq.1)"):
        unknown = client.get("/customers?" + query.format("zzzzz"))
        r = client.get("/customers?" + query.format("email"))
        same_as_unknown(r, unknown, "email", "zzzzz")
    h = jwt_keys.bearer("support")
    unknown = client.get("/customers?order=zzzzzzz", headers=h)
    same_as_unknown(client.get("/customers?order=country", headers=h), unknown,
                    "country", "zzzzzzz")


# --- item 12: suggestions -----------------------------------------------------------------------

def test_suggestions_name_only_readable_columns(client: httpx.Client, jwt_keys: Keys) -> None:
    for query in ("select=emai", "emai=eq.x", "order=emai"):
        r = client.get("/customers?" + query)
        assert (r.status_code, r.json()["code"]) == (400, "42703")
        assert "email" not in r.text, r.text
    r = client.get("/customers?select=nme")
    assert "name" in (r.json()["hint"] or "")  # a readable column is still suggested
    h = jwt_keys.bearer("support")
    for path in ("/customers?select=countr", "/customers?countr=eq.x",
                 "/orders?select=tota", "/orders?order=not"):
        r = client.get(path, headers=h)
        assert (r.status_code, r.json()["code"]) == (400, "42703")
        assert not re.search(r"country|total|note", r.json()["hint"] or ""), r.text
    r = client.delete("/customers?countr=eq.x", headers=h)
    assert (r.status_code, r.json()["code"]) == (400, "42703")
    assert "country" not in r.text


# --- item 3: Prefer: tx=rollback ---------------------------------------------------------------

def test_tx_rollback_is_ignored_under_policies(client: httpx.Client, db: str,
                                               jwt_keys: Keys) -> None:
    cid = new_customer(client, jwt_keys)
    r = client.delete(f"/customers?id=eq.{cid}",
                      headers={**jwt_keys.bearer("support"), "Prefer": "tx=rollback"})
    assert r.status_code == 204, r.text
    assert "tx=rollback" not in r.headers.get("preference-applied", "")
    assert rows(db, "SELECT count(*) FROM customers WHERE id = $1", cid)[0][0] == 0
    # also for an admin: nobody may override unless the settings say so
    cid = new_customer(client, jwt_keys)
    r = client.patch(f"/customers?id=eq.{cid}", json={"name": "kept"},
                     headers={**jwt_keys.bearer("admin"), "Prefer": "tx=rollback"})
    assert r.status_code == 204, r.text
    assert "tx=rollback" not in r.headers.get("preference-applied", "")
    assert rows(db, "SELECT name FROM customers WHERE id = $1", cid)[0][0] == "kept"


# --- item 5: constraint errors ------------------------------------------------------------------

def test_check_violation_echoes_no_row_values(client: httpx.Client, db: str,
                                              jwt_keys: Keys) -> None:
    cid = new_customer(client, jwt_keys)
    oid = next(_ids)
    client.post("/orders", headers=jwt_keys.bearer("admin"), json={
        "id": oid, "customer_id": cid, "ordered_at": "2024-01-01T00:00:00",
        "note": "plaintext-secret", "total": 4321.5}).raise_for_status()
    stored_note = rows(db, "SELECT note FROM orders WHERE id = $1", oid)[0][0]
    assert stored_note.startswith("hwenc:")
    r = client.patch(f"/orders?id=eq.{oid}", headers=jwt_keys.bearer("support"),
                     json={"status": "no-such-status"})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "23514"
    assert "check constraint" in body["message"]
    for leak in ("hwenc", stored_note[:20], "plaintext-secret", "4321", "Failing row",
                 "pending", "IN ("):
        assert leak not in r.text, (leak, r.text)
    assert rows(db, "SELECT status FROM orders WHERE id = $1", oid)[0][0] == "pending"
