"""A filter's literal from the query string → the Python value for its column's type (pure).

PostgreSQL refuses a literal its column cannot hold, with its own message (22P02); SQLite
compares by affinity instead, as ``sqlite3`` would, so a filter there never refuses text in an
INTEGER column (real files hold such rows)."""

from __future__ import annotations

import decimal
import re

from headwater.errors import InvalidValue
from headwater.model.catalog import Column, Dialect
from headwater.model.plan import Value
from headwater.model.values import TEXT_FORMS, from_hex, from_text, is_hex, sqlite_number

_INT = re.compile(r"^\s*[+-]?\d{1,19}\s*$")
_TRUE = frozenset({"t", "true", "y", "yes", "on", "1"})
_FALSE = frozenset({"f", "false", "n", "no", "off", "0"})
_PG_TYPE = {"integer": "integer", "float": "double precision", "numeric": "numeric",
            "boolean": "boolean", "date": "date", "timestamp": "timestamp",
            "timestamptz": "timestamp with time zone", "time": "time", "uuid": "uuid"}


def coerce(column: Column, text: str, dialect: Dialect = "postgresql") -> Value:
    """A literal from the request → the Python value for the column's type (400 if invalid,
    as PostgreSQL and PostgREST refuse it). On SQLite a comparison never fails, whatever the
    column holds: the literal is bound as ``sqlite3`` would read it (``_affinity``)."""
    kind = column.kind
    if dialect == "sqlite":
        return _affinity(column, text)
    try:
        if kind == "integer":
            if not _INT.match(text):
                raise ValueError(text)
            n = int(text)
            bound = 2 ** (column.int_bits - 1)
            if not -bound <= n < bound:
                raise InvalidValue(
                    f'value "{text.strip()}" is out of range for type {column.db_type}',
                    code="22003", details=f"column {column.name}")
            return n
        if kind == "float":
            return float(text)
        if kind == "numeric":
            d = decimal.Decimal(text.strip())
            if not d.is_finite():
                raise ValueError(text)
            return d
        if kind == "boolean":
            low = text.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(text)
        if kind in TEXT_FORMS:
            return from_text(kind, text)
    except (ValueError, decimal.InvalidOperation, OverflowError):
        raise InvalidValue(
            f'invalid input syntax for type {_PG_TYPE.get(kind, kind)}: "{text}"',
            details=f"column {column.name}") from None
    return text


def _affinity(column: Column, text: str) -> Value:
    """A literal for a SQLite column (any of which may hold any type), bound as ``sqlite3`` would read the
    same literal in SQL: a value of the column's kind when it parses as one, a number when it
    looks like one and the column may hold numbers (a view's computed column has no affinity
    to convert text for the comparison, so a number bound as text would compare as text:
    ``order_count < '2'`` is true for every integer), else the text itself, which SQLite
    compares with the text values the column holds instead of refusing it."""
    kind = column.kind
    if kind == "text" or kind == "json":
        return text
    if kind in ("bytes", "other") and is_hex(text):
        return from_hex(text)
    if kind == "boolean":
        low = text.strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
    if kind in TEXT_FORMS:
        try:
            return from_text(kind, text)
        except ValueError:
            return text
    number = sqlite_number(text)
    return text if number is None else number


# --- the planner ------------------------------------------------------------------------------
