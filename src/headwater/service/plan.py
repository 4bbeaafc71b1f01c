"""Planning: ``ApiRequest`` + ``Catalog`` → ``ReadPlan`` (pure).

A plan is split in two: a hashable *shape* (tables, columns, operators, parameter slots)
and the list of bound *values*. The SQL for a shape is built once and cached, and the cache
layer keys on the shape plus the values, so the same query written two ways shares one entry.
Every identifier in a plan was looked up in the catalog; no text from the request reaches
SQL except as a bound value (invariant 4).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from headwater.errors import (
    EncryptedColumn,
    InvalidValue,
    LimitExceeded,
    ParseError,
    RequestError,
    UnknownColumn,
    UnknownRelationship,
    UnknownTable,
    UnsupportedFilter,
)
from headwater.model.catalog import Catalog, Column, ColumnKind, Table
from headwater.model.fts_query import fts5_query
from headwater.model.grammar import ARRAY_OPS, FTS_OPS, RANGE_OPS, parse_array
from headwater.model.pattern import sqlite_pattern
from headwater.model.plan import (
    VIEWS,
    BoolExpr,
    Compare,
    Cond,
    EmbedExists,
    InsertPlan,
    InsertShape,
    IsTest,
    JsonSteps,
    MutatePlan,
    MutateShape,
    OrderBy,
    Output,
    OutputColumn,
    OutputEmbed,
    ReadNode,
    ReadPlan,
    Value,
    Via,
    target_columns,
)
from headwater.model.request import (
    ApiRequest,
    Condition,
    Embed,
    Field,
    JsonPath,
    Logic,
    OrderTerm,
    Path,
    Predicate,
    Query,
    SelectItem,
)
from headwater.model.values import sqlite_number
from headwater.service.coercion import coerce
from headwater.service.policy import unknown_column
from headwater.service.relationships import resolve_relationship
from headwater.service.select_forms import (
    aggregate_kind,
    aggregates_refused,
    cast_type,
    check_grouping,
    check_json_column,
    group_refused,
    json_kind,
    json_steps,
)

if TYPE_CHECKING:
    from headwater.service.policy import Access, Rule

#: PostgreSQL's NAMEDATALEN - 1: longer identifiers (aliases too) are truncated.
PG_MAX_IDENTIFIER_BYTES = 63


@functools.lru_cache(maxsize=1024)
def _star(table: Table) -> tuple[OutputColumn, ...]:
    """``select=*`` for a table; the catalog is immutable, so this is computed once."""
    return tuple(OutputColumn(c.name, c.name, c.kind) for c in table.columns.values())


# --- value coercion ---------------------------------------------------------------------------

#: A type name that may appear in a statement as a cast (``integer[]``, ``int4range``,
#: ``character varying(20)[]``): what the catalog reports for built-in types.
_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_ ]*(?:\(\d+(?:,\s*\d+)?\))?(?:\[\])*$")
_TYPED_OPS = frozenset({"eq", "neq", "gt", "gte", "lt", "lte", "isdistinct"})
class _Planner:
    def __init__(self, catalog: Catalog, request: ApiRequest,
                 access: Access | None = None) -> None:
        self.catalog = catalog
        self.request = request
        self.params: list[Value] = []
        self.aliases = 0
        self.used_paths: set[Path] = set()
        # Policies (service.policy): None when every caller may do everything.
        self.access = access if access is not None and access.restricted else None
        self.encrypted = access.encrypted if access is not None else frozenset()
        #: True while planning a policy's own filter (it may name any column).
        self.trusted = False
        #: Levels of embedding allowed (reads: the ``max_embed_depth`` setting); 0 = any.
        self.max_embed_depth = 0
        #: Reads may name computed fields (functions of a row); writes only columns.
        self.reading = False
        #: ``aggregates_enabled`` (and the caller's policy): may ``select=`` aggregate?
        self.aggregates = True

    def policy_cond(self, table: Table, pred: Predicate | None) -> list[Cond]:
        if pred is None:
            return []
        self.trusted = True
        try:
            return [self.cond(table, pred, {})]
        finally:
            self.trusted = False

    def plain(self, table: Table, name: str) -> None:
        if (table.name, name) in self.encrypted and not self.trusted:
            raise EncryptedColumn(f"column {table.name}.{name} is encrypted: it cannot be "
                                  "filtered or ordered on",
                                  hint="filter on another column, or keep it unencrypted")

    def param(self, value: Value) -> int:
        self.params.append(value)
        return len(self.params) - 1

    def alias(self) -> str:
        name = f"t{self.aliases}"
        self.aliases += 1
        return name

    def key(self, alias: str | None) -> None:
        """An alias the request gives an output key: PostgreSQL would silently truncate one
        longer than its identifier limit, and the response's keys would not be the request's.
        """
        if (alias is not None and self.catalog.dialect == "postgresql"
                and len(alias.encode()) > PG_MAX_IDENTIFIER_BYTES):
            raise ParseError(f"alias too long: at most {PG_MAX_IDENTIFIER_BYTES} bytes",
                             details=f"{alias[:20]!r}... is {len(alias.encode())} bytes",
                             hint="use a shorter alias")

    def column(self, table: Table, name: str) -> Column:
        """A column the request names (to select, filter or order on, for any action): it
        must exist and be one the caller may read; one it may not read answers exactly as
        an unknown one, suggestions included, so that neither its existence nor (through
        what a write's filter matches) its values can be learnt."""
        col = table.columns.get(name)
        if col is None and self.reading:
            col = table.computed.get(name)
        readable = None
        if self.access is not None and not self.trusted:
            readable = self.access.readable(table.name)
        if col is None or (readable is not None and name not in readable):
            raise unknown_column(table.name, name, table.columns if readable is None else
                                 (c for c in table.columns if c in readable))
        return col

    def node(self, table: Table, select: Sequence[SelectItem], path: Path, *,
             join: tuple[tuple[str, str], ...] = (), to_many: bool = False,
             inner: bool = False, parent_alias: str = "", root: bool = False,
             via: Via | None = None, function: str | None = None) -> ReadNode:
        self.used_paths.add(path)
        alias = self.alias()
        outputs: list[Output] = []
        embeds: dict[str, ReadNode] = {}
        rule: Rule | None = None
        if self.access is not None:
            rule = self.access.rule(table.name, "select")
        hidden: list[ReadNode] = []
        for item in select:
            if isinstance(item, Field):
                if item.name == "*":
                    outputs.extend(_star(table) if rule is None or rule.columns is None else
                                   (o for o in _star(table) if o.column in rule.columns))
                else:
                    self.key(item.alias)
                    outputs.append(self.output(table, item))
            else:
                self.key(item.alias)
                if item.key in embeds and not item.spread:
                    # one key in the output object would silently hold only the last; the
                    # error PostgREST answers (PostgreSQL's, naming its lateral join)
                    raise RequestError(f'table name "{table.name}_{item.key}_1" specified '
                                       "more than once", code="42712", details=None, hint=None)
                child = self.embed(table, item, (*path, item.key), alias)
                embeds[item.key] = child
                if item.spread and child.grouped:
                    # PostgREST moves such aggregates up to the parent: not done here yet
                    raise group_refused(table.name, "a spread embed's own aggregates")
                if (item.spread and self.catalog.dialect == "sqlite"
                        and any('"' in k for k in child.output_keys())):
                    raise ParseError("a spread embed's keys may not hold a double quote on "
                                     "SQLite", details=f"in {item.name}", hint="alias them")
                if item.select:
                    outputs.append(OutputEmbed(item.key, child, item.spread))
                else:
                    hidden.append(child)
        q = self.request.query
        where = [self.cond(table, p, embeds) for p in q.where.get(path, ())]
        if rule is not None:
            where += self.policy_cond(table, rule.rows)
        for child in embeds.values():
            if child.inner:
                where.append(EmbedExists(child))
        order = tuple(self.order_by(table, t) for t in q.order.get(path, ()))
        if any(isinstance(o, OutputColumn) and o.aggregate for o in outputs):
            check_grouping(table.name, outputs, order, self.params)
        limit = offset = None
        if not root:
            if path in q.limit:
                limit = self.param(q.limit[path])
            if path in q.offset:
                offset = self.param(q.offset[path])
        return ReadNode(table.name, alias, tuple(outputs), tuple(where), order, limit, offset,
                        join, to_many, inner, parent_alias, via=via, function=function,
                        computed=tuple(table.computed), hidden=tuple(hidden))

    def output(self, table: Table, item: Field) -> OutputColumn:
        """A column of ``select=``, with its JSON path, casts and aggregate."""
        if item.name == "" or (item.name == "count" and not item.json and not item.cast
                               and not item.aggregate and "count" not in table.columns):
            # ``count()``, and ``count`` as PostgREST still reads it (``orders(count)``)
            self.may_aggregate(table)
            kind: ColumnKind = "integer"
            agg_cast: str | None = None
            if item.agg_cast:
                agg_cast, kind = cast_type(self.catalog.dialect, item.agg_cast)
            return OutputColumn(item.alias or "count", "", kind, aggregate="count",
                                agg_cast=agg_cast)
        col = self.column(table, item.name)
        if not (item.json or item.cast or item.aggregate):
            return OutputColumn(item.alias or col.name, col.name, col.kind)
        # a transformed value of an encrypted column would be a transformed ciphertext
        self.plain(table, col.name)
        kind = col.kind
        steps = None
        if item.json:
            steps = self.json(table, col, item.json)
            kind = json_kind(item.json)
        cast = agg_cast = None
        if item.cast:
            cast, kind = cast_type(self.catalog.dialect, item.cast)
        if item.aggregate:
            self.may_aggregate(table)
            kind = aggregate_kind(item.aggregate, kind)
            if item.agg_cast:
                agg_cast, kind = cast_type(self.catalog.dialect, item.agg_cast)
        return OutputColumn(item.key, col.name, kind, steps, cast, item.aggregate, agg_cast)

    def may_aggregate(self, table: Table) -> None:
        """The ``aggregates_enabled`` setting, then the caller's select policy for the table."""
        if not self.aggregates or (self.access is not None
                                   and not self.access.rule(table.name, "select").aggregates):
            raise aggregates_refused()

    def json(self, table: Table, col: Column, path: JsonPath) -> JsonSteps:
        check_json_column(col, path, table.name)
        return json_steps(self.catalog.dialect, path, self.param)

    def embed(self, parent: Table, item: Embed, path: Path, parent_alias: str) -> ReadNode:
        if self.max_embed_depth and len(path) > self.max_embed_depth:
            # Each level multiplies the rows (a cycle such as products → order_items →
            # products → ... grows a response by the fan-out at every step), so depth is
            # refused here, before any SQL; the size of what is left is the reader's budget.
            raise LimitExceeded(
                f"Embedding is nested {self._depth(path)} levels deep, more than the limit "
                f"of {self.max_embed_depth}",
                details=f"at {'.'.join(path)}",
                hint="The limit is the max_embed_depth setting (HEADWATER_MAX_EMBED_DEPTH)")
        rel = resolve_relationship(self.catalog, parent.name, item)
        target = self.catalog.tables[rel.target]
        # An empty embed (``customers()``) keeps its empty select: it filters, adds no key.
        select = item.select
        if rel.junction is not None:
            j = rel.junction
            where: tuple[Cond, ...] = ()
            if self.access is not None:
                where = tuple(self.policy_cond(self.catalog.tables[j.table],
                                               self.access.rule(j.table, "select").rows))
            via = Via(j.table, tuple(zip(j.target_columns, rel.target_columns, strict=True)),
                      tuple(zip(j.source_columns, rel.source_columns, strict=True)), where)
            return self.node(target, select, path, to_many=True, inner=item.inner,
                             parent_alias=parent_alias, via=via)
        join = tuple(zip(rel.target_columns, rel.source_columns, strict=True))
        return self.node(target, select, path, join=join, to_many=rel.to_many,
                         inner=item.inner, parent_alias=parent_alias, function=rel.function)

    def _depth(self, path: Path) -> int:
        """How deep the select nests below ``path``'s parent: all of it is refused at once."""
        depth = len(path)
        items: Sequence[SelectItem] = self.request.query.select
        for key in path:
            embed = next((i for i in items if isinstance(i, Embed) and i.key == key), None)
            if embed is None:
                return depth
            items = embed.select
        return depth + _nesting(items)

    def order_by(self, table: Table, term: OrderTerm) -> OrderBy:
        col = self.column(table, term.column)
        self.plain(table, term.column)
        steps = self.json(table, col, term.json) if term.json else None
        return OrderBy(term.column, term.desc, term.nulls, steps)

    def cond(self, table: Table, pred: Predicate, embeds: dict[str, ReadNode]) -> Cond:
        if isinstance(pred, Logic):
            return BoolExpr(pred.op, tuple(self.cond(table, p, embeds) for p in pred.items),
                            pred.negated)
        if pred.column in embeds and pred.column not in table.columns:
            return self.embed_null_filter(pred, embeds[pred.column])
        col = self.column(table, pred.column)
        self.plain(table, col.name)
        if pred.json:
            return self.json_cond(table, col, pred)
        if pred.op == "is":
            assert isinstance(pred.value, str)
            if pred.value in ("true", "false", "unknown") and col.kind != "boolean":
                raise InvalidValue(f'invalid input syntax for type boolean filter on '
                                   f'{col.kind} column "{col.name}"')
            return IsTest(col.name, col.kind, pred.value, pred.negated)
        if pred.op == "in":
            assert isinstance(pred.value, tuple)
            values = tuple(coerce(col, v, self.catalog.dialect) for v in pred.value)
            return Compare(col.name, col.kind, "in", self.param(values), pred.negated)
        if pred.modifier in ("any", "all"):
            assert isinstance(pred.value, tuple)
            values = tuple(self.literal(col, pred.op, v) for v in pred.value)
            return Compare(col.name, col.kind, pred.op, self.param(values), pred.negated,
                           quantifier="all" if pred.modifier == "all" else "any")
        assert isinstance(pred.value, str)
        if pred.op in FTS_OPS:
            return self.full_text(table, col, pred)
        if pred.op in ARRAY_OPS or pred.op in RANGE_OPS:
            return self.containment(col, pred)
        value = self.literal(col, pred.op, pred.value)
        return Compare(col.name, col.kind, pred.op, self.param(value), pred.negated,
                       cast=self.typed(col, pred.op))

    def typed(self, col: Column, op: str) -> str | None:
        """PostgreSQL compares a range or an array with a literal of its own type (as
        PostgREST: ``[1,2]`` equals ``[1,3)``, and a malformed literal is a 400)."""
        t = col.db_type
        if (self.catalog.dialect == "postgresql" and col.kind == "other" and op in _TYPED_OPS
                and (t.endswith("[]") or t.endswith("range")) and _TYPE_NAME.match(t)):
            return t
        return None

    def json_cond(self, table: Table, col: Column, pred: Condition) -> Cond:
        """A filter on a JSON path: its value compared as text (``->>``) or as JSON text
        (``->``); full-text and containment take a column of their own type."""
        if pred.op in FTS_OPS or pred.op in ARRAY_OPS or pred.op in RANGE_OPS:
            raise UnsupportedFilter(f"{pred.op} is not supported on a JSON path",
                                    details=f"column {col.name}",
                                    hint="filter a JSON path with eq, neq, gt, lt, like, in, is")
        steps = self.json(table, col, pred.json)
        as_text = Column(col.name, json_kind(pred.json), "text")
        if pred.op == "is":
            assert isinstance(pred.value, str)
            if pred.value in ("true", "false", "unknown"):
                raise InvalidValue(f"is.{pred.value} takes a boolean column; a JSON path is "
                                   f"{as_text.kind}", details=f"column {col.name}")
            return IsTest(col.name, as_text.kind, pred.value, pred.negated, steps)
        if isinstance(pred.value, tuple):
            values = tuple(self.literal(as_text, pred.op, v) for v in pred.value)
            quantifier = None if pred.op == "in" else pred.modifier
            return Compare(col.name, as_text.kind, pred.op, self.param(values), pred.negated,
                           quantifier="all" if quantifier == "all" else
                           ("any" if quantifier == "any" else None), json=steps)
        return Compare(col.name, as_text.kind, pred.op,
                       self.param(self.literal(as_text, pred.op, pred.value)), pred.negated,
                       json=steps)

    def literal(self, col: Column, op: str, text: str) -> Value:
        """One literal of a comparison: a LIKE pattern (``*`` for ``%``), a regular
        expression (checked for SQLite's engine), or a value of the column's type."""
        if op in ("like", "ilike"):
            return text.replace("*", "%")
        if op in ("match", "imatch"):
            return sqlite_pattern(text) if self.catalog.dialect == "sqlite" else text
        return coerce(col, text, self.catalog.dialect)

    def full_text(self, table: Table, col: Column, pred: Condition) -> Compare:
        assert isinstance(pred.value, str)
        if self.catalog.dialect == "sqlite":
            return self.sqlite_full_text(table, col, pred)
        if col.kind != "text":
            raise UnsupportedFilter(
                f"full-text search ({pred.op}) needs a text or tsvector column; "
                f"{col.name} is {col.db_type}")
        config = None if pred.modifier is None else self.param(pred.modifier)
        return Compare(col.name, col.kind, pred.op, self.param(pred.value), pred.negated,
                       config=config, cast="tsvector" if col.db_type == "tsvector" else None)

    def sqlite_full_text(self, table: Table, col: Column, pred: Condition) -> Compare:
        """Through an external-content FTS5 table that indexes the column (``db.fts``)."""
        assert isinstance(pred.value, str)
        index = next(((fts, rowid) for c, fts, rowid in table.full_text if c == col.name), None)
        if index is None:
            name = f"{table.name}_fts"
            key = table.primary_key[0] if len(table.primary_key) == 1 else "rowid"
            raise UnsupportedFilter(
                f"full-text search ({pred.op}) on SQLite needs an FTS5 index covering "
                f"{table.name}.{col.name}",
                details="SQLite searches text through an external-content FTS5 table",
                hint=f"CREATE VIRTUAL TABLE {name} USING fts5({col.name}, content='{table.name}', "
                     f"content_rowid='{key}'); INSERT INTO {name}({name}) VALUES('rebuild'); "
                     "then keep it current with triggers (see the README)")
        if pred.modifier is not None:
            raise UnsupportedFilter(
                f"text search configurations ({pred.op}({pred.modifier})) are PostgreSQL's",
                hint="on SQLite the FTS5 table's tokenizer applies: leave out the parentheses")
        query = fts5_query(pred.op, pred.value) or '""'  # no words: matches nothing
        return Compare(col.name, col.kind, pred.op, self.param(query), pred.negated,
                       index=index)

    def containment(self, col: Column, pred: Condition) -> Compare:
        """``cs``/``cd``/``ov`` and the range operators. PostgreSQL reads the literal as the
        column's own type (its name comes from the catalog); SQLite answers ``cs``/``cd``/
        ``ov`` on JSON arrays and has no ranges."""
        assert isinstance(pred.value, str)
        db_type = col.db_type.lower()
        is_range = "range" in db_type
        if self.catalog.dialect == "sqlite":
            if pred.op in RANGE_OPS:
                raise UnsupportedFilter(
                    f"the range operator {pred.op} is not available on SQLite",
                    details="SQLite has no range types",
                    hint="cs, cd and ov work on JSON arrays on SQLite")
            items = parse_array(pred.value) if pred.value.startswith("{") else None
            if items is None:
                raise InvalidValue(f'malformed array literal: "{pred.value}"',
                                   details=f"{pred.op} on SQLite takes a list like {{1,2}}")
            values = tuple(_json_item(v) for v in items)
            return Compare(col.name, col.kind, pred.op, self.param(values), pred.negated)
        if pred.op in RANGE_OPS and not is_range:
            raise UnsupportedFilter(
                f"operator does not exist: {col.db_type} {pred.op} (a range operator)",
                details=f"{col.name} is {col.db_type}, not a range")
        if not (is_range or db_type.endswith("]") or db_type in ("jsonb", "json")):
            raise UnsupportedFilter(
                f"operator does not exist: {col.db_type} {pred.op}",
                details=f"{pred.op} compares arrays, ranges or jsonb; {col.name} is "
                        f"{col.db_type}")
        cast = "jsonb" if db_type == "json" else col.db_type
        if not _TYPE_NAME.match(cast):
            # the type's name goes into the statement: only plain catalog names do
            raise UnsupportedFilter(f"{pred.op} is not supported on a column of type "
                                    f"{col.db_type}", details=f"column {col.name}")
        return Compare(col.name, col.kind, pred.op, self.param(pred.value), pred.negated,
                       cast=cast)

    def embed_null_filter(self, pred: Condition, child: ReadNode) -> Cond:
        if pred.op != "is" or pred.value not in ("null", "not_null"):
            raise ParseError(f"only is.null and not.is.null filter an embedded resource "
                             f"({pred.column})")
        exists = (pred.value == "not_null") != pred.negated
        return EmbedExists(child, negated=not exists)

    def check_paths(self) -> None:
        q = self.request.query
        for paths in (q.where, q.order, q.limit, q.offset):
            for p in paths:
                if p not in self.used_paths:
                    raise UnknownRelationship(
                        f"Could not find '{'.'.join(p)}' among the embedded resources",
                        hint="embed it in select= before filtering or ordering on it")


def _suggest(name: str, options: object) -> str | None:
    import difflib

    names = list(options)  # type: ignore[call-overload]
    close = difflib.get_close_matches(name, names, n=1)
    return f"Perhaps you meant to reference the column \"{close[0]}\"." if close else None


def _json_item(text: str) -> Value:
    """An element of a list compared with a JSON array's members: a number when it reads
    as one (JSON ``1`` is SQLite's integer 1), else the text."""
    number = sqlite_number(text)
    return text if number is None else number


def _nesting(items: Sequence[SelectItem]) -> int:
    return max((1 + _nesting(i.select) for i in items if isinstance(i, Embed)), default=0)


def plan_read(catalog: Catalog, request: ApiRequest, *, max_rows: int = 0,
              access: Access | None = None, max_embed_depth: int = 0,
              aggregates: bool = True) -> ReadPlan:
    table = catalog.table(request.target)
    if table is None:
        hint = _suggest(request.target, catalog.tables)
        raise UnknownTable(
            f"Could not find the table 'public.{request.target}' in the schema cache",
            hint=hint.replace("the column", "the table") if hint else None)
    p = _Planner(catalog, request, access)
    p.max_embed_depth = max_embed_depth
    p.reading = True
    p.aggregates = aggregates
    root = p.node(table, request.query.select, (), root=True)
    p.check_paths()
    q = request.query
    offset = q.offset.get((), 0)
    limit = q.limit.get(())
    if request.range is not None:
        first, last = request.range
        offset = max(offset, first) if () not in q.offset else offset + first
        if last is not None:
            span = last - first + 1
            limit = span if limit is None else min(limit, span)
    if max_rows:
        limit = max_rows if limit is None else min(limit, max_rows)
    limit_param = p.param(limit)
    offset_param = p.param(offset)
    tables = catalog.tables
    read = root.tables()
    views = any(t in tables and tables[t].is_view for t in read)
    return ReadPlan(root=root, params=tuple(p.params), count=request.prefer.count is not None,
                    media=request.media, limit_param=limit_param, offset_param=offset_param,
                    first=offset, count_kind=request.prefer.count,
                    depends=frozenset({VIEWS}) if views else frozenset(), tables=read)


# --- writes -----------------------------------------------------------------------------------

def require_table(catalog: Catalog, name: str) -> Table:
    table = catalog.table(name)
    if table is None:
        hint = _suggest(name, catalog.tables)
        raise UnknownTable(f"Could not find the table 'public.{name}' in the schema cache",
                           hint=hint.replace("the column", "the table") if hint else None)
    return table


def conflict_target(table: Table, conflict: tuple[str, ...] | None) -> tuple[str, ...]:
    """The columns an upsert's ``ON CONFLICT`` names: ``on_conflict=`` or the primary key.
    They must be the primary key or a unique constraint or index (in any order): anything
    else is the caller's mistake (400), found before any SQL, so rows the caller cannot see
    never change the answer."""
    if not conflict:
        if not table.primary_key:
            raise ParseError(f"{table.name} has no primary key: give on_conflict= to upsert",
                             code="PGRST103")
        return table.primary_key
    conflict = tuple(dict.fromkeys(conflict))
    for c in conflict:
        if c not in table.columns:
            raise UnknownColumn(f"column {table.name}.{c} does not exist")
    keys = table.conflict_keys
    if not any(set(conflict) == set(k) for k in keys):
        allowed = ", ".join("(" + ", ".join(sorted(k)) + ")" for k in keys)
        raise RequestError(
            "there is no unique or exclusion constraint matching the ON CONFLICT specification",
            code="42P10",
            hint=(f"on_conflict must name the primary key or a unique constraint of "
                  f"{table.name}: {allowed}") if keys else
                 f"{table.name} has no primary key or unique constraint to upsert on")
    return conflict


def plan_insert(table: Table, columns: tuple[str, ...], rows: tuple[tuple[Value, ...], ...], *,
                conflict: tuple[str, ...] | None = None,
                resolution: Literal["merge", "ignore"] | None = None,
                update: Rule | None = None, also_set: tuple[str, ...] = ()) -> InsertPlan:
    """``update``: the caller's update policy, when a merge may overwrite rows; the rows it
    refuses are left alone by the statement itself (``InsertShape.overwrite``)."""
    key = conflict_target(table, conflict) if resolution is not None else None
    overwrite: tuple[Cond, ...] = ()
    check: tuple[Cond, ...] = ()
    params: tuple[Value, ...] = ()
    if resolution == "merge" and update is not None:
        # A planner only for the policy's own filters (trusted: they may name any column).
        p = _Planner(Catalog(MappingProxyType({table.name: table}), "postgresql"),
                     ApiRequest("POST", table.name, Query()))
        overwrite = tuple(p.policy_cond(table, update.rows))
        check = tuple(p.policy_cond(table, update.check))
        params = tuple(p.params)
    shape = InsertShape(table.name, target_columns(table, columns), len(rows) > 1, key,
                        resolution, target_columns(table), overwrite, check, also_set)
    return InsertPlan(shape, rows, params)


def plan_mutation(catalog: Catalog, request: ApiRequest, action: Literal["update", "delete"],
                  assignments: Sequence[tuple[str, Value]] = (), *,
                  access: Access | None = None) -> MutatePlan:
    """The filters, order and limit of a PATCH or DELETE, planned like a read's root; the
    caller's policy for ``action`` limits the rows it can touch and the columns it sets."""
    table = require_table(catalog, request.target)
    p = _Planner(catalog, request, access)
    p.used_paths.add(())
    q = request.query
    where = tuple(p.cond(table, pred, {}) for pred in q.where.get((), ()))
    if p.access is not None:
        # The columns set were checked on the client's body, before hooks (write_guard).
        where += tuple(p.policy_cond(table, p.access.rule(table.name, action).rows))
    p.check_paths()
    order = tuple(p.order_by(table, t) for t in q.order.get((), ()))
    limit = p.param(q.limit[()]) if () in q.limit else None
    if limit is not None and not table.primary_key:
        raise ParseError(f"limit on {action} needs a primary key on {table.name}")
    sets = tuple((name, p.param(value)) for name, value in assignments)
    shape = MutateShape(action, table.name, "t0", sets, where, order, limit, table.primary_key,
                        target_columns(table))
    return MutatePlan(shape, tuple(p.params))
