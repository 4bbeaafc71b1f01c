"""What executing a plan hands back: rows as a finished body or a stream, and write results."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from headwater.model.request import MediaType


class RowStream:
    """A body that holds a database snapshot until it is consumed or closed."""

    def __init__(self, chunks: AsyncIterator[bytes], stack: contextlib.AsyncExitStack) -> None:
        self._chunks = chunks
        self._stack = stack

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks

    async def aclose(self) -> None:
        # Closing the generator first lets its cursor finish before the snapshot ends.
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await aclose()
        await self._stack.aclose()


@dataclass(slots=True)
class ReadResult:
    rows: int
    total: int | None
    first: int
    body: bytes | None = None
    stream: RowStream | None = None
    #: False for a replica's answer that may predate a write this node has seen: it is sent,
    #: never stored in the cache.
    cacheable: bool = True
    #: ``replica`` or ``primary`` when read replicas are configured (else None).
    served_by: str | None = None


@dataclass(slots=True)
class WriteResult:
    rows: list[dict[str, Any]]
    body: bytes | None = None
    location: str | None = None
    tables: frozenset[str] = field(default_factory=frozenset)

    #: Rows written but not read back (nobody needed them; see ``Writer._counted``).
    counted: int = 0
    #: A merge upsert's rows that were inserted, not updated (None: not a merge upsert).
    inserted: int | None = None

    @property
    def affected(self) -> int:
        return len(self.rows) + self.counted


@dataclass(slots=True)
class ReadAnswer:
    """A read as the service layer answers it: fresh from the database or from the cache."""

    media: MediaType
    rows: int
    total: int | None
    first: int
    body: bytes | None = None
    stream: RowStream | None = None
    #: The body's entity tag (None for streams).
    etag: str | None = None
    #: ``HIT``, ``MISS`` or ``STALE`` when the cache took part.
    x_cache: str | None = None
    cache_control: str | None = None
    #: Seconds since a stale copy was stored.
    age: int | None = None
    #: ``replica`` or ``primary``: which server answered a fresh read (replicas configured).
    served_by: str | None = None
