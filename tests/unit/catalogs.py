"""A small catalog (customers → orders → items, a self reference and a badly named table) that
the planner, SQL and cache-key tests share, and a request built from a query string."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl

from headwater.model import grammar as g
from headwater.model.catalog import Catalog, Column, ForeignKey, Table
from headwater.model.request import ApiRequest


def table(name: str, cols: dict[str, Any], pk: tuple[str, ...] = ("id",),
          fks: tuple[ForeignKey, ...] = ()) -> Table:
    columns = {c: Column(c, kind, kind, primary_key=c in pk, int_bits=32)
               for c, kind in cols.items()}
    return Table(name, MappingProxyType(columns), pk, fks)


def make_catalog(dialect: Any = "postgresql") -> Catalog:
    return Catalog.build([
        table("customers", {"id": "integer", "name": "text", "referred_by": "integer"},
              fks=(ForeignKey("c_ref", "customers", ("referred_by",), "customers", ("id",)),)),
        table("orders", {"id": "integer", "customer_id": "integer", "total": "numeric",
                         "ordered_at": "timestamp", "paid": "boolean"},
              fks=(ForeignKey("o_cust", "orders", ("customer_id",), "customers", ("id",)),)),
        table("items", {"id": "integer", "order_id": "integer", "qty": "integer"},
              fks=(ForeignKey("i_ord", "items", ("order_id",), "orders", ("id",)),)),
        table('we"ird', {'co"l': "text"}, pk=()),
    ], dialect)


def request(target: str, qs: str, **kw: Any) -> ApiRequest:
    return ApiRequest("GET", target, g.parse_query(parse_qsl(qs, keep_blank_values=True)),
                        **kw)


CAT = make_catalog()
