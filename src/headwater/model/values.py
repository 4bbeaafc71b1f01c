"""Text → typed values for the column kinds whose text form is ISO 8601 or a UUID.

Filters (``service.plan.coerce``) and written values (``service.validation``) both read these
forms; this is the one place that says how, including how a time zone is normalized: a
``timestamptz`` without an offset is taken as UTC, and a ``timestamp`` given one is converted
to UTC and stored without it, so both databases compare the same instants.
"""

from __future__ import annotations

import datetime as dt
import uuid

from headwater.model.catalog import ColumnKind

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
