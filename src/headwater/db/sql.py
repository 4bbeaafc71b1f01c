"""Plan → SQL text for PostgreSQL or SQLite (pure).

Like PostgREST, the database builds the JSON: one statement answers a whole read, embeds
included (lateral subqueries on PostgreSQL, correlated subqueries on SQLite), so the hot path
never touches rows in Python. Identifiers come from the plan (which took them from the
catalog) and are always quoted; values are numbered parameters (``$n`` / ``?n``), so one
parameter can appear in both the page and the count subquery.

The text for a plan shape is built once and memoised (``compile_read``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec

from headwater.model.plan import (
    BoolExpr,
    Compare,
    Cond,
    EmbedExists,
    IsTest,
    JsonSteps,
    OrderBy,
    OutputColumn,
    OutputEmbed,
    ReadNode,
    Value,
    walk,
)

Dialect = Literal["postgresql", "sqlite"]

_CMP = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_TEXT_OPS = frozenset({"like", "ilike", "match", "imatch"})
_FTS = {"fts": "to_tsquery", "plfts": "plainto_tsquery", "phfts": "phraseto_tsquery",
        "wfts": "websearch_to_tsquery"}
_CONTAINS = {"cs": "@>", "cd": "<@", "ov": "&&", "sl": "<<", "sr": ">>", "nxl": "&<",
             "nxr": "&>", "adj": "-|-"}
#: The SQLite function behind ``imatch`` (``match`` is SQLite's own ``REGEXP`` operator,
#: which calls the ``regexp`` function Headwater registers on every connection).
IREGEXP = "headwater_iregexp"
#: SQLite: ``\x…`` text → the BLOB it spells (other values as they are), for BLOBs that
#: travel inside a JSON document (a bulk insert's rows), which cannot hold one.
BLOB_FROM_HEX = "headwater_blob"
# Kinds whose PostgreSQL values we compare as text (no usable operator or codec for str).
_TEXT_CAST = frozenset({"json", "other", "bytes"})
# SQLite kinds whose columns hold BLOBs in practice (declared BLOB, or no type at all). JSON
# cannot carry a BLOB, so these render one as PostgreSQL renders bytea: ``\x`` and lowercase
# hex. Only these pay for the test: on every column it costs about a fifth of a read.
_BLOB_KINDS = frozenset({"bytes", "other"})
#: SQLite 3.38 has PostgreSQL's ``->`` (JSON text out); before it, json_extract and json_quote.
_SQLITE_ARROW = sqlite3.sqlite_version_info >= (3, 38, 0)


@dataclass(frozen=True, slots=True)
class ReadSQL:
    #: One row: (total count or NULL, rows in page, JSON array text).
    aggregate: str
    #: ``aggregate`` with the text's size: (total, rows, text or NULL when it is larger than
    #: the response budget, size). See ``compile_read``.
    bounded: str
    #: One JSON object text per row, for streaming.
    rows: str
    #: One row: the total count, ignoring limit and offset.
    count: str
    #: Which plan parameters ``count`` takes, in order (it numbers its own).
    count_params: tuple[int, ...]
    #: PostgreSQL: ``bounded`` and ``rows`` with each row as its record text, what PostgREST's
    #: CSV is made of (see ``csv_out``); SQLite: the same as ``bounded`` and ``rows``.
    csv_bounded: str = ""
    csv_rows: str = ""


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A SQL string literal for a catalog name used as a JSON key (never request data)."""
    return "'" + text.replace("'", "''") + "'"


