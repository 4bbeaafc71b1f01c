"""Text → typed values for the column kinds whose text form is ISO 8601 or a UUID, for
``bytea``/BLOB (PostgreSQL's hex form, which reads also produce), and for SQLite's numeric
affinity.

Filters (``service.coercion.coerce``) and written values (``service.validation``) both read these
forms; this is the one place that says how, including how a time zone is normalized: a
``timestamptz`` without an offset is taken as UTC, and a ``timestamp`` given one is converted
to UTC and stored without it, so both databases compare the same instants.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid

from headwater.model.catalog import ColumnKind

#: Text types asyncpg binds as they are; any other type of kind "text" (an enum,
#: ``interval``, ``inet``…) is parsed by PostgreSQL itself, as are the kind "other".
_PLAIN_TEXT = frozenset({"text", "varchar", "character varying", "character", "char", "bpchar",
                         "name", "citext"})


class JsonText(str):
    """A written value as the JSON text of what the caller sent (an array or object for a
    column of a type PostgreSQL parses itself): PostgreSQL converts it as PostgREST has it
    converted (``json_populate_record``), SQLite stores the text."""

    __slots__ = ()


def pg_parsed(kind: ColumnKind, db_type: str) -> bool:
    """Does PostgreSQL parse this column's written values from JSON (ranges, arrays,
    composites, enums, ``interval``… whatever asyncpg has no codec for that takes text)?"""
    return kind == "other" or (kind == "text"
                               and db_type.split("(")[0].strip() not in _PLAIN_TEXT)


TEXT_FORMS: frozenset[ColumnKind] = frozenset({"date", "timestamp", "timestamptz", "time",
                                                "uuid"})


def from_text(kind: ColumnKind, text: str) -> dt.date | dt.datetime | dt.time | uuid.UUID:
    """``text`` as a value of ``kind`` (one of ``TEXT_FORMS``); ``ValueError`` if it is not."""
    text = text.strip()
    if kind == "date":
        return dt.date.fromisoformat(text)
    if kind in ("timestamp", "timestamptz"):
        ts = dt.datetime.fromisoformat(text)
        if kind == "timestamptz" and ts.tzinfo is None:
            return ts.replace(tzinfo=dt.UTC)
        if kind == "timestamp" and ts.tzinfo is not None:
            return ts.astimezone(dt.UTC).replace(tzinfo=None)
        return ts
    if kind == "time":
        return dt.time.fromisoformat(text)
    if kind == "uuid":
        return uuid.UUID(text)
    raise ValueError(f"{kind} has no text form here")


def from_hex(text: str) -> bytes:
    """PostgreSQL's hex form of ``bytea`` (``\\x`` then pairs of hex digits) → bytes;
    ``ValueError`` if ``text`` is not in that form."""
    if not text.startswith("\\x"):
        raise ValueError("not in hex form")
    digits = text[2:]
    if not _HEX.match(digits):
        raise ValueError("invalid hexadecimal digit")
    return bytes.fromhex(digits)


def is_hex(text: str) -> bool:
    return text.startswith("\\x") and _HEX.match(text[2:]) is not None


# Hex digits in pairs; PostgreSQL also allows whitespace between pairs.
_HEX = re.compile(r"^(?:\s*[0-9a-fA-F]{2})*\s*$")
# What SQLite's NUMERIC affinity converts: a decimal integer or real, optionally signed,
# with surrounding spaces (never hex, ``inf``, ``nan`` or digit separators, which
# Python's ``float`` would take).
_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")
_REAL = re.compile(r"^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$")
_INT64 = 2 ** 63


def sqlite_number(text: str) -> int | float | None:
    """``text`` as SQLite's NUMERIC affinity would store it (an INTEGER if it is one that
    fits in 64 bits, else a REAL), or ``None`` if SQLite would keep it as text."""
    if _INTEGER.match(text):
        n = int(text)
        if -_INT64 <= n < _INT64:
            return n
        return float(n)
    if _REAL.match(text):
        f = float(text)
        return f if math.isfinite(f) else None
    return None


def sqlite_overflows(text: str) -> bool:
    """Would SQLite's NUMERIC affinity turn ``text`` into an infinite REAL (``1e999``)? No
    JSON can carry that back, so such a value is refused rather than stored."""
    s = text.strip()
    return bool(_REAL.match(s) or _INTEGER.match(s)) and not math.isfinite(float(s))
