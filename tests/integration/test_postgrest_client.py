"""The ``postgrest`` package from PyPI (Supabase's Python client) against a running server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from postgrest import APIError, SyncPostgrestClient

from tests.conftest import Served
from tests.integration import oracle


def rows(res: Any) -> list[Any]:
    return list(res.data)


@pytest.fixture(scope="module")
def pg(served: Served) -> Iterator[SyncPostgrestClient]:
    client = SyncPostgrestClient(served.url)
    try:
        yield client
    finally:
        client.session.close()


def test_filters_order_range_count(pg: SyncPostgrestClient, served: Served) -> None:
    res = (pg.from_("orders").select("id,customer_id,total", count="exact")  # type: ignore[arg-type]
           .eq("customer_id", 2).gte("total", 0).order("ordered_at", desc=True)
           .range(0, 2).execute())
    expected = oracle.ids(served.database_url, "SELECT id FROM orders WHERE customer_id = 2 "
                          "ORDER BY ordered_at DESC LIMIT 3")
    assert [r["id"] for r in rows(res)] == expected
    total = oracle.rows(served.database_url,
                        "SELECT count(*) FROM orders WHERE customer_id = 2")[0][0]
    assert res.count == total


def test_in_is_like_not_or(pg: SyncPostgrestClient, served: Served) -> None:
    res = pg.from_("orders").select("id").in_("status", ["paid", "shipped"]).is_(
        "shipped_on", None).order("id").execute()
    assert [r["id"] for r in rows(res)] == oracle.ids(
        served.database_url, "SELECT id FROM orders WHERE status IN ('paid','shipped') "
        "AND shipped_on IS NULL ORDER BY id")
    res = pg.from_("customers").select("id").ilike("email", "%EXAMPLE%").not_.is_(
        "country", None).order("id").execute()
    assert [r["id"] for r in rows(res)] == oracle.ids(
        served.database_url, "SELECT id FROM customers WHERE lower(email) LIKE '%example%' "
        "AND country IS NOT NULL ORDER BY id")
    res = pg.from_("orders").select("id").or_("id.eq.1,id.eq.3").order("id").execute()
    assert [r["id"] for r in rows(res)] == [1, 3]


def test_embedding_with_foreign_table_modifiers(pg: SyncPostgrestClient) -> None:
    res = (pg.from_("orders").select("id, customer:customers(name), order_items(id, quantity)")
           .order("id", foreign_table="order_items", desc=True)
           .limit(1, foreign_table="order_items").eq("id", 1).execute())
    data: Any = res.data
    [order] = data
    assert isinstance(order["customer"]["name"], str)
    assert len(order["order_items"]) == 1


def test_single_and_maybe_single(pg: SyncPostgrestClient) -> None:
    one: Any = pg.from_("products").select("id,name").eq("id", 5).single().execute().data
    assert one["id"] == 5
    assert pg.from_("products").select("id").eq("id", -1).maybe_single().execute() is None
    with pytest.raises(APIError) as err:
        pg.from_("products").select("id").lt("id", 5).single().execute()
    assert err.value.code == "PGRST116"


def test_csv(pg: SyncPostgrestClient) -> None:
    res = pg.from_("products").select("id,sku").order("id").limit(2).csv().execute()
    text: Any = res.data
    lines = text.strip().splitlines()
    assert lines[0] == "id,sku"
    assert len(lines) == 3


def test_errors_surface_as_api_error(pg: SyncPostgrestClient) -> None:
    with pytest.raises(APIError) as err:
        pg.from_("orders").select("nope").execute()
    assert err.value.code == "42703"


@pytest.fixture(scope="module")
def pg_rw(served_rw: Served) -> Iterator[SyncPostgrestClient]:
    client = SyncPostgrestClient(served_rw.url)
    try:
        yield client
    finally:
        client.session.close()


def test_client_writes(pg_rw: SyncPostgrestClient, served_rw: Served) -> None:
    base = 900_000
    one = {"id": base, "name": "Client One", "email": "one@client.example",
           "created_at": "2024-01-01T00:00:00"}
    res = pg_rw.from_("customers").insert(one).execute()
    assert rows(res)[0]["id"] == base
    many = [{"id": base + i, "name": f"Bulk {i}", "email": f"bulk{i}@client.example",
             "created_at": "2024-01-01T00:00:00"} for i in range(1, 11)]
    res = pg_rw.from_("customers").insert(many).execute()
    assert len(rows(res)) == 10
    res = pg_rw.from_("customers").upsert({**one, "name": "Upserted"}).execute()
    assert rows(res)[0]["name"] == "Upserted"
    res = pg_rw.from_("customers").update({"country": "NZ"}).gte("id", base + 1).lte(
        "id", base + 10).execute()
    assert {r["country"] for r in rows(res)} == {"NZ"}
    res = pg_rw.from_("customers").delete().gte("id", base + 5).lte("id", base + 10).execute()
    assert len(rows(res)) == 6
    assert oracle.rows(served_rw.database_url, "SELECT count(*) FROM customers WHERE id >= $1",
                       base)[0][0] == 5
    args: Any = {"order_id": 1}
    assert pg_rw.rpc("order_total", args).execute().data == pytest.approx(float(
        oracle.rows(served_rw.database_url, "SELECT coalesce(sum(quantity * unit_price), 0) "
                    "FROM order_items WHERE order_id = 1")[0][0]))