class _Builder:
    def __init__(self, dialect: Dialect, schema: str | None) -> None:
        self.dialect = dialect
        self.pg = dialect == "postgresql"
        self.schema = schema
        # When set, parameters are renumbered densely in order of first use.
        self.remap: dict[int, int] | None = None
        #: alias → the computed fields its table's columns may name (``ReadNode.computed``).
        self.computed: dict[str, tuple[str, ...]] = {}

    def register(self, node: ReadNode) -> None:
        """Note each node's computed fields before any SQL names its columns."""
        if node.computed:
            self.computed[node.alias] = node.computed
        for o in node.outputs:
            if isinstance(o, OutputEmbed):
                self.register(o.node)
        for c in walk(node.where):
            if isinstance(c, EmbedExists):
                self.register(c.node)

    def name(self, relation: str) -> str:
        if self.pg and self.schema:
            return f"{ident(self.schema)}.{ident(relation)}"
        return ident(relation)

    def p(self, index: int) -> str:
        if self.remap is not None:
            index = self.remap.setdefault(index, len(self.remap))
        return f"${index + 1}" if self.pg else f"?{index + 1}"

    def table(self, node: ReadNode) -> str:
        if node.function is not None:
            return f"{self.name(node.function)}({node.parent_alias}) AS {node.alias}"
        out = f"{self.name(node.table)} AS {node.alias}"
        if node.via is not None:
            j = f"{node.alias}_j"
            on = " AND ".join(f"{j}.{ident(mine)} = {node.alias}.{ident(theirs)}"
                              for mine, theirs in node.via.to_node)
            out += f" JOIN {self.name(node.via.table)} AS {j} ON {on}"
        return out

    # --- conditions ---------------------------------------------------------------------------

    def col(self, alias: str, column: str) -> str:
        if column in self.computed.get(alias, ()):
            # a computed field: the function of the row, as PostgREST calls it
            return f"{self.name(column)}({alias})"
        return f"{alias}.{ident(column)}"

    def expr(self, alias: str, column: str, json: JsonSteps | None, *,
             ordered: bool = False) -> str:
        """A column, or the value at a JSON path in it: PostgreSQL's ``->``/``->>``; on
        SQLite the same answers (``->>``: text, as PostgreSQL gives it; ``->``: JSON text),
        NULL for a value that is no JSON document."""
        col = self.col(alias, column)
        if json is None:
            return col
        if self.pg:
            steps = []
            last = len(json.params) - 1
            for i, (param, index) in enumerate(zip(json.params, json.indexes, strict=True)):
                arrow = "->>" if json.text and i == last else "->"
                steps.append(f" {arrow} {self.p(param)}::{'int' if index else 'text'}")
            return f"({col}{''.join(steps)})"
        path = self.p(json.params[0])
        if ordered and not json.text:
            # ordered as PostgreSQL orders jsonb (numbers as numbers), not as JSON text
            body = f"json_extract({col}, {path})"
        elif json.text:
            kind = f"json_type({col}, {path})"
            body = (f"CASE {kind} WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
                    f"ELSE CAST(json_extract({col}, {path}) AS TEXT) END")
        else:
            body = sqlite_arrow(col, path)
        return f"(CASE WHEN json_valid({col}) THEN {body} END)"

    def output(self, alias: str, o: OutputColumn) -> str:
        """A select's value: column or JSON path, cast, aggregate, cast of the aggregate."""
        if o.aggregate == "count" and not o.column:
            value = "count(*)"
        else:
            value = self.expr(alias, o.column, o.json)
            if o.cast:
                value = self.cast(value, o.cast)
            if o.aggregate:
                value = f"{o.aggregate}({value})"
        if o.agg_cast:
            value = self.cast(value, o.agg_cast)
        return value

    def cast(self, value: str, type_name: str) -> str:
        # the planner's name: a plain PostgreSQL type, or SQLite's TEXT/INTEGER/REAL/NUMERIC
        # (or JSON, which SQLite has as a function)
        if not self.pg and type_name == "JSON":
            return f"(CASE WHEN json_valid({value}) THEN json({value}) END)"
        if not self.pg and type_name == "INTEGER":
            # PostgreSQL rounds a number to an integer (half away from zero), SQLite's CAST
            # truncates it: round() first, as total::int gives on PostgreSQL
            return (f"(CASE WHEN typeof({value}) = 'real' THEN CAST(round({value}) AS INTEGER) "
                    f"ELSE CAST({value} AS INTEGER) END)")
        return f"CAST({value} AS {type_name})"

    def group_by(self, node: ReadNode, embeds: Sequence[str] = ()) -> str:
        """With an aggregate, every other output is a group key; ``embeds``: the embeds'
        values, as the select list names them."""
        if not node.grouped:
            return ""
        keys = [self.output(node.alias, o) for o in node.outputs
                if isinstance(o, OutputColumn) and o.aggregate is None]
        # An order term on a JSON path names a grouped output (``check_grouping``) but with
        # its own parameters, and PostgreSQL matches ORDER BY to GROUP BY by the text: the
        # term is grouped by too, which changes no group.
        keys.extend(self.expr(node.alias, o.column, o.json, ordered=True)
                    for o in node.order if o.json is not None)
        keys.extend(embeds)
        return (" GROUP BY " + ", ".join(keys)) if keys else ""

    def cond(self, alias: str, c: Cond) -> str:
        if isinstance(c, BoolExpr):
            joiner = " OR " if c.op == "or" else " AND "
            body = "(" + joiner.join(self.cond(alias, i) for i in c.items) + ")"
        elif isinstance(c, IsTest):
            body = self.is_test(alias, c)
        elif isinstance(c, EmbedExists):
            body = "EXISTS (" + self.exists(c.node) + ")"
        else:
            body = self.compare(alias, c)
        return f"NOT ({body})" if c.negated else body

    def is_test(self, alias: str, c: IsTest) -> str:
        col = self.expr(alias, c.column, c.json)
        if c.value == "null":
            return f"{col} IS NULL"
        if c.value == "not_null":
            return f"{col} IS NOT NULL"
        if c.value == "unknown":
            return f"{col} IS UNKNOWN" if self.pg else f"{col} IS NULL"
        return f"{col} IS {c.value.upper()}"

    def compare(self, alias: str, c: Compare) -> str:
        col = self.expr(alias, c.column, c.json)
        p = self.p(c.param)
        if c.op in _FTS:
            return self.full_text(col, c, p) if self.pg else self.fts5(alias, col, c, p)
        if c.op in _CONTAINS:
            return self.contains(col, c, p)
        if c.json is not None and not c.json.text and c.quantifier is None and (
                c.op in _CMP or c.op in ("isdistinct", "in")):
            if c.op == "in" and not self.pg:
                return (f"json_extract({col}, '$') IN (SELECT CASE WHEN json_valid(value) THEN "
                        f"json_extract(value, '$') ELSE value END FROM json_each({p}))")
            col, p = self.json_operands(col, p, c.op)
        elif c.cast is not None and self.pg and c.op in _CMP:
            return f"{col} {_CMP[c.op]} ({p}::text)::{c.cast}"
        elif c.cast is not None and self.pg and c.op == "isdistinct":
            return f"{col} IS DISTINCT FROM ({p}::text)::{c.cast}"
        elif self.pg and (c.kind in _TEXT_CAST or (c.op in _TEXT_OPS and c.kind != "text")):
            col += "::text"
        if c.quantifier is not None:
            return self.quantified(col, c, p)
        if c.op in _CMP:
            return f"{col} {_CMP[c.op]} {p}"
        if c.op in _TEXT_OPS:
            return self.text_op(c.op, col, p)
        if c.op == "isdistinct":
            return f"{col} IS DISTINCT FROM {p}" if self.pg else f"{col} IS NOT {p}"
        if c.op == "in":
            return f"{col} = ANY({p})" if self.pg else f"{col} IN (SELECT value FROM json_each({p}))"
        raise AssertionError(c.op)

    def json_operands(self, col: str, p: str, op: str) -> tuple[str, str]:
        """A JSON value (``data->a=eq.{"b":2}``) is compared as JSON, as PostgREST reads the
        literal as jsonb: PostgreSQL compares jsonb; SQLite the SQL values both JSON texts
        hold (numbers as numbers, objects as minified text; a literal that is no JSON as its
        text)."""
        if self.pg:
            return f"{col}::jsonb", f"{p}::jsonb[]" if op == "in" else f"{p}::jsonb"
        return (f"json_extract({col}, '$')",
                f"(CASE WHEN json_valid({p}) THEN json_extract({p}, '$') ELSE {p} END)")

    def text_op(self, op: str, col: str, p: str) -> str:
        """LIKE, ILIKE and the POSIX regular expressions (SQLite: Headwater's functions)."""
        if op == "like":
            return f"{col} LIKE {p}"
        if op == "ilike":
            return f"{col} ILIKE {p}" if self.pg else f"lower({col}) LIKE lower({p})"
        if op == "match":
            return f"{col} ~ {p}" if self.pg else f"{col} REGEXP {p}"
        assert op == "imatch"
        return f"{col} ~* {p}" if self.pg else f"{IREGEXP}({p}, {col})"

    def quantified(self, col: str, c: Compare, p: str) -> str:
        """``op(any)`` / ``op(all)`` over a list: PostgreSQL's ``= ANY($1)``; on SQLite the
        same three-valued answer from the list's members (json_each)."""
        word = "ANY" if c.quantifier == "any" else "ALL"
        if self.pg:
            sql_op = {"like": "LIKE", "ilike": "ILIKE", "match": "~", "imatch": "~*"}.get(
                c.op) or _CMP[c.op]
            return f"{col} {sql_op} {word}({p})"
        test = (f"{col} {_CMP[c.op]} _q.value" if c.op in _CMP
                else self.text_op(c.op, col, "_q.value"))
        members = f"SELECT 1 FROM json_each({p}) AS _q WHERE "
        unknown = f"WHEN EXISTS ({members}({test}) IS NULL) THEN NULL"
        if c.quantifier == "any":
            return f"(CASE WHEN EXISTS ({members}{test}) THEN 1 {unknown} ELSE 0 END)"
        return f"(CASE WHEN EXISTS ({members}NOT ({test})) THEN 0 {unknown} ELSE 1 END)"

    def full_text(self, col: str, c: Compare, p: str) -> str:
        """As PostgREST writes it: ``to_tsvector([config,] col) @@ to_tsquery([config,] $n)``
        (no to_tsvector when the column already is a tsvector). PostgreSQL only."""
        fn = _FTS[c.op]
        config = "" if c.config is None else f"{self.p(c.config)}::regconfig, "
        vector = col if c.cast == "tsvector" else f"to_tsvector({config}{col})"
        return f"{vector} @@ {fn}({config}{p}::text)"

    def fts5(self, alias: str, col: str, c: Compare, p: str) -> str:
        """SQLite: the rows whose rowid the FTS5 table matches in that column; unknown
        (NULL) for a NULL text, as ``to_tsvector(NULL) @@ q`` is on PostgreSQL."""
        assert c.index is not None
        fts, rowid = c.index
        key = f"{alias}.rowid" if rowid.lower() == "rowid" else self.col(alias, rowid)
        return (f"(CASE WHEN {col} IS NULL THEN NULL ELSE {key} IN (SELECT rowid FROM "
                f"{ident(fts)} WHERE {ident(c.column)} MATCH {p}) END)")

    def contains(self, col: str, c: Compare, p: str) -> str:
        """Arrays and ranges on PostgreSQL (the literal read as the column's type); JSON
        arrays on SQLite, compared member by member."""
        if self.pg:
            assert c.cast is not None
            return f"{col} {_CONTAINS[c.op]} ({p}::text)::{c.cast}"
        # NULL (unknown, as PostgreSQL answers for NULL) when the column holds no JSON
        mine = f"json_each({col}) AS _m"
        theirs = f"(SELECT value FROM json_each({p}))"
        if c.op == "cs":
            test = (f"NOT EXISTS (SELECT 1 FROM json_each({p}) AS _q "
                    f"WHERE _q.value NOT IN (SELECT _m.value FROM {mine}))")
        elif c.op == "cd":
            test = f"NOT EXISTS (SELECT 1 FROM {mine} WHERE _m.value NOT IN {theirs})"
        else:
            assert c.op == "ov"
            test = f"EXISTS (SELECT 1 FROM {mine} WHERE _m.value IN {theirs})"
        return f"(CASE WHEN json_valid({col}) THEN {test} END)"

    def where(self, node: ReadNode) -> str:
        parts = [f"{node.alias}.{ident(mine)} = {node.parent_alias}.{ident(theirs)}"
                 for mine, theirs in node.join]
        if node.via is not None:
            j = f"{node.alias}_j"
            parts.extend(f"{j}.{ident(mine)} = {node.parent_alias}.{ident(theirs)}"
                         for mine, theirs in node.via.to_parent)
            parts.extend(self.cond(j, c) for c in node.via.where)
        parts.extend(self.cond(node.alias, c) for c in node.where)
        return (" WHERE " + " AND ".join(parts)) if parts else ""

    def exists(self, node: ReadNode) -> str:
        return f"SELECT 1 FROM {self.table(node)}{self.where(node)}"

    def order(self, node: ReadNode) -> str:
        if not node.order:
            return ""
        return " ORDER BY " + ", ".join(self.order_term(node.alias, o) for o in node.order)

    def order_term(self, alias: str, o: OrderBy) -> str:
        s = self.expr(alias, o.column, o.json, ordered=True) + (" DESC" if o.desc else " ASC")
        nulls = o.nulls or (None if self.pg else ("first" if o.desc else "last"))
        return s + (f" NULLS {nulls.upper()}" if nulls else "")

    def page(self, limit: int | None, offset: int | None, *, root: bool) -> str:
        s = ""
        if limit is not None:
            s += f" LIMIT {self.p(limit)}" if self.pg or not root else \
                f" LIMIT coalesce({self.p(limit)}, -1)"
        elif offset is not None and not self.pg:
            s += " LIMIT -1"
        if offset is not None:
            s += f" OFFSET {self.p(offset)}"
        return s

    # --- PostgreSQL: columns, lateral embeds, json_agg ----------------------------------------

    def pg_select(self, node: ReadNode, limit: int | None, offset: int | None,
                  root: bool = False) -> str:
        cols: list[str] = []
        joins: list[str] = []
        groups: list[str] = []
        grouped = node.grouped

        def add(value: str, key: str, *, as_json: bool) -> None:
            # json has no equality: a group key is its text, read back as json
            if grouped:
                value = f"{value}::text" if as_json else value
                groups.append(value)
                value = f"({value})::json" if as_json else value
            cols.append(f"{value} AS {ident(key)}")

        for o in node.outputs:
            if isinstance(o, OutputColumn):
                cols.append(f"{self.output(node.alias, o)} AS {ident(o.key)}")
                continue
            child = o.node
            inner = self.pg_select(child, child.limit, child.offset)
            lateral = f"{child.alias}_e"
            if o.spread and child.to_many:
                # PostgREST 13: each spread column of a to-many embed is an array
                keys = child.output_keys()
                aggs = ", ".join(f"coalesce(json_agg(_s.{ident(k)}), '[]') AS {ident(k)}"
                                 for k in keys)
                joins.append(f" LEFT JOIN LATERAL (SELECT {aggs} FROM ({inner}) AS _s)"
                             f" AS {lateral} ON TRUE")
                for k in keys:
                    add(f"{lateral}.{ident(k)}", k, as_json=True)
            elif o.spread:
                joins.append(f" LEFT JOIN LATERAL ({inner}) AS {lateral} ON TRUE")
                for k in child.output_keys():
                    add(f"{lateral}.{ident(k)}", k, as_json=False)
            else:
                agg = ("coalesce(json_agg(_s), '[]')" if child.to_many else "row_to_json(_s)")
                joins.append(f" LEFT JOIN LATERAL (SELECT {agg} AS body FROM ({inner}) AS _s)"
                             f" AS {lateral} ON TRUE")
                add(f"{lateral}.body", o.key, as_json=True)
        return (f"SELECT {', '.join(cols) or 'NULL AS _'} FROM {self.table(node)}"
                + "".join(joins) + self.where(node) + self.group_by(node, groups)
                + self.order(node) + self.page(limit, offset, root=root))

    # --- SQLite: json_object per row, correlated subqueries -----------------------------------

    def sqlite_value(self, node: ReadNode, o: OutputColumn | OutputEmbed) -> str:
        if isinstance(o, OutputEmbed):
            child = o.node
            rows = self.sqlite_rows(child, child.limit, child.offset)
            if child.to_many:
                return f"json(coalesce((SELECT '[' || group_concat(_j, ',') || ']' FROM ({rows}))," \
                       " '[]'))"
            return f"json(({rows}))"
        col = self.output(node.alias, o)
        if o.kind == "boolean":
            # SQLite has no boolean type; the declared type decides what JSON says.
            return f"json(CASE WHEN {col} IS NULL THEN NULL WHEN {col} THEN 'true' ELSE 'false' END)"
        if o.kind == "json":
            return f"(CASE WHEN json_valid({col}) THEN json({col}) ELSE {col} END)"
        if o.kind in _BLOB_KINDS:
            return f"(CASE WHEN typeof({col}) = 'blob' THEN '\\x' || lower(hex({col})) ELSE {col} END)"
        return col

    def sqlite_rows(self, node: ReadNode, limit: int | None, offset: int | None,
                    root: bool = False) -> str:
        pairs: list[str] = []
        groups: list[str] = []
        for o in node.outputs:
            values = (self.sqlite_spread(o.node) if isinstance(o, OutputEmbed) and o.spread
                      else [(o.key, self.sqlite_value(node, o))])
            pairs.extend(f"{literal(k)}, {v}" for k, v in values)
            if isinstance(o, OutputEmbed):
                groups.extend(v for _k, v in values)
        return (f"SELECT {sqlite_object(pairs)} AS _j FROM {self.table(node)}" + self.where(node)
                + self.group_by(node, groups) + self.order(node)
                + self.page(limit, offset, root=root))

    def sqlite_spread(self, child: ReadNode) -> list[tuple[str, str]]:
        """A spread embed's pairs, each read from the child's object (to-many: an array of
        them); the keys were checked to hold no double quote (``$."key"``)."""
        rows = self.sqlite_rows(child, child.limit, child.offset)
        out = []
        for key in child.output_keys():
            path = literal(f'$."{key}"')
            if child.to_many:
                value = (f"json(coalesce((SELECT json_group_array(json({sqlite_arrow('_j', path)}))"
                         f" FROM ({rows})), '[]'))")
            else:
                value = f"json({sqlite_arrow(f'({rows})', path)})"
            out.append((key, value))
        return out

    # --- whole statements ---------------------------------------------------------------------

    def count_sql(self, root: ReadNode) -> str:
        """Rows, or with an aggregate the groups (one when nothing is grouped by)."""
        if not root.grouped:
            return f"SELECT count(*) FROM {self.table(root)}{self.where(root)}"
        rows = (self.pg_select(root, None, None) if self.pg
                else self.sqlite_rows(root, None, None))
        return f"SELECT count(*) FROM ({rows}) AS _g"

    def read(self, root: ReadNode, limit: int, offset: int, count: bool,
             max_bytes: int) -> ReadSQL:
        self.register(root)
        count_sql = self.count_sql(root)
        total = f"({count_sql})" if count else "NULL"
        self.remap = {}
        standalone_count = self.count_sql(root)
        count_params = tuple(self.remap)
        self.remap = None
        if self.pg:
            inner = self.pg_select(root, limit, offset, root=True)
            aggregate = (f"SELECT {total} AS t, count(*) AS n, "
                         f"coalesce(json_agg(_t), '[]')::text AS b FROM ({inner}) AS _t")
            record = "substring(_t::text, 2, length(_t::text) - 2)"
            csv = (f"SELECT {total} AS t, count(*) AS n, "
                   f"coalesce(string_agg({record}, E'\\n'), '') AS b FROM ({inner}) AS _t")
            return ReadSQL(
                aggregate=aggregate, bounded=self.bounded(aggregate, max_bytes),
                rows=f"SELECT row_to_json(_t)::text FROM ({inner}) AS _t",
                count=standalone_count, count_params=count_params,
                csv_bounded=self.bounded(csv, max_bytes),
                csv_rows=f"SELECT {record} FROM ({inner}) AS _t")
        rows = self.sqlite_rows(root, limit, offset, root=True)
        body = "coalesce('[' || group_concat(_j, ',') || ']', '[]')"
        aggregate = f"SELECT {total}, count(*), {body} FROM ({rows})"
        # Not wrapped in a subquery as on PostgreSQL: SQLite's parser stack is shallow, and
        # one more level would refuse reads that nest embeds four deep. SQLite computes the
        # one group_concat once however often the expression names it.
        size = f"length({body})"  # characters: 3.40 has no octet_length; JSON is mostly ASCII
        checked = f"CASE WHEN {size} <= {int(max_bytes)} THEN {body} END" if max_bytes > 0 \
            else body
        bounded = f"SELECT {total}, count(*), {checked}, {size} FROM ({rows})"
        return ReadSQL(
            aggregate=aggregate, bounded=bounded, rows=rows,
            count=standalone_count, count_params=count_params,
            csv_bounded=bounded, csv_rows=rows)

    def bounded(self, aggregate: str, max_bytes: int) -> str:
        """PostgreSQL's aggregate, whose text leaves the database only when it fits the
        budget: an answer too large costs the database its work (bounded by the statement
        timeout), never a copy on the wire or in Python."""
        body = f"CASE WHEN octet_length(_a.b) <= {int(max_bytes)} THEN _a.b END" \
            if max_bytes > 0 else "_a.b"
        return f"SELECT _a.t, _a.n, {body}, octet_length(_a.b) FROM ({aggregate}) AS _a"


