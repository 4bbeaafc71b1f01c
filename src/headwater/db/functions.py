"""A database function's call as SQL (pure): PostgreSQL only.

The arguments travel as one JSON object, bound once, and PostgreSQL converts each to its
parameter's type (``json_to_record``), as PostgREST does: JSON arrays become arrays, objects
composites, strings from a query string any type. The function and parameter names and the
types come from the catalog (invariant 4); a value is only ever inside the bound JSON.

A set-returning call is a FROM item: the read planner's SQL for the function's result
columns is compiled as for a table, and that table is then replaced by the call, so
``select=``, filters, ``order``, ``limit``/``offset`` and counts apply to its rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from headwater.db.sql import ReadSQL, compile_read, ident
from headwater.model.catalog import Function
from headwater.model.plan import ReadPlan


@dataclass(frozen=True, slots=True)
class Call:
    """``from_`` (the arguments as a row, or "") and the call expression over it."""

    from_: str
    expr: str


def call(schema: str, fn: Function, names: Sequence[str], param: int, *,
         whole: bool = False) -> Call:
    """The call of ``fn`` with the arguments ``names`` (found in the JSON object bound as
    parameter ``param``, 0-based); ``whole``: the JSON is the one argument itself."""
    target = f"{ident(schema)}.{ident(fn.name)}"
    if whole:
        (only,) = fn.parameters
        arg = f"${param + 1}::json::{only.db_type}"
        return Call("", f"{target}({ident(only.name) + ' := ' if only.name else ''}{arg})")
    chosen = [p for p in fn.parameters if p.name in set(names)]
    if not chosen:
        return Call("", f"{target}()")
    columns = ", ".join(f"{ident(p.name)} {p.db_type}" for p in chosen)
    args = ", ".join(("VARIADIC " if p.variadic else "") + f"{ident(p.name)} := _a.{ident(p.name)}"
                     for p in chosen)
    return Call(f"json_to_record(${param + 1}::json) AS _a({columns})", f"{target}({args})")


def _from(c: Call, item: str) -> str:
    return f"{c.from_}, LATERAL {item}" if c.from_ else item


def value_sql(c: Call) -> str:
    """One value (scalar or composite) as JSON text; a void call's row count."""
    return f"SELECT to_json({c.expr})::text" + (f" FROM {c.from_}" if c.from_ else "")


def void_sql(c: Call) -> str:
    return f"SELECT count(*) FROM (SELECT {c.expr}" + (f" FROM {c.from_}" if c.from_ else "") \
        + ") AS _v"


def scalars_sql(c: Call) -> str:
    """``SETOF`` a base type: (rows, JSON array text)."""
    return (f"SELECT count(*), coalesce(json_agg(_f), '[]')::text "
            f"FROM {_from(c, c.expr + ' AS _f')}")


def set_sql(schema: str, c: Call, plan: ReadPlan) -> ReadSQL:
    """The read of ``plan`` (planned against the function's result columns, as table
    ``plan.root.table``), with that table replaced by the call."""
    root = plan.root
    sql = compile_read("postgresql", schema, root, plan.limit_param, plan.offset_param,
                       plan.count)
    needle = f"{ident(schema)}.{ident(root.table)} AS {root.alias}"
    item = f"(SELECT _f.* FROM {_from(c, c.expr + ' AS _f')}) AS {root.alias}"
    return ReadSQL(aggregate=sql.aggregate.replace(needle, item),
                   bounded=sql.bounded.replace(needle, item),
                   rows=sql.rows.replace(needle, item), count=sql.count.replace(needle, item),
                   count_params=sql.count_params)
