"""Introspection: the one I/O step that builds a ``Catalog`` (``headwater.model.catalog``).

It uses SQLAlchemy's reflection, which already knows both dialects' system catalogs and maps
declared types (including SQLite's free-form ones) to one type hierarchy.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
import warnings
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine.interfaces import (
    ReflectedColumn,
    ReflectedForeignKeyConstraint,
    ReflectedIndex,
)

from headwater.db.fts import with_full_text
from headwater.db.view_sources import follow, pg_target_origins, sqlite_view_sources
from headwater.model.catalog import (
    Catalog,
    Column,
    ColumnKind,
    ForeignKey,
    Function,
    Parameter,
    Table,
    Volatility,
)

# --- introspection (I/O) ----------------------------------------------------------------------

def column_kind(sa_type: Any) -> ColumnKind:
    """Map a reflected SQLAlchemy type to the kinds Headwater reasons about."""
    t = sa_type
    if isinstance(t, sa.Boolean):
        return "boolean"
    if isinstance(t, sa.Integer):
        return "integer"
    if isinstance(t, sa.Float):
        return "float"
    if isinstance(t, sa.Numeric):
        return "numeric"
    if isinstance(t, sa.DateTime):
        return "timestamptz" if getattr(t, "timezone", False) else "timestamp"
    if isinstance(t, sa.Date):
        return "date"
    if isinstance(t, sa.Time):
        return "time"
    if isinstance(t, sa.Uuid):
        return "uuid"
    if isinstance(t, sa.JSON):
        return "json"
    if isinstance(t, sa.LargeBinary):
        return "bytes"
    if isinstance(t, (sa.String, sa.Enum)):
        return "text"
    name = type(t).__name__.upper()
    if name in {"JSONB", "JSON"}:
        return "json"
    if name in {"REAL", "DOUBLE_PRECISION", "DOUBLE"}:
        return "float"
    if name == "UUID":
        return "uuid"
    if name in {"CITEXT", "INET", "CIDR", "MACADDR", "INTERVAL", "MONEY", "TSVECTOR"}:
        return "text"
    return "other"


def _type_name(sa_type: Any, dialect: sa.Dialect) -> str:
    if dialect.name == "sqlite" and isinstance(sa_type, sa.types.NullType):
        # No declared type (``CREATE TABLE t (a)``, a view's NULL or mixed column): SQLite
        # stores any value there, and ``ANY`` is its own name for that (STRICT tables).
        return "any"
    try:
        return str(sa_type.compile(dialect=dialect)).lower()
    except Exception:  # some reflected types (NullType) cannot compile; any name will do
        return type(sa_type).__name__.lower()


def _column(c: ReflectedColumn, pk: tuple[str, ...], dialect: sa.Dialect,
            flexible: bool = False) -> Column:
    t = c["type"]
    length = getattr(t, "length", None)
    return Column(
        name=c["name"],
        kind=column_kind(t),
        db_type=_type_name(t, dialect),
        nullable=bool(c.get("nullable", True)),
        has_default=c.get("default") is not None or bool(c.get("autoincrement") is True)
        or c.get("identity") is not None or (c["name"] in pk and len(pk) == 1
                                              and column_kind(t) == "integer"),
        max_length=length if isinstance(length, int) else None,
        primary_key=c["name"] in pk,
        int_bits=_int_bits(t, dialect),
        flexible=flexible,
    )


def _int_bits(sa_type: Any, dialect: sa.Dialect) -> int:
    if dialect.name == "sqlite" or isinstance(sa_type, sa.BigInteger):
        return 64
    if isinstance(sa_type, sa.SmallInteger):
        return 16
    return 32


def reflect(conn: sa.Connection, schema: str | None) -> list[Table]:
    """Read every table and view with SQLAlchemy's multi-object reflection."""
    insp = sa.inspect(conn)
    kinds = sa.engine.reflection.ObjectKind
    view_names = set(insp.get_view_names(schema=schema))
    cols = insp.get_multi_columns(schema=schema, kind=kinds.ANY)
    pks = insp.get_multi_pk_constraint(schema=schema, kind=kinds.TABLE)
    with warnings.catch_warnings():
        # SQLAlchemy warns that it skips SQLite's expression indexes (reading the unique
        # constraints reads the indexes too); they are no ON CONFLICT target offered anyway.
        # And that a foreign key it parsed from a table's SQL is not in PRAGMA foreign_keys
        # (one naming a view, as pyproj's proj.db has two dozen): SQLite does not enforce
        # those either, and PRAGMA's own are kept. A real file must start without warnings.
        warnings.simplefilter("ignore", sa.exc.SAWarning)
        fks = insp.get_multi_foreign_keys(schema=schema, kind=kinds.TABLE)
        uniques = insp.get_multi_unique_constraints(schema=schema, kind=kinds.TABLE)
        indexes = insp.get_multi_indexes(schema=schema, kind=kinds.TABLE)
    sqlite = conn.dialect.name == "sqlite"
    strict = _strict_tables(conn) if sqlite else frozenset()
    instead_of = _instead_of(conn) if sqlite else {}
    tables: list[Table] = []
    for key in sorted(cols, key=lambda k: k[1]):
        name = key[1]
        if name.startswith("sqlite_") or name.startswith("_headwater"):
            continue
        pk_info = pks.get(key)
        pk = tuple(pk_info["constrained_columns"] or ()) if pk_info else ()
        flexible = sqlite and name not in strict
        columns = {c["name"]: _column(c, pk, conn.dialect, flexible) for c in cols[key]}
        if sqlite and name in view_names:
            columns = _view_types(conn, name, columns)
        foreign = tuple(_foreign_key(name, i, fk) for i, fk in enumerate(fks.get(key, [])))
        unique = [tuple(u["column_names"]) for u in uniques.get(key, [])]
        known = {frozenset(k) for k in (pk, *unique)}
        unique_indexes: list[tuple[str, ...]] = []
        found = ([(_conflict_target(ix), False) for ix in indexes.get(key, [])]
                 if conn.dialect.name != "sqlite" else _sqlite_unique(conn, name))
        for target, constraint in found:
            if target and frozenset(target) not in known:
                known.add(frozenset(target))
                (unique if constraint else unique_indexes).append(target)
        tables.append(Table(name=name, columns=MappingProxyType(columns), primary_key=pk,
                            foreign_keys=foreign, is_view=name in view_names,
                            instead_of=instead_of.get(name, frozenset()),
                            unique=tuple(unique), unique_indexes=tuple(unique_indexes)))
    return _with_view_sources(conn, schema, tables)