def sqlite_arrow(doc: str, path: str) -> str:
    """SQLite: the JSON text at ``path`` in ``doc`` (NULL when absent), as ``->`` gives it."""
    if _SQLITE_ARROW:
        return f"{doc} -> {path}"
    value = f"json_extract({doc}, {path})"
    return (f"(CASE json_type({doc}, {path}) WHEN 'object' THEN {value} WHEN 'array' THEN "
            f"{value} WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' "
            f"WHEN 'text' THEN json_quote({value}) ELSE CAST({value} AS TEXT) END)")


#: SQLite functions take at most 127 arguments (SQLITE_MAX_FUNCTION_ARG): 60 key/value pairs.
_SQLITE_PAIRS = 60


def sqlite_object(pairs: Sequence[str]) -> str:
    """``json_object(k1, v1, ...)`` for any number of ``"k, v"`` pairs: past SQLite's argument
    limit, objects of 60 pairs are joined as text (their braces dropped) and parsed once."""
    if len(pairs) <= _SQLITE_PAIRS:
        return f"json_object({', '.join(pairs)})"
    parts = [f"json_object({', '.join(pairs[i:i + _SQLITE_PAIRS])})"
             for i in range(0, len(pairs), _SQLITE_PAIRS)]
    inner = " || ',' || ".join(f"substr({p}, 2, length({p}) - 2)" for p in parts)
    return f"json('{{' || {inner} || '}}')"


