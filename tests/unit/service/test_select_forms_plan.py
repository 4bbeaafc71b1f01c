"""Issue 14, ``select=`` forms in the planner, the SQL and the cache key (pure): casts, JSON
paths, aggregates, spreads, empty embeds, and the policies that hide columns or aggregates."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from headwater.cache.keys import canonical
from headwater.db.sql import compile_read
from headwater.errors import EncryptedColumn, HeadwaterError, ParseError, UnknownColumn
from headwater.model.catalog import Catalog, ForeignKey
from headwater.model.plan import EmbedExists, OutputColumn, OutputEmbed, ReadPlan
from headwater.model.principal import Principal
from headwater.service.plan import plan_read
from headwater.service.policy import PolicySet
from headwater.settings_file import parse_security
from tests.unit.catalogs import request, table


def catalog(dialect: Any = "postgresql") -> Catalog:
    return Catalog.build([
        table("accounts", {"id": "integer", "name": "text", "secret": "text"}),
        table("docs", {"id": "integer", "account_id": "integer", "data": "json",
                       "amount": "integer", "name": "text"},
              fks=(ForeignKey("d_acc", "docs", ("account_id",), "accounts", ("id",)),)),
    ], dialect)


PG, LITE = catalog(), catalog("sqlite")


def plan(qs: str, target: str = "docs", cat: Catalog = PG, **kw: Any) -> ReadPlan:
    return plan_read(cat, request(target, qs), **kw)


def sql(p: ReadPlan, dialect: Any = "postgresql") -> str:
    return compile_read(dialect, None, p.root, p.limit_param, p.offset_param, p.count).aggregate


def error(qs: str, target: str = "docs", cat: Catalog = PG, **kw: Any) -> HeadwaterError:
    with pytest.raises(HeadwaterError) as exc:
        plan(qs, target, cat, **kw)
    return exc.value


def test_casts_name_the_type_on_postgresql_and_map_it_on_sqlite() -> None:
    p = plan("select=id::text,t:amount::double precision")
    assert p.root.outputs == (OutputColumn("id", "id", "text", cast="text"),
                              OutputColumn("t", "amount", "float", cast="double precision"))
    assert 'CAST(t0."amount" AS double precision) AS "t"' in sql(p)
    lite = plan("select=id::text,amount::bigint,amount::boolean", cat=LITE)
    assert 'CAST(t0."amount" AS INTEGER)' in sql(lite, "sqlite")
    assert [o.kind for o in lite.root.outputs if isinstance(o, OutputColumn)] == [
        "text", "integer", "boolean"]
    e = error("select=id::uuid", cat=LITE)
    assert e.status == 400 and "uuid" in e.message


def test_json_paths_travel_as_parameters() -> None:
    p = plan("select=data->a->>b,data->list->0&data->>color=eq.red&order=data->>n.desc")
    assert [o.key for o in p.root.outputs] == ["b", "list"]
    text = sql(p)
    assert '(t0."data" -> $1::text ->> $2::text) AS "b"' in text
    assert '(t0."data" -> $3::text -> $4::int) AS "list"' in text
    assert '(t0."data" ->> $5::text) = $6' in text
    assert "ORDER BY (t0.\"data\" ->> $7::text) DESC" in text
    assert p.params[:7] == ("a", "b", "list", 0, "color", "red", "n")
    lite = plan("select=data->a->>b,data->list->-1", cat=LITE)
    assert lite.params[:2] == ('$."a"."b"', '$."list"[#-1]')
    assert "red" not in sql(p) and "color" not in sql(p)  # request text never in SQL


def test_json_paths_need_a_json_column_and_end_with_one_text_step() -> None:
    assert error("select=name->x").code == "42883"
    assert error("name->>x=eq.1").code == "42883"
    assert error("select=data->>a->b").status == 400
    assert error("data->a=fts.word").status == 400


def test_aggregates_group_by_the_other_columns() -> None:
    p = plan("select=name,total:amount.sum()::text,count()&order=name")
    assert 'CAST(sum(t0."amount") AS text) AS "total"' in sql(p)
    assert "count(*) AS \"count\"" in sql(p)
    assert ' GROUP BY t0."name" ORDER BY' in sql(p)
    assert "GROUP BY" not in sql(plan("select=amount.sum()"))
    assert error("select=name,amount.sum()&order=id").code == "42803"
    # the count shorthand, also embedded; a real column called count is a column
    shorthand = plan("select=name,docs(count)", target="accounts")
    child = shorthand.root.outputs[1]
    assert isinstance(child, OutputEmbed)
    assert child.node.outputs == (OutputColumn("count", "", "integer", aggregate="count"),)
    # counting groups, for Prefer: count=exact
    counted = plan_read(PG, request("docs", "select=name,count()", prefer=_count()))
    assert ('(SELECT count(*) FROM (SELECT t0."name" AS "name", count(*) AS "count" FROM '
            '"docs" AS t0 GROUP BY t0."name") AS _g)') in sql(counted)
    # an embed is a group key too: by its text on PostgreSQL (json has no equality)
    embedded = sql(plan("select=account_id,amount.sum(),accounts(name)"))
    assert '(t1_e.body::text)::json AS "accounts"' in embedded
    assert 'GROUP BY t0."account_id", t1_e.body::text' in embedded
    assert error("select=id,...accounts(count())").code == "PGRST100"


def _count() -> Any:
    from headwater.model.request import Preferences

    return Preferences(count="exact")


def test_aggregates_can_be_switched_off_everywhere() -> None:
    for qs in ("select=count()", "select=amount.sum()", "select=id,docs(amount.max())",
               "select=id,docs(count)"):
        target = "accounts" if "docs(" in qs else "docs"
        e = error(qs, target, aggregates=False)
        assert (e.code, e.message, e.status) == (
            "PGRST123", "Use of aggregate functions is not allowed", 400)


POLICY = """
[[policy]]
role = "reader"
table = "docs"
actions = ["select"]
columns = ["id", "name", "amount", "data"]
aggregates = false
[[policy]]
role = "reader"
table = "accounts"
actions = ["select"]
columns = ["id", "name"]
[encryption]
keys = { k1 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" }
columns = ["docs.name"]
"""


def test_policies_hide_columns_from_every_form_and_may_forbid_aggregates() -> None:
    ps = PolicySet(parse_security(tomllib.loads(POLICY), {}))
    access = ps.access(Principal("reader"), anonymous=False)
    assert error("select=count()", access=access).code == "PGRST123"
    # accounts allows aggregates; its hidden column is unknown in every form
    for qs in ("select=secret::text", "select=secret.max()", "select=...docs(id),secret",
               "order=secret", "secret=eq.1"):
        assert isinstance(error(qs, "accounts", access=access), UnknownColumn)
    assert plan("select=count()", "accounts", access=access).root.outputs[0].key == "count"
    # an encrypted column cannot be transformed: a cast of ciphertext is no answer
    for qs in ("select=name::text", "select=name.max()"):
        assert isinstance(error(qs, access=access, cat=PG), EncryptedColumn)


def test_spreads_empty_embeds_and_duplicate_keys() -> None:
    p = plan("select=id,...accounts(name,n:id)")
    assert p.root.output_keys() == ["id", "name", "n"]
    assert 'LEFT JOIN LATERAL (SELECT t1."name" AS "name"' in sql(p)
    many = plan("select=id,...docs(amount,name)", target="accounts")
    assert "coalesce(json_agg(_s.\"amount\"), '[]') AS \"amount\"" in sql(many)
    assert "json_group_array" in sql(plan("select=id,...docs(amount)", "accounts", LITE),
                                     "sqlite")
    assert isinstance(error('select=...accounts(a"b:name)', cat=LITE), ParseError)
    empty = plan("select=id,accounts!inner()&accounts.name=eq.x")
    assert [o.key for o in empty.root.outputs] == ["id"]
    assert isinstance(empty.root.where[-1], EmbedExists)
    assert plan("select=id,accounts()").root.where == ()
    dup = error("select=id,accounts(name),accounts(id)")
    assert (dup.code, dup.status) == ("42712", 400)
    plan("select=id,accounts(name),other:accounts(id)")  # an alias tells them apart


def test_cache_keys_tell_every_form_apart() -> None:
    forms = ["select=data->a", "select=data->>a", "select=data->b", "select=data->a::text",
             "select=amount.sum()", "select=amount.max()", "select=amount.sum()::text",
             "select=amount::int.sum()", "select=id,accounts(name)",
             "select=id,...accounts(name)", "select=id&data->>a=eq.1",
             "select=id&data->a=eq.1", "select=id&order=data->>a",
             "select=id&order=data->>b", "select=id,accounts!inner()"]
    keys = {canonical(plan(q)) for q in forms}
    assert len(keys) == len(forms)


def test_ordering_by_a_grouped_json_path() -> None:
    """The order's JSON path is the select's (its keys compared, not its parameter slots)."""
    p = plan("select=data->>kind,count()&order=data->>kind.desc")
    # the order term is grouped by too: PostgreSQL matches ORDER BY to GROUP BY by the text
    assert ("GROUP BY (t0.\"data\" ->> $1::text), (t0.\"data\" ->> $2::text) "
            "ORDER BY (t0.\"data\" ->> $2::text) DESC") in sql(p)
    assert error("select=data->>kind,count()&order=data->>other").code == "42803"


def test_sqlites_arrow_before_3_38_gives_what_the_operator_gives(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Older SQLite has no ``->``: json_extract and json_quote stand in, with its answers."""
    import sqlite3

    from headwater.db import sql as sql_module

    conn = sqlite3.connect(":memory:")
    doc = '{"s":"x","n":1.5,"i":2,"t":true,"f":false,"z":null,"o":{"a":[1,"b"]},"l":[]}'
    paths = ['$."s"', '$."n"', '$."i"', '$."t"', '$."f"', '$."z"', '$."o"', '$."o"."a"[1]',
             '$."l"', '$."missing"', '$."o"."a"[#-1]']
    native = [conn.execute(f"SELECT {sql_module.sqlite_arrow('?1', '?2')}", (doc, p)).fetchone()
              for p in paths]
    monkeypatch.setattr(sql_module, "_SQLITE_ARROW", False)
    fallback = [conn.execute(f"SELECT {sql_module.sqlite_arrow('?1', '?2')}", (doc, p))
                .fetchone() for p in paths]
    assert sqlite3.sqlite_version_info >= (3, 38, 0)
    assert fallback == native