#: The origin (relation, attribute) of each output column of the schema's views, as their
#: stored rules keep it (``view_sources.pg_target_origins`` reads the node tree).
_PG_VIEW_RULES_SQL = """
SELECT c.relname, r.ev_action::text
  FROM pg_rewrite r
  JOIN pg_class c ON c.oid = r.ev_class
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = :schema AND c.relkind IN ('v', 'm') AND r.rulename = '_RETURN'
"""
_PG_RELATIONS_SQL = """
SELECT c.oid::int8, c.relname, a.attnum, a.attname
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE n.nspname = :schema AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
"""


def _with_view_sources(conn: sa.Connection, schema: str | None,
                       tables: list[Table]) -> list[Table]:
    """The tables, each view with the table columns its own columns are (``Table.sources``)."""
    views = {t.name: t for t in tables if t.is_view}
    if not views:
        return tables
    direct: dict[str, dict[str, tuple[str, str]]] = {}
    if conn.dialect.name == "sqlite":
        columns = {t.name.lower(): t for t in tables}

        def columns_of(name: str) -> list[str] | None:
            t = columns.get(name.lower())
            return None if t is None else list(t.columns)

        for name, sql in conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'view'").fetchall():
            view = views.get(str(name))
            found = sqlite_view_sources(str(sql or ""), columns_of)
            if view is None or found is None or len(found) != len(view.columns):
                continue  # not followed: a column count that differs means a misreading
            direct[view.name] = {col: src for col, src in zip(view.columns, found, strict=True)
                                 if src is not None}
    else:
        params = {"schema": schema or "public"}
        attrs: dict[tuple[int, int], tuple[str, str]] = {
            (int(oid), int(num)): (str(rel), str(att)) for oid, rel, num, att in
            conn.execute(sa.text(_PG_RELATIONS_SQL), params).fetchall()}
        for name, action in conn.execute(sa.text(_PG_VIEW_RULES_SQL), params).fetchall():
            if name not in views:
                continue
            direct[name] = {col: attrs[(oid, num)]
                            for col, oid, num in pg_target_origins(str(action))
                            if (oid, num) in attrs and col in views[name].columns}
    base = frozenset(t.name for t in tables if not t.is_view)
    sources = follow(direct, base)
    return [dataclasses.replace(t, sources=MappingProxyType(sources[t.name]))
            if t.name in sources else t for t in tables]


