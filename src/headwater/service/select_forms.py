"""Planning the select forms beyond plain columns: JSON paths, casts, aggregates (pure).

Type names reach SQL text (a cast cannot be a parameter), so only plain names pass; JSON keys
are request text, so they travel as parameters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from headwater.errors import ParseError, RequestError, UnsupportedFilter
from headwater.model.catalog import Column, ColumnKind, Dialect
from headwater.model.plan import JsonSteps, OrderBy, Output, OutputColumn, Value
from headwater.model.request import Aggregate, JsonPath, is_index

#: A PostgreSQL type name as a cast may write it: words (``double precision``), an array.
_PG_CAST = re.compile(r"^[a-z_][a-z0-9_]*(?: [a-z_][a-z0-9_]*)*(?:\[\])?$")

#: SQLite's equivalents of the casts it can do, and the kind of the value each gives.
SQLITE_CASTS: dict[str, tuple[str, ColumnKind]] = {
    **dict.fromkeys(("text", "varchar", "char", "character varying", "character", "bpchar",
                     "name", "citext"), ("TEXT", "text")),
    **dict.fromkeys(("integer", "int", "int2", "int4", "int8", "bigint", "smallint"),
                    ("INTEGER", "integer")),
    **dict.fromkeys(("real", "float", "float4", "float8", "double precision"),
                    ("REAL", "float")),
    **dict.fromkeys(("numeric", "decimal"), ("NUMERIC", "numeric")),
    **dict.fromkeys(("boolean", "bool"), ("INTEGER", "boolean")),
    # not a CAST on SQLite: the text read as JSON (``data->>foo::json``), NULL if it is none
    **dict.fromkeys(("json", "jsonb"), ("JSON", "json")),
}
#: The kind of a PostgreSQL cast's result, where it matters (CSV, encryption never: casts of
#: encrypted columns are refused).
_PG_KINDS: dict[str, ColumnKind] = {name: kind for name, (_sql, kind) in SQLITE_CASTS.items()}
_PG_KINDS.update({"json": "json", "jsonb": "json", "date": "date", "uuid": "uuid"})

AGGREGATES_DISABLED = "Use of aggregate functions is not allowed"


def aggregates_refused() -> RequestError:
    return RequestError(AGGREGATES_DISABLED, code="PGRST123")


def cast_type(dialect: Dialect, text: str) -> tuple[str, ColumnKind]:
    """A cast's type as it goes into SQL, and the kind of the value it gives; a 400 naming the
    cast for a name that is not a plain type (PostgreSQL) or has no SQLite equivalent."""
    name = " ".join(text.lower().split())
    if dialect == "sqlite":
        found = SQLITE_CASTS.get(name)
        if found is None:
            raise ParseError(f"cannot cast to {text} on SQLite",
                             details="SQLite casts to text, integer (int, bigint, smallint), "
                                     "real (float, double precision), numeric, boolean and "
                                     "json",
                             hint=f"drop ::{text} or cast to one of those")
        return found
    if not _PG_CAST.match(name):
        raise ParseError(f"invalid cast ::{text}", details="a cast names a type, e.g. ::text")
    return name, _PG_KINDS.get(name, "other")


def check_json_column(column: Column, path: JsonPath, table: str) -> None:
    if column.kind != "json":
        raise UnsupportedFilter(
            f"operator does not exist: {column.db_type} {path[0][0]} unknown",
            code="42883", details=f"{table}.{column.name} is {column.db_type}, not json",
            hint="-> and ->> take a json or jsonb column")
    if any(arrow == "->>" for arrow, _ in path[:-1]):
        raise ParseError("->> gives text: only the last step of a JSON path may use it",
                         details=f"column {column.name}", hint="use -> for the steps before")


def json_steps(dialect: Dialect, path: JsonPath, param: Callable[[Value], int]) -> JsonSteps:
    """The parameters of a JSON path (checked by ``check_json_column``)."""
    text = path[-1][0] == "->>"
    indexes = tuple(is_index(key) for _, key in path)
    if dialect == "postgresql":
        return JsonSteps(tuple(param(int(key) if idx else key)
                               for (_, key), idx in zip(path, indexes, strict=True)),
                         indexes, text)
    out = ["$"]
    for (_, key), idx in zip(path, indexes, strict=True):
        if idx:
            n = int(key)
            out.append(f"[{n}]" if n >= 0 else f"[#{n}]")
        elif '"' in key:
            raise ParseError(f"a JSON key with a double quote is not supported on SQLite: {key}")
        else:
            out.append(f'."{key}"')
    return JsonSteps((param("".join(out)),), indexes, text)


def json_kind(path: JsonPath) -> ColumnKind:
    return "text" if path[-1][0] == "->>" else "json"


def aggregate_kind(aggregate: Aggregate, kind: ColumnKind) -> ColumnKind:
    if aggregate == "count":
        return "integer"
    if aggregate == "avg":
        return "numeric" if kind in ("integer", "numeric") else "float"
    return kind


def group_refused(node: str, detail: str) -> RequestError:
    return RequestError(f"{detail} are not supported", code="PGRST100", details=f"in {node}",
                        hint="aggregate in a plain embed, or in the top-level select")


def check_grouping(table: str, outputs: Sequence[Output], order: Sequence[OrderBy],
                   params: Sequence[Value]) -> None:
    """With an aggregate, the other outputs (embeds too) are the GROUP BY, and the order
    may only name them (PostgreSQL's 42803, also on SQLite)."""
    def path(j: JsonSteps | None) -> object:
        return None if j is None else (tuple(params[i] for i in j.params), j.text)

    grouped = {(o.column, path(o.json)) for o in outputs
               if isinstance(o, OutputColumn) and o.aggregate is None}
    for term in order:
        if (term.column, path(term.json)) not in grouped:
            raise RequestError(
                f'column "{table}.{term.column}" must appear in the GROUP BY clause or be '
                "used in an aggregate function", code="42803", details=None,
                hint="with an aggregate in select=, order by the columns selected with it")
