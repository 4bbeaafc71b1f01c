"""Write plans → INSERT / UPDATE / DELETE text for PostgreSQL or SQLite (pure).

Each statement returns one JSON object per affected row (the whole row, typed as reads type
it), which feeds hooks, the response and, later, the outbox. A bulk insert is one statement
whatever its size: PostgreSQL takes one typed array per column through ``unnest``, SQLite one
JSON document through ``json_each``, so neither runs into a bound-parameter limit.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import msgspec

from headwater.db.sql import (
    BLOB_FROM_HEX,
    Dialect,
    _Builder,
    bind,
    ident,
    literal,
    sqlite_object,
)
from headwater.model.plan import (
    InsertPlan,
    InsertShape,
    MutatePlan,
    MutateShape,
    OutputColumn,
    ReadNode,
    TargetColumn,
)
from headwater.model.values import JsonText, pg_parsed


def _target(dialect: Dialect, schema: str | None, table: str) -> str:
    if dialect == "postgresql" and schema:
        return f"{ident(schema)}.{ident(table)}"
    return ident(table)


def _row_json(b: _Builder, alias: str, cols: Sequence[TargetColumn]) -> str:
    if b.pg:
        return f"to_json({alias})::text"
    node = ReadNode(table="", alias=alias, outputs=tuple(OutputColumn(c.name, c.name, c.kind)
                                                      for c in cols))
    pairs = [f"{literal(c.name)}, {b.sqlite_value(node, o)}"
             for c, o in zip(cols, node.outputs, strict=True)]
    return sqlite_object(pairs)


class _UnqualifiedBuilder(_Builder):
    """SQLite's RETURNING and INSERT cannot name the target by an alias."""

    def col(self, alias: str, column: str) -> str:
        return ident(column) if not alias else f"{alias}.{ident(column)}"


class _UpsertBuilder(_UnqualifiedBuilder):
    """A merge's ``DO UPDATE … WHERE``: alias ``old`` is the row as it is (``t0`` on
    PostgreSQL, the table's name on SQLite), ``new`` the row as it will be (``excluded.c`` for
    the columns the statement sets, else as it is). The policy's parameters follow the rows'
    own, ``offset`` of them."""

    def __init__(self, dialect: Dialect, schema: str | None, table: str,
                 sets: frozenset[str], offset: int) -> None:
        super().__init__(dialect, schema)
        self.target = table
        self.sets = sets
        self.offset = offset

    def p(self, index: int) -> str:
        return super().p(index + self.offset)

    def col(self, alias: str, column: str) -> str:
        if alias == "new" and column in self.sets:
            return f"excluded.{ident(column)}"
        return f"t0.{ident(column)}" if self.pg else f"{ident(self.target)}.{ident(column)}"


_json = msgspec.json.Encoder().encode
#: Kinds whose written values may be BLOBs (``service.validation``: hex forms).
_BLOB_KINDS = frozenset({"bytes", "other"})


@functools.lru_cache(maxsize=4096)
def _parsed(c: TargetColumn) -> bool:
    return pg_parsed(c.kind, c.db_type)


def _from_json(target: str, column: str, value: str) -> str:
    """PostgreSQL: the value of ``column`` from its JSON (``value``), converted as PostgREST
    converts a body (``json_populate_record``): a string by the type's own input function
    (``[1,5)``, ``{a,b}``, ``(1,x)``, an enum label), an array into an array, an object
    into a composite. Its errors are the type's own (22P02 ``malformed range literal``…)."""
    return (f"(json_populate_record(NULL::{target}, json_build_object({literal(column)}, "
            f"{value}::json))).{ident(column)}")


def _json_param(v: object) -> object:
    """A value for ``_from_json``: its JSON text."""
    if v is None or isinstance(v, JsonText):
        return v
    return _json(v).decode()


def _insert_param_count(dialect: Dialect, shape: InsertShape) -> int:
    """How many parameters ``insert_params`` gives for the rows themselves."""
    if not shape.columns:
        return 0
    return 1 if shape.many and dialect != "postgresql" else len(shape.columns)


def sqlite_row_object(alias: str, cols: Sequence[TargetColumn]) -> str:
    """SQLite: one JSON object of ``cols`` of the row ``alias`` (a trigger's ``NEW`` or
    ``OLD``), typed exactly as the statements here return rows."""
    return _row_json(_UnqualifiedBuilder("sqlite", None), alias, cols)


