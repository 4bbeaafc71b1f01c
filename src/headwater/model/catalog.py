"""The catalog: an immutable picture of the database's tables, columns and relationships.

Pure data; ``headwater.db.catalog.introspect`` builds it from a live database."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, TypeAlias

ColumnKind: TypeAlias = Literal[
    "integer", "float", "numeric", "boolean", "text", "date", "timestamp", "timestamptz",
    "time", "uuid", "json", "bytes", "other",
]
Dialect: TypeAlias = Literal["postgresql", "sqlite"]
Cardinality: TypeAlias = Literal["m2o", "o2m", "o2o", "m2m"]


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: ColumnKind
    db_type: str
    nullable: bool = True
    has_default: bool = False
    max_length: int | None = None
    primary_key: bool = False
    #: Largest magnitude an integer column holds (PostgreSQL's int2/int4/int8; SQLite: 64 bits).
    int_bits: int = 64
    #: SQLite's flexible typing (any column of a table that is not STRICT, and any view
    #: column): the column may hold values of any type, so a filter or written value that does
    #: not parse as ``kind`` is compared or stored as SQLite would (by affinity), not refused.
    flexible: bool = False


@dataclass(frozen=True, slots=True)
class ForeignKey:
    name: str
    table: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Junction:
    """The table a many-to-many relationship goes through: its ``source_columns`` reference
    the source's, its ``target_columns`` the target's (by the two named constraints)."""

    table: str
    source_constraint: str
    target_constraint: str
    source_columns: tuple[str, ...]
    target_columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Relationship:
    """A way to embed ``target`` from ``source``: one direction of a foreign key (of a table,
    or inherited by a view whose columns are the key's), two through a junction table
    (``m2m``), or a function of the source's row (``function``: a computed relationship)."""

    source: str
    target: str
    source_columns: tuple[str, ...]
    target_columns: tuple[str, ...]
    cardinality: Cardinality
    constraint: str
    junction: Junction | None = None
    #: A computed relationship: the function called with the source's row (PostgreSQL).
    function: str | None = None
    #: Is ``target`` a view (a column or constraint named as the target never picks one).
    target_is_view: bool = False

    @property
    def to_many(self) -> bool:
        return self.cardinality in ("o2m", "m2m")

    @property
    def is_self(self) -> bool:
        return self.source == self.target and self.function is None


@dataclass(frozen=True, slots=True, eq=False)
class Table:
    name: str
    columns: Mapping[str, Column]
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    is_view: bool = False
    #: SQLite: the operations (insert, update, delete) a view's INSTEAD OF triggers perform;
    #: SQLite changes a view no other way.
    instead_of: frozenset[str] = frozenset()
    #: Unique constraints (which also make a foreign key one-to-one, as in PostgREST).
    unique: tuple[tuple[str, ...], ...] = ()
    #: Unique indexes that back no constraint (whole columns, no predicate): upsert
    #: conflict targets like the keys above, but not one-to-one evidence.
    unique_indexes: tuple[tuple[str, ...], ...] = ()
    #: A view's columns that are a table's column as they are (no expression): view column
    #: → (table, column), followed through views of views. Its relationships come from them.
    sources: Mapping[str, tuple[str, str]] = field(
        default_factory=lambda: MappingProxyType({}))
    #: Computed fields (PostgreSQL functions of this table's row returning one value):
    #: selectable and filterable like columns, never part of ``*``.
    computed: Mapping[str, Column] = field(default_factory=lambda: MappingProxyType({}))
    #: SQLite: (column, FTS5 table, its content_rowid column) for each column an
    #: external-content FTS5 table indexes (``db.fts``).
    full_text: tuple[tuple[str, str, str], ...] = ()

    @property
    def conflict_keys(self) -> tuple[tuple[str, ...], ...]:
        """The column sets ``ON CONFLICT`` can name: primary key, unique constraints and
        unique indexes."""
        keys = (self.primary_key,) if self.primary_key else ()
        return keys + self.unique + self.unique_indexes


Volatility: TypeAlias = Literal["immutable", "stable", "volatile"]


@dataclass(frozen=True, slots=True)
class Parameter:
    """One input parameter of a database function; ``name`` is "" when it has none."""

    name: str
    #: The type as PostgreSQL spells it (``format_type``), used in the call's SQL.
    db_type: str
    has_default: bool = False
    variadic: bool = False
    is_array: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class Function:
    """A database function of the served schema, callable as ``/rpc/{name}``.

    ``returns`` is "scalar" (one value), "composite" (one row), "set" (rows: ``SETOF`` a
    table or composite, ``RETURNS TABLE``), "scalars" (``SETOF`` a base type) or "void".
    ``columns`` are the returned row's columns (composite and set); ``table`` names the
    served table a ``SETOF`` returns, whose relationships and policies then apply."""

    name: str
    parameters: tuple[Parameter, ...]
    returns: Literal["scalar", "composite", "set", "scalars", "void"]
    return_type: str
    volatility: Volatility
    columns: Mapping[str, Column] = field(default_factory=lambda: MappingProxyType({}))
    table: str | None = None
    #: The kind of a scalar result (a computed field's, when it takes a table's row).
    kind: ColumnKind = "other"

    @property
    def required(self) -> frozenset[str]:
        return frozenset(p.name for p in self.parameters if not p.has_default)

    @property
    def read_only(self) -> bool:
        return self.volatility != "volatile"

    @property
    def single_unnamed(self) -> bool:
        """One parameter without a name, of a type that takes the whole body (PostgREST)."""
        return (len(self.parameters) == 1 and not self.parameters[0].name
                and self.parameters[0].db_type in ("json", "jsonb"))


@dataclass(frozen=True, slots=True, eq=False)
class Catalog:
    tables: Mapping[str, Table]
    dialect: Literal["postgresql", "sqlite"]
    relationships: Mapping[str, tuple[Relationship, ...]] = field(
        default_factory=lambda: MappingProxyType({}))
    #: Database functions by name; overloads share a name.
    functions: Mapping[str, tuple[Function, ...]] = field(
        default_factory=lambda: MappingProxyType({}))

    @classmethod
    def build(cls, tables: list[Table], dialect: Literal["postgresql", "sqlite"],
              functions: list[Function] | None = None) -> Catalog:
        by_name = {t.name: t for t in tables}
        functions = functions or []
        computed = computed_fields(by_name, functions)
        if computed:
            by_name = {n: dataclasses.replace(t, computed=MappingProxyType(computed[n]))
                       if n in computed else t for n, t in by_name.items()}
        return cls(
            tables=MappingProxyType(by_name),
            dialect=dialect,
            relationships=MappingProxyType(relationships(by_name, functions)),
            functions=MappingProxyType(_by_name(functions)),
        )

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)


