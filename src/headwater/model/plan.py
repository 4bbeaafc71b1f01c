"""Plans: what the planner makes of a request, and what SQL building and cache keys consume.

A plan is split in two: a hashable *shape* (tables, columns, operators, parameter slots)
and the list of bound *values*. The SQL for a shape is built once and cached, and the cache
layer keys on the shape plus the values, so the same query written two ways shares one entry.
Every identifier in a plan was looked up in the catalog (invariant 4).
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from headwater.model.catalog import ColumnKind, Table
from headwater.model.request import Aggregate, MediaType

Value: TypeAlias = (bool | int | float | str | bytes | decimal.Decimal | dt.date | dt.datetime
                    | dt.time | uuid.UUID | tuple["Value", ...] | None)


@dataclass(frozen=True, slots=True)
class JsonSteps:
    """A JSON path into a column, its keys as parameters (they are request text). PostgreSQL:
    one parameter a step (``-> $3::text``, ``-> $4::int`` for an array index); SQLite: one
    parameter holding the whole path (``$."a"[0]``). ``text``: the last step is ``->>``."""

    params: tuple[int, ...]
    #: PostgreSQL: which steps are array indexes.
    indexes: tuple[bool, ...]
    text: bool


@dataclass(frozen=True, slots=True)
class Compare:
    column: str
    kind: ColumnKind
    op: str
    param: int
    negated: bool = False
    #: ``any``/``all`` for a quantified operator (``like(any)``): ``param`` holds a tuple.
    quantifier: Literal["any", "all"] | None = None
    #: Full-text search: the parameter slot of the configuration (``fts(english)``).
    config: int | None = None
    #: PostgreSQL: the column's type (from the catalog) that an array or range literal is
    #: read as (``@>``, ``&&``, ``<<``...); ``tsvector`` for a column searched as it is.
    cast: str | None = None
    #: SQLite full-text search: (FTS5 table, the table's column its rowids are).
    index: tuple[str, str] | None = None
    json: JsonSteps | None = None


@dataclass(frozen=True, slots=True)
class IsTest:
    column: str
    kind: ColumnKind
    value: str
    negated: bool = False
    json: JsonSteps | None = None


@dataclass(frozen=True, slots=True)
class BoolExpr:
    op: Literal["and", "or"]
    items: tuple[Cond, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class EmbedExists:
    """``rel=not.is.null`` / ``!inner`` (exists) or ``rel=is.null`` (not exists)."""

    node: ReadNode
    negated: bool = False


Cond: TypeAlias = Compare | IsTest | BoolExpr | EmbedExists


@dataclass(frozen=True, slots=True)
class OutputColumn:
    """A column of the response. ``kind`` is what the value is once ``json``, ``cast`` and
    ``aggregate`` applied (SQLite renders booleans and JSON by it); ``column == ""`` with
    ``aggregate == "count"`` is ``count(*)``. Casts are SQL type names the planner checked."""

    key: str
    column: str
    kind: ColumnKind
    json: JsonSteps | None = None
    cast: str | None = None
    aggregate: Aggregate | None = None
    agg_cast: str | None = None


@dataclass(frozen=True, slots=True)
class OutputEmbed:
    key: str
    node: ReadNode
    #: ``...embed(...)``: its keys go into the parent object (to-many: one array a key).
    spread: bool = False


Output: TypeAlias = OutputColumn | OutputEmbed


@dataclass(frozen=True, slots=True)
class OrderBy:
    column: str
    desc: bool = False
    nulls: Literal["first", "last"] | None = None
    json: JsonSteps | None = None


@dataclass(frozen=True, slots=True)
class Via:
    """The junction table a many-to-many embed goes through: (junction column, node column)
    pairs join it to the node, (junction column, parent column) pairs to the parent; ``where``
    is the caller's row policy on it (its conditions name the junction's columns)."""

    table: str
    to_node: tuple[tuple[str, str], ...]
    to_parent: tuple[tuple[str, str], ...]
    where: tuple[Cond, ...] = ()


@dataclass(frozen=True, slots=True)
class ReadNode:
    table: str
    alias: str
    outputs: tuple[Output, ...]
    where: tuple[Cond, ...] = ()
    order: tuple[OrderBy, ...] = ()
    limit: int | None = None
    offset: int | None = None
    #: (column of this node, column of the parent node) pairs joining it to its parent.
    join: tuple[tuple[str, str], ...] = ()
    to_many: bool = False
    inner: bool = False
    parent_alias: str = ""
    via: Via | None = None
    #: A computed relationship: rows come from this function of the parent's row.
    function: str | None = None
    #: The table's computed fields (functions of its row), which columns here may name.
    computed: tuple[str, ...] = ()
    #: An empty embed (``customers()``): it filters (``!inner``) but adds no key.
    hidden: tuple[ReadNode, ...] = ()

    def embeds(self) -> tuple[ReadNode, ...]:
        return tuple(o.node for o in self.outputs if isinstance(o, OutputEmbed))

    @property
    def grouped(self) -> bool:
        """Does an output aggregate (then the other columns are its GROUP BY)?"""
        return any(isinstance(o, OutputColumn) and o.aggregate is not None
                   for o in self.outputs)

    def output_keys(self) -> list[str]:
        """The keys of one output object, a spread embed's keys in its place."""
        out: list[str] = []
        for o in self.outputs:
            if isinstance(o, OutputEmbed) and o.spread:
                out.extend(o.node.output_keys())
            else:
                out.append(o.key)
        return out

    def tables(self) -> frozenset[str]:
        """Every table this node reads, embeds and filters included."""
        out = {self.table}
        if self.via is not None:
            out.add(self.via.table)
        for o in self.outputs:
            if isinstance(o, OutputEmbed):
                out |= o.node.tables()
        for c in walk(self.where):
            if isinstance(c, EmbedExists):
                out |= c.node.tables()
        return frozenset(out)