#: Bounded by count: an entry keeps its plan and SQL text alive, about 200 KB for a select of
#: 800 columns, so 256 shapes cost at most some 50 MB even when every request is a new wide
#: ``select=``; an application's own shapes are far fewer.
@functools.lru_cache(maxsize=256)
def compile_read(dialect: Dialect, schema: str | None, root: ReadNode, limit: int, offset: int,
                 count: bool, max_bytes: int = 0) -> ReadSQL:
    """The SQL for one plan shape; memoised because shapes repeat and values do not matter.
    ``max_bytes``: the response budget of ``ReadSQL.bounded`` (0: none)."""
    return _Builder(dialect, schema).read(root, limit, offset, count, max_bytes)


# --- parameters -------------------------------------------------------------------------------

def _sqlite_value(v: Value) -> object:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, (dt.date, dt.datetime, dt.time)):
        return v.isoformat()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, tuple):
        # a BLOB cannot travel in JSON: its hex form matches nothing, as no text equals it
        return msgspec.json.encode([_sqlite_value(i) if not isinstance(i, bytes)
                                    else "\\x" + i.hex() for i in v]).decode()
    return v


def bind(dialect: Dialect, params: Sequence[Value]) -> list[object]:
    """Plan values → what the driver takes (asyncpg's codecs, or SQLite's few types)."""
    if dialect == "postgresql":
        return [list(v) if isinstance(v, tuple) else v for v in params]
    return [_sqlite_value(v) for v in params]
