"""Access policies over real HTTP on both databases; the database rows are the oracle.

Roles (see ``SETTINGS`` in conftest): ``anon`` reads in-stock products' id/name/price/in_stock;
``customer`` reads and writes its own orders (``customer_id = claims.sub``) and reads its own
customer row without country; ``support`` reads customers' id/name/country and paid orders;
``admin`` may do everything.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration import oracle
from tests.integration.security.conftest import Secure

_ids = itertools.count(700_000)


@pytest.fixture(scope="module")
def client(secure: Secure) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=secure.url, timeout=30) as c:
        yield c


def rows(secure: Secure, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return oracle.rows(secure.database_url, sql, *params)


def two_customers(secure: Secure) -> tuple[int, int]:
    """Two customers that both have orders."""
    found = rows(secure, "SELECT customer_id FROM orders GROUP BY customer_id "
                         "HAVING count(*) >= 2 ORDER BY customer_id LIMIT 2")
    return int(found[0][0]), int(found[1][0])


# --- reads ------------------------------------------------------------------------------------

def test_row_filter_on_reads(client: httpx.Client, secure: Secure) -> None:
    a, _ = two_customers(secure)
    h = secure.keys.bearer("customer", a)
    got = client.get("/orders?select=id&order=id", headers=h).json()
    want = [r[0] for r in rows(secure, "SELECT id FROM orders WHERE customer_id = $1 "
                                       "ORDER BY id", a)]
    assert [o["id"] for o in got] == want
    # a filter asking for another customer's rows finds none, and the count agrees
    r = client.get(f"/orders?customer_id=neq.{a}", headers={**h, "Prefer": "count=exact"})
    assert r.json() == [] and r.headers["content-range"].endswith("/0")


def test_columns_star_and_hidden_column(client: httpx.Client, secure: Secure) -> None:
    r = client.get("/products?limit=2")
    assert set(r.json()[0]) == {"id", "name", "price", "in_stock"}
    # a column the role may not read answers as one that does not exist (issue 16, item 12)
    for query in ("select=sku", "select=id,weight_kg", "sku=eq.x", "order=sku",
                  "or=(sku.eq.x,id.eq.1)"):
        r = client.get(f"/products?{query}")
        assert r.status_code == 400, query
        assert r.json()["code"] == "42703"
    r = client.get("/customers?select=country",
                   headers=secure.keys.bearer("customer", 1))
    assert (r.status_code, r.json()["code"]) == (400, "42703")
    # anon sees only in-stock products
    visible = {p["id"] for p in client.get("/products?select=id").json()}
    assert visible == {r[0] for r in rows(secure, "SELECT id FROM products WHERE in_stock")}


def test_no_policy_is_401_anonymous_403_otherwise(client: httpx.Client, secure: Secure) -> None:
    assert client.get("/order_items").status_code == 401
    r = client.get("/order_items", headers=secure.keys.bearer("customer", 1))
    assert (r.status_code, r.json()["code"]) == (403, "42501")
    r = client.post("/products", json={"name": "x"}, headers=secure.keys.bearer("customer", 1))
    assert r.status_code == 403
    r = client.delete("/customers?id=eq.1", headers=secure.keys.bearer("support"))
    assert r.status_code == 403


def test_embeds_are_filtered(client: httpx.Client, secure: Secure) -> None:
    h = secure.keys.bearer("support")
    got = client.get("/customers?select=id,orders(id,status)&order=id", headers=h).json()
    statuses = {o["status"] for c in got for o in c["orders"]}
    assert statuses == {"paid"}
    paid = rows(secure, "SELECT count(*) FROM orders WHERE status = 'paid'")[0][0]
    assert sum(len(c["orders"]) for c in got) == paid
    # !inner keeps only customers with a visible (paid) order
    inner = client.get("/customers?select=id,orders!inner(id)", headers=h).json()
    want = {r[0] for r in rows(secure, "SELECT DISTINCT customer_id FROM orders "
                                       "WHERE status = 'paid'")}
    assert {c["id"] for c in inner} == want
    # embedded columns obey the embedded table's column list
    r = client.get("/orders?select=id,customers(email)", headers=h)
    assert (r.status_code, r.json()["code"]) == (400, "42703")
    # an embed of a table without a policy is refused
    r = client.get("/customers?select=id,orders(id,order_items(id))", headers=h)
    assert r.status_code == 403


# --- writes -----------------------------------------------------------------------------------

def test_insert_with_check(client: httpx.Client, secure: Secure) -> None:
    a, b = two_customers(secure)
    h = {**secure.keys.bearer("customer", a), "Prefer": "return=representation"}
    oid = next(_ids)
    r = client.post("/orders", headers=h, json={"id": oid, "customer_id": a,
                                                "ordered_at": "2024-01-01T00:00:00"})
    assert r.status_code == 201, r.text
    assert r.json()[0]["customer_id"] == a
    # a row for someone else is refused and nothing is written (one in a batch is enough)
    before = rows(secure, "SELECT count(*) FROM orders")[0][0]
    r = client.post("/orders", headers=h, json=[
        {"id": next(_ids), "customer_id": a, "ordered_at": "2024-01-01T00:00:00"},
        {"id": next(_ids), "customer_id": b, "ordered_at": "2024-01-01T00:00:00"}])
    assert (r.status_code, r.json()["code"]) == (403, "42501")
    assert "row-level security" in r.json()["message"]
    assert rows(secure, "SELECT count(*) FROM orders")[0][0] == before


def test_update_and_delete_touch_only_visible_rows(client: httpx.Client,
                                                   secure: Secure) -> None:
    a, b = two_customers(secure)
    h = secure.keys.bearer("customer", a)
    theirs = rows(secure, "SELECT id, status FROM orders WHERE customer_id = $1 ORDER BY id",
                  b)
    r = client.patch(f"/orders?id=eq.{theirs[0][0]}", headers=h, json={"status": "cancelled"})
    assert r.status_code == 204
    assert r.headers["content-range"] == "*/*"  # nothing matched
    assert rows(secure, "SELECT status FROM orders WHERE id = $1", theirs[0][0])[0][0] == \
        theirs[0][1]
    # a broad filter updates only the caller's rows
    r = client.patch("/orders?id=gt.0", headers={**h, "Prefer": "return=representation"},
                     json={"shipped_on": "2030-01-01"})
    assert r.status_code == 200
    assert {o["customer_id"] for o in r.json()} == {a}
    assert rows(secure, "SELECT count(*) FROM orders WHERE shipped_on = '2030-01-01' AND "
                        "customer_id <> $1", a)[0][0] == 0
    # moving a row out of one's view (WITH CHECK on update) is refused and rolled back
    mine = rows(secure, "SELECT id FROM orders WHERE customer_id = $1 ORDER BY id", a)[0][0]
    r = client.patch(f"/orders?id=eq.{mine}", headers=h, json={"customer_id": b})
    assert (r.status_code, r.json()["code"]) == (403, "42501")
    assert rows(secure, "SELECT customer_id FROM orders WHERE id = $1", mine)[0][0] == a
    # delete: another customer's order survives a broad delete
    oid = next(_ids)
    client.post("/orders", headers=h, json={"id": oid, "customer_id": a,
                                            "ordered_at": "2024-01-01T00:00:00"}
                ).raise_for_status()
    n_b = rows(secure, "SELECT count(*) FROM orders WHERE customer_id = $1", b)[0][0]
    r = client.delete(f"/orders?id=in.({oid},{theirs[0][0]})",
                      headers={**h, "Prefer": "return=representation"})
    assert [o["id"] for o in r.json()] == [oid]
    assert rows(secure, "SELECT count(*) FROM orders WHERE customer_id = $1", b)[0][0] == n_b


def test_write_columns_are_checked(client: httpx.Client, secure: Secure) -> None:
    h = secure.keys.bearer("support")
    cid = rows(secure, "SELECT min(id) FROM customers")[0][0]
    email = rows(secure, "SELECT email FROM customers WHERE id = $1", cid)[0][0]
    r = client.patch(f"/customers?id=eq.{cid}", headers=h, json={"email": "evil@example.com"})
    assert (r.status_code, r.json()["code"]) == (403, "42501")
    assert rows(secure, "SELECT email FROM customers WHERE id = $1", cid)[0][0] == email
    r = client.patch(f"/customers?id=eq.{cid}", headers={**h, "Prefer": "return=representation"},
                     json={"country": "NO"})
    assert r.status_code == 200
    assert set(r.json()[0]) == {"id", "name", "country"}  # representation: readable columns
    # filtering a write on a column the role may not read: as if it did not exist
    r = client.patch(f"/customers?email=eq.{email}", headers=h, json={"country": "SE"})
    assert (r.status_code, r.json()["code"]) == (400, "42703")


def test_upsert_cannot_overwrite_invisible_rows(client: httpx.Client, secure: Secure) -> None:
    a, b = two_customers(secure)
    theirs = rows(secure, "SELECT id FROM orders WHERE customer_id = $1 ORDER BY id", b)[0][0]
    h = {**secure.keys.bearer("customer", a), "Prefer": "resolution=merge-duplicates"}
    r = client.post("/orders", headers=h, json={"id": theirs, "customer_id": a,
                                                "ordered_at": "2024-01-01T00:00:00"})
    assert (r.status_code, r.json()["code"]) == (403, "42501")
    assert rows(secure, "SELECT customer_id FROM orders WHERE id = $1", theirs)[0][0] == b
    r = client.put(f"/orders?id=eq.{theirs}", headers=secure.keys.bearer("customer", a),
                   json={"id": theirs, "customer_id": a, "ordered_at": "2024-01-01T00:00:00"})
    assert r.status_code == 403
    assert rows(secure, "SELECT customer_id FROM orders WHERE id = $1", theirs)[0][0] == b


# --- cache and documents ----------------------------------------------------------------------

def test_cache_never_serves_one_users_rows_to_another(client: httpx.Client,
                                                      secure: Secure) -> None:
    a, b = two_customers(secure)
    ha, hb = secure.keys.bearer("customer", a), secure.keys.bearer("customer", b)
    path = "/orders?select=id,customer_id&order=id&limit=50"
    first_a = client.get(path, headers=ha)
    again_a = client.get(path, headers=ha)
    assert again_a.headers["x-cache"] == "HIT"
    assert again_a.headers["cache-control"].startswith("private")
    first_b = client.get(path, headers=hb)
    assert first_b.headers["x-cache"] == "MISS"  # same URL, other user: never A's entry
    assert {o["customer_id"] for o in first_a.json()} == {a}
    assert {o["customer_id"] for o in first_b.json()} == {b}
    assert client.get(path, headers=hb).json() == first_b.json()
    # another token for the same user shares the entry (same role and claim values)
    other_token_a = secure.keys.bearer("customer", a, alg="ES256")
    assert client.get(path, headers=other_token_a).headers["x-cache"] == "HIT"
    # and anonymous callers get nothing of it
    assert client.get(path).status_code == 401


def test_openapi_shows_each_role_what_it_may_use(client: httpx.Client, secure: Secure) -> None:
    anon = client.get("/").json()
    assert set(anon["paths"]) == {"/", "/products"}
    assert set(anon["paths"]["/products"]) == {"get"}
    assert set(anon["components"]["schemas"]["products"]["properties"]) == {
        "id", "name", "price", "in_stock"}
    params = {p.get("name") for p in anon["paths"]["/products"]["get"]["parameters"]}
    assert "sku" not in params and "name" in params
    cust = client.get("/", headers=secure.keys.bearer("customer", 1)).json()
    assert {"/orders", "/customers", "/products"} <= set(cust["paths"])
    assert set(cust["paths"]["/orders"]) == {"get", "post", "patch", "put", "delete"}
    assert set(cust["paths"]["/customers"]) == {"get"}
    assert "/order_items" not in cust["paths"]
    admin = client.get("/", headers=secure.keys.bearer("admin")).json()
    assert "/order_items" in admin["paths"]
    assert set(admin["paths"]["/orders"]) == {"get", "post", "patch", "put", "delete"}
