"""Planning reads (pure): catalog checks, relationships, values coerced by column type."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pytest

from headwater.errors import (
    InvalidValue,
    UnknownColumn,
    UnknownRelationship,
    UnknownTable,
)
from headwater.model.catalog import Column
from headwater.service.coercion import coerce
from headwater.service.plan import plan_read
from tests.unit.catalogs import CAT, request


def test_unknown_things_are_refused() -> None:
    with pytest.raises(UnknownTable):
        plan_read(CAT, request("nope", ""))
    with pytest.raises(UnknownColumn):
        plan_read(CAT, request("orders", "select=nope"))
    with pytest.raises(UnknownColumn):
        plan_read(CAT, request("orders", "nope=eq.1"))
    with pytest.raises(UnknownRelationship):
        plan_read(CAT, request("orders", "select=*,items!nope(*)"))
    with pytest.raises(UnknownRelationship):
        plan_read(CAT, request("orders", "items.qty=eq.1"))
    with pytest.raises(UnknownRelationship):
        plan_read(CAT, request("orders", "select=*,orders(*)"))


def test_self_reference_is_told_apart_by_column_hint() -> None:
    up = plan_read(CAT, request("customers", "select=id,customers!referred_by(id)"))
    down = plan_read(CAT, request("customers", "select=id,customers!id(id)"))
    assert not up.root.embeds()[0].to_many
    assert down.root.embeds()[0].to_many
    # PostgREST: a self-referencing table's own name gives the children, the key's column
    # the parent
    children = plan_read(CAT, request("customers", "select=id,customers(id)"))
    parent = plan_read(CAT, request("customers", "select=id,referred_by(id)"))
    assert children.root.embeds()[0].to_many
    assert not parent.root.embeds()[0].to_many


def test_values_are_coerced_by_column_type() -> None:
    plan = plan_read(CAT, request("orders", "id=eq.5&total=gt.1.50&ordered_at=lt.2024-01-02"
                                            "&paid=is.true&customer_id=in.(1,2)"))
    assert plan.params[:4] == (5, decimal.Decimal("1.50"), dt.datetime(2024, 1, 2), (1, 2))
    with pytest.raises(InvalidValue):
        plan_read(CAT, request("orders", "id=eq.x"))
    with pytest.raises(InvalidValue):
        plan_read(CAT, request("orders", "id=eq.3000000000"))


@pytest.mark.parametrize(("kind", "text", "value"), [
    ("integer", " 42 ", 42), ("float", "1e3", 1000.0), ("numeric", "0.10", decimal.Decimal("0.10")),
    ("boolean", "TRUE", True), ("boolean", "f", False), ("date", "2024-02-29", dt.date(2024, 2, 29)),
    ("timestamp", "2024-01-01 10:00", dt.datetime(2024, 1, 1, 10)),
    ("timestamptz", "2024-01-01T10:00:00Z", dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC)),
    ("text", "anything", "anything"),
])
def test_coerce(kind: Any, text: str, value: object) -> None:
    assert coerce(Column("c", kind, kind), text) == value


@pytest.mark.parametrize(("kind", "text"), [
    ("integer", "1.5"), ("numeric", "NaN"), ("boolean", "maybe"), ("date", "2024-02-30"),
    ("uuid", "nope"), ("timestamp", "soon"),
])
def test_coerce_rejects(kind: Any, text: str) -> None:
    with pytest.raises(InvalidValue):
        coerce(Column("c", kind, kind), text)
