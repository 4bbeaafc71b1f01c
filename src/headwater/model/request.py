"""The parsed request: what ``headwater.model.grammar`` makes of a query string and headers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

Path: TypeAlias = tuple[str, ...]
MediaType: TypeAlias = Literal["json", "object", "csv"]
#: A JSON path after a column: (``->`` or ``->>``, key) steps; a key that reads as an integer
#: (``-1``, ``0``) indexes an array, as in PostgREST.
JsonPath: TypeAlias = tuple[tuple[Literal["->", "->>"], str], ...]
Aggregate: TypeAlias = Literal["count", "sum", "avg", "min", "max"]


def is_index(key: str) -> bool:
    """Does a JSON path step index an array (``0``, ``-1``; at most 9 digits) rather than
    name a key (``0xy1``, ``23-xy-45``)?"""
    digits = key[1:] if key.startswith("-") else key
    return 0 < len(digits) <= 9 and digits.isascii() and digits.isdigit()
AGGREGATES: frozenset[str] = frozenset({"count", "sum", "avg", "min", "max"})


@dataclass(frozen=True, slots=True)
class Field:
    """A column in ``select``; ``name == "*"`` means every column, ``name == ""`` (with
    ``aggregate == "count"``) is ``count()``. ``alias:name->json::cast.aggregate()::agg_cast``.
    """

    name: str
    alias: str | None = None
    json: JsonPath = ()
    #: The type the column (or JSON path) is cast to, before any aggregate.
    cast: str | None = None
    aggregate: Aggregate | None = None
    #: The type an aggregate's result is cast to.
    agg_cast: str | None = None

    @property
    def key(self) -> str:
        """The output key PostgREST gives it: the alias, else the aggregate, else the last
        JSON key that is no array index, else the column."""
        if self.alias:
            return self.alias
        if self.aggregate:
            return self.aggregate
        for _arrow, key in reversed(self.json):
            if not is_index(key):
                return key
        return self.name


@dataclass(frozen=True, slots=True)
class Embed:
    """A related resource in ``select``: ``alias:name!hint!inner(...)``."""

    name: str
    select: tuple[SelectItem, ...]
    alias: str | None = None
    hint: str | None = None
    inner: bool = False
    #: ``...name(...)``: the embed's fields go into the parent object (PostgREST's spread).
    spread: bool = False

    @property
    def key(self) -> str:
        return self.alias or self.name


SelectItem: TypeAlias = Field | Embed


@dataclass(frozen=True, slots=True)
class Condition:
    column: str
    op: str
    #: A tuple for ``in`` and for a quantified operator (``like(any).{a,b}``), else the
    #: literal text exactly as sent.
    value: str | tuple[str, ...]
    negated: bool = False
    #: What the operator's parentheses held: ``any``/``all`` (a quantifier) or, for the
    #: full-text operators, the text search configuration (``fts(english)``).
    modifier: str | None = None
    #: ``data->>color=eq.red``: the JSON path after the column.
    json: JsonPath = ()


@dataclass(frozen=True, slots=True)
class Logic:
    op: Literal["and", "or"]
    items: tuple[Condition | Logic, ...]
    negated: bool = False


Predicate: TypeAlias = Condition | Logic


@dataclass(frozen=True, slots=True)
class OrderTerm:
    column: str
    desc: bool = False
    nulls: Literal["first", "last"] | None = None
    json: JsonPath = ()


@dataclass(frozen=True, slots=True)
class Preferences:
    count: Literal["exact", "planned", "estimated"] | None = None
    returning: Literal["minimal", "headers-only", "representation"] | None = None
    resolution: Literal["merge-duplicates", "ignore-duplicates"] | None = None
    missing: Literal["default", "null"] | None = None
    handling: Literal["lenient", "strict"] | None = None
    max_affected: int | None = None
    tx: Literal["commit", "rollback"] | None = None


@dataclass(frozen=True, slots=True)
class Query:
    """Everything the query string says, keyed by embedding path (``()`` is the root)."""

    select: tuple[SelectItem, ...] = (Field("*"),)
    where: Mapping[Path, tuple[Predicate, ...]] = field(default_factory=dict)
    order: Mapping[Path, tuple[OrderTerm, ...]] = field(default_factory=dict)
    limit: Mapping[Path, int] = field(default_factory=dict)
    offset: Mapping[Path, int] = field(default_factory=dict)
    on_conflict: tuple[str, ...] | None = None
    columns: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ApiRequest:
    method: str
    target: str
    query: Query
    prefer: Preferences = Preferences()
    media: MediaType = "json"
    #: ``Range`` header as (first, last-or-None).
    range: tuple[int, int | None] | None = None