_INSTEAD_OF = re.compile(r"\bINSTEAD\s+OF\s+(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)


def _instead_of(conn: sa.Connection) -> dict[str, frozenset[str]]:
    """SQLite: each view's INSTEAD OF triggers, by the operation they perform."""
    out: dict[str, set[str]] = {}
    rows = conn.exec_driver_sql(
        "SELECT tbl_name, sql FROM sqlite_master WHERE type = 'trigger' AND sql IS NOT NULL")
    for table, sql in rows:
        m = _INSTEAD_OF.search(str(sql))
        if m is not None:
            out.setdefault(str(table), set()).add(m[1].lower())
    return {k: frozenset(v) for k, v in out.items()}


def _strict_tables(conn: sa.Connection) -> frozenset[str]:
    """SQLite's STRICT tables (3.37+), which refuse a value of the wrong type as PostgreSQL
    does; every other SQLite table stores what it is given (flexible typing)."""
    try:
        rows = conn.exec_driver_sql("PRAGMA table_list").fetchall()
    except sa.exc.DBAPIError:  # SQLite before 3.37 has neither the pragma nor STRICT
        return frozenset()
    return frozenset(str(r[1]) for r in rows if r[2] == "table" and r[5])


#: How many rows of a view are sampled for the types of its computed columns, and how many
#: SQLite VM steps the sample may take (a view over a large aggregate must not hold up the
#: start: past the budget the columns keep no type, which is still filtered correctly).
_SAMPLE_ROWS = 200
_SAMPLE_STEPS = 2_000_000
#: The kind and the type name shown for the storage classes a computed column holds.
_SAMPLED: dict[frozenset[str], tuple[ColumnKind, str]] = {
    frozenset({"integer"}): ("integer", "integer"),
    frozenset({"real"}): ("float", "real"),
    frozenset({"integer", "real"}): ("float", "real"),
    frozenset({"text"}): ("text", "text"),
    frozenset({"blob"}): ("bytes", "blob"),
}


def _view_types(conn: sa.Connection, view: str, columns: dict[str, Column],
                ) -> dict[str, Column]:
    """Types for a SQLite view's computed columns, which declare none (``count(*) AS n``).

    SQLite reports the declared type of a view column that is a table's column; for an
    expression there is none, so the type is read from the values, as ``typeof`` gives them
    for the first rows. Columns whose values are all NULL or of mixed types keep none.
    """
    untyped = [c for c in columns.values() if c.kind == "other"]
    if not untyped:
        return columns
    quoted = ", ".join(f'typeof("{c.name.replace(chr(34), chr(34) * 2)}")' for c in untyped)
    name = view.replace('"', '""')
    raw = conn.connection.dbapi_connection
    steps = 0

    def budget() -> int:
        nonlocal steps
        steps += 1000
        return 1 if steps > _SAMPLE_STEPS else 0

    seen: list[set[str]] = [set() for _ in untyped]
    raw.set_progress_handler(budget, 1000)  # type: ignore[union-attr]
    try:
        for row in conn.exec_driver_sql(f'SELECT {quoted} FROM "{name}" LIMIT {_SAMPLE_ROWS}'):
            for types, t in zip(seen, row, strict=True):
                types.add(str(t))
    except sa.exc.DBAPIError:
        return columns  # interrupted, or a view that cannot run (a missing table): no types
    finally:
        raw.set_progress_handler(None, 0)  # type: ignore[union-attr]
    out = dict(columns)
    for col, types in zip(untyped, seen, strict=True):
        found = _SAMPLED.get(frozenset(types - {"null"}))
        if found is not None:
            out[col.name] = dataclasses.replace(col, kind=found[0], db_type=found[1])
    return out


def _sqlite_unique(conn: sa.Connection, table: str) -> list[tuple[tuple[str, ...] | None, bool]]:
    """SQLite's unique constraints and indexes from its own pragmas: SQLAlchemy parses the
    table's SQL for constraints and misses some (``email VARCHAR(200) NOT NULL UNIQUE``), and
    leaves out the indexes that back them. Each as (columns or None, is a constraint)."""
    out: list[tuple[tuple[str, ...] | None, bool]] = []
    quoted = '"' + table.replace('"', '""') + '"'
    for _seq, index, unique, origin, partial in conn.exec_driver_sql(
            f"PRAGMA index_list({quoted})").fetchall():
        if not unique or origin == "pk" or partial:
            continue
        ix = '"' + str(index).replace('"', '""') + '"'
        names = [r[2] for r in conn.exec_driver_sql(f"PRAGMA index_info({ix})").fetchall()]
        whole = bool(names) and all(n is not None for n in names)
        out.append((tuple(str(n) for n in names) if whole else None, origin == "u"))
    return out


def _conflict_target(ix: ReflectedIndex) -> tuple[str, ...] | None:
    """The columns of a unique index an ``ON CONFLICT (…)`` naming only columns can infer:
    whole columns (no expression), no predicate (a partial index needs its WHERE repeated)."""
    if not ix.get("unique"):
        return None
    names = ix.get("column_names") or []
    options = ix.get("dialect_options") or {}
    if not names or any(n is None for n in names) or ix.get("expressions") or any(
            k.endswith("_where") and v is not None for k, v in options.items()):
        return None
    return tuple(str(n) for n in names)


def _foreign_key(table: str, i: int, fk: ReflectedForeignKeyConstraint) -> ForeignKey:
    cols = tuple(fk["constrained_columns"])
    # SQLite has no constraint names; PostgREST's hints then fall back to column names.
    name = str(fk.get("name") or f"{table}_{'_'.join(cols)}_fkey")
    return ForeignKey(name=name, table=table, columns=cols, ref_table=fk["referred_table"],
                      ref_columns=tuple(fk["referred_columns"]))


async def introspect(url: str, schema: str = "public", *,
                     prepared_statements: bool = True) -> Catalog:
    """Connect once with SQLAlchemy, reflect, and return an immutable catalog.
    ``prepared_statements`` off (``db_prepared_statements``, a pooler in transaction mode):
    statements under names of their own, cached nowhere, as SQLAlchemy advises for pgbouncer
    (its reflection runs in one transaction, so on one server connection)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    if url.startswith("sqlite"):
        engine = sa.create_engine(url.replace("sqlite:", "sqlite+pysqlite:", 1)
                                  if url.startswith("sqlite:") else url)
        try:
            import asyncio

            def run() -> list[Table]:
                with engine.connect() as conn:
                    return with_full_text(conn, reflect(conn, None))

            tables = await asyncio.to_thread(run)
        finally:
            engine.dispose()
        return Catalog.build(tables, "sqlite")
    async_url = url.replace("postgresql://", "postgresql+asyncpg://", 1).replace(
        "postgres://", "postgresql+asyncpg://", 1)
    connect_args: dict[str, Any] = {}
    if not prepared_statements:
        connect_args = {"statement_cache_size": 0, "prepared_statement_cache_size": 0,
                        "prepared_statement_name_func": lambda: f"__hw_{uuid.uuid4().hex}__"}
    aengine = create_async_engine(async_url, connect_args=connect_args)
    try:
        async with aengine.connect() as conn:
            tables = await conn.run_sync(lambda c: reflect(c, schema))
            functions = await conn.run_sync(lambda c: reflect_functions(c, schema))
    finally:
        await aengine.dispose()
    return Catalog.build(tables, "postgresql", functions)


# --- database functions (PostgreSQL) ----------------------------------------------------------

#: Every function of the schema the connecting role may execute, with its arguments (name,
#: type, mode, is an array) and, for a row type, its columns and the table it is.
_FUNCTIONS_SQL = """
SELECT p.proname, p.provolatile::text, p.proretset, format_type(p.prorettype, NULL), rt.typtype::text,
       p.pronargdefaults, p.prorettype = 'record'::regtype,
       (SELECT json_agg(json_build_array(coalesce(p.proargnames[x.i], ''),
                                         format_type(x.typ, NULL), coalesce(p.proargmodes[x.i], 'i'),
                                         at.typcategory = 'A', at.typtype = 'p') ORDER BY x.i)
          FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) WITH ORDINALITY AS x(typ, i)
          JOIN pg_type at ON at.oid = x.typ),
       CASE WHEN rt.typrelid <> 0 THEN
         (SELECT json_agg(json_build_array(a.attname, format_type(a.atttypid, a.atttypmod))
                          ORDER BY a.attnum)
            FROM pg_attribute a WHERE a.attrelid = rt.typrelid AND a.attnum > 0
                                  AND NOT a.attisdropped) END,
       (SELECT c.relname FROM pg_class c JOIN pg_namespace cn ON cn.oid = c.relnamespace
         WHERE c.oid = rt.typrelid AND cn.nspname = :schema AND c.relkind IN ('r','v','m','p','f'))
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_type rt ON rt.oid = p.prorettype
 WHERE n.nspname = :schema AND p.prokind = 'f'
   AND has_function_privilege(p.oid, 'EXECUTE')
 ORDER BY p.proname, p.oid