@functools.lru_cache(maxsize=1024)
def compile_insert(dialect: Dialect, schema: str | None, shape: InsertShape, *,
                   rows: bool = False, count: bool = False) -> str:
    """``rows=True`` (PostgreSQL): return the rows themselves, for a statement around it
    (``headwater.events.recording.Recorder.with_events``), instead of one JSON text per row.
    ``count=True``: nobody reads the rows; return only how many (PostgreSQL: one row with the
    count; SQLite: no rows, ``Transaction.execute`` gives the count), sparing every row's
    encoding and transfer."""
    b = _UnqualifiedBuilder(dialect, schema)
    cols = shape.columns
    names = ", ".join(ident(c.name) for c in cols)
    target = _target(dialect, schema, shape.table)
    if b.pg:
        target += " AS t0"
    if not cols:
        source = " DEFAULT VALUES"
    elif not shape.many:
        plain = _target(dialect, schema, shape.table)
        source = f" ({names}) VALUES (" + ", ".join(
            _from_json(plain, c.name, b.p(i)) if b.pg and _parsed(c) else b.p(i)
            for i, c in enumerate(cols)) + ")"
    elif b.pg:
        parsed = [_parsed(c) for c in cols]
        arrays = ", ".join(f"{b.p(i)}::{'json' if parsed[i] else c.db_type}[]"
                           for i, c in enumerate(cols))
        if any(parsed):
            # Each value of those columns is converted from its JSON (``_from_json``); one
            # array of a multidimensional array type would be unnested element by element.
            plain = _target(dialect, schema, shape.table)
            picks = ", ".join(_from_json(plain, c.name, f"_u.c{i}") if parsed[i]
                              else f"_u.c{i}" for i, c in enumerate(cols))
            aliases = ", ".join(f"c{i}" for i in range(len(cols)))
            source = f" ({names}) SELECT {picks} FROM unnest({arrays}) AS _u({aliases})"
        else:
            source = f" ({names}) SELECT * FROM unnest({arrays})"
    else:
        picks = ", ".join(f"{BLOB_FROM_HEX}(json_extract(value, '$[{i}]'))"
                          if c.kind in _BLOB_KINDS else f"json_extract(value, '$[{i}]')"
                          for i, c in enumerate(cols))
        # ``WHERE true`` keeps SQLite from reading ON CONFLICT as a join constraint.
        source = f" ({names}) SELECT {picks} FROM json_each({b.p(0)}) WHERE true"
    conflict = ""
    if shape.resolution is not None and shape.conflict:
        keys = ", ".join(ident(c) for c in shape.conflict)
        # A body of only the conflict key still "updates" (to itself), as in PostgREST, so
        # that the existing row comes back instead of nothing.
        updates = [c.name for c in cols if c.name not in shape.conflict] or [c.name
                                                                               for c in cols]
        # ``excluded`` holds a column the statement does not insert at its default.
        updates += shape.also_set
        if shape.resolution == "merge" and updates:
            sets = ", ".join(f"{ident(c)} = excluded.{ident(c)}" for c in updates)
            conflict = f" ON CONFLICT ({keys}) DO UPDATE SET {sets}"
            if shape.overwrite or shape.check:
                # The caller's update policy: a conflicting row it refuses is neither
                # inserted nor updated, and returns nothing (the writer then refuses).
                u = _UpsertBuilder(dialect, schema, shape.table, frozenset(updates),
                                   _insert_param_count(dialect, shape))
                conds = [u.cond("old", c) for c in shape.overwrite]
                conds += [u.cond("new", c) for c in shape.check]
                conflict += " WHERE " + " AND ".join(conds)
        else:
            conflict = f" ON CONFLICT ({keys}) DO NOTHING"
    if rows and b.pg:
        returning = " RETURNING t0.*"
    elif count:
        # SQLite: no rows at all (the driver's row count says how many).
        returning = " RETURNING 1" if b.pg else ""
    else:
        returning = " RETURNING " + _row_json(b, "t0" if b.pg else "", shape.returning)
    sql = f"INSERT INTO {target}{source}{conflict}{returning}"
    if count and b.pg and not rows:
        return f"WITH w AS ({sql}) SELECT count(*)::int FROM w"
    return sql


def insert_params(dialect: Dialect, plan: InsertPlan) -> list[object]:
    """The rows' parameters, then the update policy's (``InsertPlan.params``)."""
    rows = _rows_params(dialect, plan)
    return rows + bind(dialect, plan.params) if plan.params else rows


