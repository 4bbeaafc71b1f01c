"""Several exposed schemas (PostgreSQL, ``db_schemas``): ``Accept-Profile`` on reads and
``Content-Profile`` on writes choose one, as in PostgREST.

The first schema is the default, served by the application's own reads, writer and OpenAPI
document, so a single-schema deployment pays only one header lookup. A schema nobody
exposes is 406 PGRST106, never a silent fallback to the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from headwater.api.openapi import OpenApi
from headwater.errors import SchemaNotExposed
from headwater.service.reads import Reads

READ_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class Profile:
    """What serves one exposed schema other than the default."""

    name: str
    reads: Reads
    documents: OpenApi


@dataclass(frozen=True, slots=True)
class Profiles:
    #: Every exposed schema, the default first.
    names: tuple[str, ...]
    others: Mapping[str, Profile]
    #: Responses name their schema (``Content-Profile``) only when there is a choice. (A
    #: field, not a property: the table endpoint reads it on every request.)
    several: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "several", len(self.names) > 1)

    def choose(self, headers: Mapping[bytes, bytes], method: str) -> str:
        """The schema a request asks for; the default when it names none."""
        raw = headers.get(b"accept-profile" if method in READ_METHODS else b"content-profile")
        if raw is None:
            return self.names[0]
        name = raw.decode("utf-8", "replace").strip()
        if name not in self.names:
            raise SchemaNotExposed("The schema must be one of the following: "
                                   + ", ".join(self.names))
        return name