"""

_VOLATILITY: dict[str, Volatility] = {"i": "immutable", "s": "stable", "v": "volatile"}
_PG_KINDS: dict[str, ColumnKind] = {
    "smallint": "integer", "integer": "integer", "bigint": "integer", "boolean": "boolean",
    "real": "float", "double precision": "float", "numeric": "numeric", "text": "text",
    "character varying": "text", "character": "text", "name": "text", "citext": "text",
    "date": "date", "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz", "time without time zone": "time",
    "uuid": "uuid", "json": "json", "jsonb": "json", "bytea": "bytes",
}


def pg_kind(db_type: str) -> ColumnKind:
    """The kind of a type as ``format_type`` spells it (modifiers dropped)."""
    base = db_type.split("(")[0].strip()
    return _PG_KINDS.get(base, "other")


def _pg_column(name: str, db_type: str) -> Column:
    return Column(name=name, kind=pg_kind(db_type), db_type=db_type,
                  int_bits={"smallint": 16, "integer": 32}.get(db_type, 64))


def reflect_functions(conn: sa.Connection, schema: str | None) -> list[Function]:
    """The functions of ``schema`` a caller can reach: those whose arguments and result
    Headwater can pass and read (no pseudo-typed argument, no bare ``record`` result)."""
    out: list[Function] = []
    rows = conn.execute(sa.text(_FUNCTIONS_SQL), {"schema": schema or "public"}).fetchall()
    for (name, volatility, retset, rettype, typtype, ndefaults, is_record, args, rowcols,
         table) in rows:
        args = args or []
        inputs = [a for a in args if a[2] in ("i", "b", "v")]
        outputs = [a for a in args if a[2] in ("o", "b", "t")]
        if any(a[4] for a in inputs) or (typtype == "p" and rettype != "void"
                                         and not (is_record and outputs)):
            continue  # polymorphic or internal: no value from JSON can be bound to it
        params = tuple(
            Parameter(name=a[0], db_type=a[1], variadic=a[2] == "v", is_array=bool(a[3]),
                      has_default=i >= len(inputs) - int(ndefaults or 0))
            for i, a in enumerate(inputs))
        if is_record and outputs:
            columns = {a[0]: _pg_column(a[0], a[1]) for a in outputs}
            if not retset and len(outputs) == 1:
                columns = {}  # one OUT parameter returns that value, not a row
        elif rowcols:
            columns = {c[0]: _pg_column(c[0], c[1]) for c in rowcols}
        else:
            columns = {}
        returns: Any
        if rettype == "void":
            returns = "void"
        elif columns:
            returns = "set" if retset else "composite"
        else:
            returns = "scalars" if retset else "scalar"
        out.append(Function(name=name, parameters=params, returns=returns, return_type=rettype,
                            kind=pg_kind(rettype) if returns == "scalar" else "other",
                            volatility=_VOLATILITY.get(volatility, "volatile"),
                            columns=MappingProxyType(columns),
                            table=table if returns in ("set", "composite") else None))
    return out
