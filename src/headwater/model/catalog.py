"""The catalog: an immutable picture of the database's tables, columns and relationships.

Pure data; ``headwater.db.catalog.introspect`` builds it from a live database."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, TypeAlias

ColumnKind: TypeAlias = Literal[
    "integer", "float", "numeric", "boolean", "text", "date", "timestamp", "timestamptz",
    "time", "uuid", "json", "bytes", "other",
]
Dialect: TypeAlias = Literal["postgresql", "sqlite"]
Cardinality: TypeAlias = Literal["m2o", "o2m", "o2o"]


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
class Relationship:
    """A way to embed ``target`` from ``source`` (one direction of a foreign key)."""

    source: str
    target: str
    source_columns: tuple[str, ...]
    target_columns: tuple[str, ...]
    cardinality: Cardinality
    constraint: str

    @property
    def to_many(self) -> bool:
        return self.cardinality == "o2m"


@dataclass(frozen=True, slots=True, eq=False)
class Table:
    name: str
    columns: Mapping[str, Column]
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    is_view: bool = False
    #: Unique constraints (which also make a foreign key one-to-one, as in PostgREST).
    unique: tuple[tuple[str, ...], ...] = ()
    #: Unique indexes that back no constraint (whole columns, no predicate): upsert
    #: conflict targets like the keys above, but not one-to-one evidence.
    unique_indexes: tuple[tuple[str, ...], ...] = ()
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
        rels: dict[str, list[Relationship]] = {t.name: [] for t in tables}
        by_name = {t.name: t for t in tables}
        for t in tables:
            for fk in t.foreign_keys:
                if fk.ref_table not in by_name:
                    continue
                one_to_one = set(fk.columns) == set(t.primary_key) or any(
                    set(fk.columns) == set(u) for u in t.unique)
                rels[t.name].append(Relationship(
                    t.name, fk.ref_table, fk.columns, fk.ref_columns, "m2o", fk.name))
                rels[fk.ref_table].append(Relationship(
                    fk.ref_table, t.name, fk.ref_columns, fk.columns,
                    "o2o" if one_to_one else "o2m", fk.name))
        return cls(
            tables=MappingProxyType(dict(by_name)),
            dialect=dialect,
            relationships=MappingProxyType({k: tuple(v) for k, v in rels.items()}),
            functions=MappingProxyType(_by_name(functions or [])),
        )

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)


def _by_name(functions: list[Function]) -> dict[str, tuple[Function, ...]]:
    out: dict[str, list[Function]] = {}
    for f in functions:
        out.setdefault(f.name, []).append(f)
    return {k: tuple(v) for k, v in out.items()}