def _rows_params(dialect: Dialect, plan: InsertPlan) -> list[object]:
    shape = plan.shape
    parsed = _parsed_insert(shape) if dialect == "postgresql" else None
    if not shape.many:
        if parsed is not None and plan.rows:
            return [_json_param(v) if p else v
                    for p, v in zip(parsed, plan.rows[0], strict=True)]
        return bind(dialect, plan.rows[0]) if plan.rows else []
    if dialect == "postgresql":
        # Checked insert values are scalars, which asyncpg takes as they are (``bind`` only
        # turns ``in`` lists into arrays): transpose the rows into one array per column.
        columns = zip(*plan.rows, strict=True)
        if parsed is None:
            return [list(col) for col in columns]
        return [[_json_param(v) for v in col] if p else list(col)
                for p, col in zip(parsed, columns, strict=True)]
    rows = [bind(dialect, r) for r in plan.rows]
    blobs = [i for i, c in enumerate(shape.columns) if c.kind in _BLOB_KINDS]
    for r in rows if blobs else ():
        for i in blobs:
            if isinstance(v := r[i], bytes):
                r[i] = "\\x" + v.hex()  # JSON cannot hold bytes: ``BLOB_FROM_HEX`` reads it
    # json columns arrive as JSON text; json_extract would hand SQLite that text back as is.
    return [msgspec.json.encode(rows).decode()]


def _mutation_where(b: _Builder, schema: str | None, shape: MutateShape, alias: str) -> str:
    conds = [b.cond(alias, c) for c in shape.where]
    if shape.limit is not None:
        # PostgREST's limited update/delete: pick the rows by key, in order, then write them.
        inner_alias = "t1"
        inner_conds = [b.cond(inner_alias, c) for c in shape.where]
        order = ", ".join(b.order_term(inner_alias, o) for o in shape.order)
        inner = (f"SELECT {', '.join(f'{inner_alias}.{ident(k)}' for k in shape.key)} "
                 f"FROM {_target(b.dialect, schema, shape.table)} AS {inner_alias}"
                 + (" WHERE " + " AND ".join(inner_conds) if inner_conds else "")
                 + (f" ORDER BY {order}" if order else "") + f" LIMIT {b.p(shape.limit)}")
        outer_key = ", ".join(b.col(alias, k) for k in shape.key)
        conds = [f"({outer_key}) IN ({inner})"]
    return (" WHERE " + " AND ".join(conds)) if conds else ""


@functools.lru_cache(maxsize=1024)
def compile_mutation(dialect: Dialect, schema: str | None, shape: MutateShape, *,
                     rows: bool = False) -> str:
    """``rows`` as for ``compile_insert``."""
    b = _UnqualifiedBuilder(dialect, schema)
    alias = shape.alias if b.pg else ""
    target = _target(dialect, schema, shape.table) + (f" AS {alias}" if alias else "")
    where = _mutation_where(b, schema, shape, alias)
    returning = f"{alias}.*" if rows and b.pg else _row_json(b, alias, shape.returning)
    if shape.action == "delete":
        return f"DELETE FROM {target}{where} RETURNING {returning}"
    parsed = _parsed_columns(shape) if b.pg else frozenset()
    plain = _target(dialect, schema, shape.table)
    sets = ", ".join(f"{ident(col)} = "
                     + (_from_json(plain, col, b.p(param)) if col in parsed else b.p(param))
                     for col, param in shape.assignments)
    return f"UPDATE {target} SET {sets}{where} RETURNING {returning}"


@functools.lru_cache(maxsize=1024)
def compile_old_rows(dialect: Dialect, schema: str | None, shape: MutateShape) -> str:
    """The rows an UPDATE of ``shape`` will change, as they are now, each as one JSON object
    (locked ``FOR UPDATE`` on PostgreSQL). Uses the mutation's parameters but for the
    assignments, which come last."""
    b = _UnqualifiedBuilder(dialect, schema)
    alias = shape.alias if b.pg else ""
    target = _target(dialect, schema, shape.table) + (f" AS {alias}" if alias else "")
    where = _mutation_where(b, schema, shape, alias)
    lock = " FOR UPDATE" if b.pg else ""
    return f"SELECT {_row_json(b, alias, shape.returning)} FROM {target}{where}{lock}"


@functools.lru_cache(maxsize=1024)
def _parsed_insert(shape: InsertShape) -> tuple[bool, ...] | None:
    """Which of an insert's columns PostgreSQL reads from JSON (None: none of them)."""
    parsed = tuple(_parsed(c) for c in shape.columns)
    return parsed if any(parsed) else None


@functools.lru_cache(maxsize=1024)
def _parsed_columns(shape: MutateShape) -> frozenset[str]:
    return frozenset(c.name for c in shape.returning if _parsed(c))


def mutation_params(dialect: Dialect, plan: MutatePlan) -> list[object]:
    params = bind(dialect, plan.params)
    if dialect == "postgresql" and plan.shape.assignments:
        parsed = _parsed_columns(plan.shape)
        for col, i in plan.shape.assignments:
            if col in parsed:
                params[i] = _json_param(params[i])
    return params