def walk(conds: Sequence[Cond]) -> list[Cond]:
    out: list[Cond] = []
    for c in conds:
        out.append(c)
        if isinstance(c, BoolExpr):
            out.extend(walk(c.items))
    return out


@dataclass(frozen=True, slots=True)
class ReadPlan:
    root: ReadNode
    params: tuple[Value, ...]
    count: bool
    media: MediaType
    #: Root ``limit`` and ``offset`` as parameter slots; the executor may tighten the limit.
    limit_param: int
    offset_param: int
    #: Where the returned rows start, for ``Content-Range``.
    first: int
    #: ``Prefer: count=`` as asked (``count`` says whether to count at all).
    count_kind: Literal["exact", "planned", "estimated"] | None = None
    #: Beyond the tables read, what a write to changes the answer: ``VIEWS`` when a view is
    #: read (which tables lie under a view is not tracked; every write moves ``VIEWS``).
    depends: frozenset[str] = frozenset()
    #: ``root.tables()``, computed once (the cache asks for it several times a read); empty
    #: when not given, as a read always reads some table.
    tables: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.tables:
            object.__setattr__(self, "tables", self.root.tables())


#: The version every write moves when the schema has views, and every read of a view is
#: cached under: a view's answer changes with writes to the tables under it.
VIEWS = "__views__"


# --- writes -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TargetColumn:
    name: str
    kind: ColumnKind
    db_type: str


@dataclass(frozen=True, slots=True)
class InsertShape:
    table: str
    columns: tuple[TargetColumn, ...]
    #: Many rows travel as one array per column (PostgreSQL) or one JSON document (SQLite).
    many: bool
    conflict: tuple[str, ...] | None = None
    resolution: Literal["merge", "ignore"] | None = None
    returning: tuple[TargetColumn, ...] = ()
    #: A merge's update policy, in its ``DO UPDATE … WHERE``: the row as it is must pass
    #: ``overwrite`` (USING) and the row as it will be ``check`` (WITH CHECK). Their
    #: parameters are ``InsertPlan.params``, numbered from 0 after the rows' own.
    overwrite: tuple[Cond, ...] = ()
    check: tuple[Cond, ...] = ()
    #: A merge's columns the rows do not carry that it still sets, to the proposed row's value
    #: (their default): ``Prefer: missing=default`` on rows of different keys (PostgREST).
    also_set: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InsertPlan:
    shape: InsertShape
    rows: tuple[tuple[Value, ...], ...]
    params: tuple[Value, ...] = ()

    @property
    def guarded(self) -> bool:
        """Does the statement skip conflicting rows the update policy refuses? Then every row
        sent must come back (inserted or updated), or one was refused."""
        s = self.shape
        # A body of only the key updates it to itself (as PostgREST), so it is guarded too.
        return bool(s.overwrite or s.check) and s.resolution == "merge" and bool(s.columns)


@dataclass(frozen=True, slots=True)
class MutateShape:
    """An UPDATE or DELETE, with PostgREST's optional ``order`` + ``limit``."""

    action: Literal["update", "delete"]
    table: str
    alias: str
    assignments: tuple[tuple[str, int], ...]
    where: tuple[Cond, ...]
    order: tuple[OrderBy, ...] = ()
    limit: int | None = None
    key: tuple[str, ...] = ()
    returning: tuple[TargetColumn, ...] = ()


@dataclass(frozen=True, slots=True)
class MutatePlan:
    shape: MutateShape
    params: tuple[Value, ...]


def target_columns(table: Table, names: Sequence[str] | None = None) -> tuple[TargetColumn, ...]:
    cols = table.columns.values() if names is None else (table.columns[n] for n in names)
    return tuple(TargetColumn(c.name, c.kind, c.db_type) for c in cols)