def _endpoints(tables: Mapping[str, Table], table: str, columns: tuple[str, ...],
               ) -> list[tuple[str, tuple[str, ...]]]:
    """Where a key's ``columns`` of ``table`` can be seen: the table itself and every view
    that has all of them as its own columns (once per way of naming them, as PostgREST)."""
    out = [(table, columns)]
    for view in tables.values():
        if not view.sources:
            continue
        choices: list[list[str]] = []
        for col in columns:
            names = [v for v, src in view.sources.items() if src == (table, col)]
            if not names:
                break
            choices.append(names)
        else:
            out.extend((view.name, tuple(combo)) for combo in itertools.product(*choices))
    return out


def relationships(tables: Mapping[str, Table], functions: list[Function] | None = None,
                  ) -> dict[str, tuple[Relationship, ...]]:
    """Every relationship PostgREST finds: both directions of each foreign key, between the
    tables and the views that show the key's columns, many-to-many through junction tables,
    and computed relationships (functions of a row)."""
    rels: dict[str, list[Relationship]] = {t: [] for t in tables}
    forward: list[Relationship] = []
    for t in tables.values():
        for fk in t.foreign_keys:
            if fk.ref_table not in tables:
                continue
            one_to_one = set(fk.columns) == set(t.primary_key) or any(
                set(fk.columns) == set(u) for u in t.unique)
            for src, cols in _endpoints(tables, t.name, fk.columns):
                for dst, ref in _endpoints(tables, fk.ref_table, fk.ref_columns):
                    src_view, dst_view = tables[src].is_view, tables[dst].is_view
                    m2o = Relationship(src, dst, cols, ref, "m2o", fk.name,
                                       target_is_view=dst_view)
                    rels[src].append(m2o)
                    rels[dst].append(Relationship(dst, src, ref, cols,
                                                  "o2o" if one_to_one else "o2m", fk.name,
                                                  target_is_view=src_view))
                    forward.append(m2o)
    by_source: dict[str, list[Relationship]] = {}
    for r in forward:
        by_source.setdefault(r.source, []).append(r)
    for name, outgoing in by_source.items():
        junction = tables[name]
        if junction.is_view or len(outgoing) < 2:
            continue
        keys = [set(k) for k in (junction.primary_key, *junction.unique) if k]
        for a, b in itertools.permutations(outgoing, 2):
            if b.constraint == a.constraint:
                continue
            if not any(set(a.source_columns) | set(b.source_columns) <= k for k in keys):
                continue
            rels[a.target].append(Relationship(
                a.target, b.target, a.target_columns, b.target_columns, "m2m", junction.name,
                junction=Junction(junction.name, a.constraint, b.constraint,
                                  a.source_columns, b.source_columns),
                target_is_view=b.target_is_view))
    for f in functions or ():
        target = f.table
        source = _row_argument(tables, f)
        if source is None or target is None or f.returns not in ("set", "composite"):
            continue
        rels[source].append(Relationship(
            source, target, (), (), "o2m" if f.returns == "set" else "m2o", f.name,
            function=f.name, target_is_view=tables[target].is_view))
    return {k: tuple(v) for k, v in rels.items()}


def _row_argument(tables: Mapping[str, Table], f: Function) -> str | None:
    """The table whose row type is ``f``'s one argument (a computed field or relationship)."""
    if len(f.parameters) != 1 or f.parameters[0].variadic:
        return None
    arg = f.parameters[0].db_type
    name = arg.rsplit(".", 1)[-1].strip('"')
    return name if name in tables and f.volatility != "volatile" else None


def computed_fields(tables: Mapping[str, Table], functions: list[Function],
                    ) -> dict[str, dict[str, Column]]:
    """Functions of one table's row that return one value: that table's computed fields."""
    out: dict[str, dict[str, Column]] = {}
    for f in functions:
        table = _row_argument(tables, f)
        if table is None or f.returns != "scalar" or f.name in tables[table].columns:
            continue
        out.setdefault(table, {})[f.name] = Column(
            f.name, f.kind, f.return_type, nullable=True)
    return out


def _by_name(functions: list[Function]) -> dict[str, tuple[Function, ...]]:
    out: dict[str, list[Function]] = {}
    for f in functions:
        out.setdefault(f.name, []).append(f)
    return {k: tuple(v) for k, v in out.items()}
