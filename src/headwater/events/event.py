"""What an event is, how handlers subscribe to them, and AMQP topic matching (pure)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeAlias

import msgspec

#: ``call``: a database function that may write was called (``rpc.{name}.call``, its
#: arguments as ``new``): the rows it wrote are the function's own business, invisible to
#: Headwater without triggers on the user's tables, which it never installs unasked.
Operation: TypeAlias = Literal["insert", "update", "delete", "call"]


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One written row, as committed. The message body on the wire is this as JSON."""

    #: A UUID, also the AMQP message id; handlers see each id once.
    id: str
    #: Position in the outbox: increasing in the order rows were recorded.
    seq: int
    table: str
    op: Operation
    #: The primary key's columns and values (all columns for a table without one).
    pk: dict[str, Any]
    #: The row after the write (``None`` for a delete).
    new: dict[str, Any] | None = None
    #: The row before: always for a delete; for an update where settings ask for it.
    old: dict[str, Any] | None = None
    #: ``{"role": ..., "claims": {...}}`` of whoever made the write.
    principal: dict[str, Any]
    #: The database transaction id (PostgreSQL's ``txid_current()``; random on SQLite).
    txid: int
    at: datetime

    @property
    def routing_key(self) -> str:
        return f"{self.table}.{self.op}"


decode_event = msgspec.json.Decoder(Event).decode

Handler: TypeAlias = Callable[[Event], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Subscription:
    """A handler and the topic patterns it receives; ``name`` names its durable queue."""

    name: str
    patterns: tuple[str, ...]
    handler: Handler


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic semantics: words split on ``.``; ``*`` is one word, ``#`` zero or more."""
    return _match(tuple(pattern.split(".")), tuple(key.split(".")))


@functools.lru_cache(maxsize=4096)
def _match(pattern: tuple[str, ...], key: tuple[str, ...]) -> bool:
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, key[i:]) for i in range(len(key) + 1))
    return bool(key) and head in ("*", key[0]) and _match(rest, key[1:])
