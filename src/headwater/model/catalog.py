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

    @property
    def conflict_keys(self) -> tuple[tuple[str, ...], ...]:
        """The column sets ``ON CONFLICT`` can name: primary key, unique constraints and
        unique indexes."""
        keys = (self.primary_key,) if self.primary_key else ()
        return keys + self.unique + self.unique_indexes


@dataclass(frozen=True, slots=True, eq=False)
class Catalog:
    tables: Mapping[str, Table]
    dialect: Literal["postgresql", "sqlite"]
    relationships: Mapping[str, tuple[Relationship, ...]] = field(
        default_factory=lambda: MappingProxyType({}))

    @classmethod
    def build(cls, tables: list[Table], dialect: Literal["postgresql", "sqlite"]) -> Catalog:
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
        )

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)
