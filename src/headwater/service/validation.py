"""Write validation: JSON values from a request body checked against the catalog.

The problems in a request are reported at once, each naming its field, before any SQL runs:
the first ``MAX_PROBLEMS`` of them, and how many more there were (a body of a million empty
objects must not become an error response of hundreds of megabytes). Pure, but for the
worker thread ``check_rows_off_loop`` moves a large body's validation to.
"""

from __future__ import annotations

import asyncio
import decimal
import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from headwater.errors import InvalidBody
from headwater.errors import InvalidField as _Bad
from headwater.model.catalog import Column, ColumnKind, Table
from headwater.model.plan import Value
from headwater.model.values import (
    TEXT_FORMS,
    JsonText,
    from_hex,
    from_text,
    is_hex,
    sqlite_overflows,
)

Mode = Literal["insert", "update"]
#: Problems listed in an error's details; the rest are only counted.
MAX_PROBLEMS = 100
#: Fields (rows times keys of the first row) from which a body is validated on a worker thread.
#: Validation costs about 1 µs a field, so below this it takes under ~5 ms and the hop to a
#: thread (~0.1 ms) would be most of the cost; above, the event loop keeps serving while it
#: runs (a 3 MB body took it 4 s on the loop's thread). Measured against validating chunks of
#: 5,000 rows on the loop with a yield between them, for a million empty objects (and 200,000
#: valid rows): the thread took 0.52 s (0.31 s) with the loop never stalled over 11 ms (15 ms),
#: the chunks 0.63 s (0.36 s) with stalls of 27 ms (45 ms) and a merge of partial results.
THREAD_FIELDS = 5000
_FLOAT_MAX = decimal.Decimal("1.7976931348623157e308")


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str
    code: str


def _text(value: Any, col: Column) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _Bad(f"expected a string, got {type(value).__name__}")
    text = value if isinstance(value, str) else str(value)
    if col.max_length is not None and len(text) > col.max_length:
        raise _Bad(f"value too long for type {col.db_type} (at most {col.max_length} characters)",
                   "22001")
    if "\x00" in text:
        raise _Bad("text may not contain the NUL character", "22021")
    return text


def _iso(value: Any, kind: ColumnKind) -> Value:
    what = "timestamp" if kind == "timestamptz" else kind
    if not isinstance(value, str):
        raise _Bad(f"expected an ISO 8601 {what} string")
    try:
        return from_text(kind, value)
    except ValueError:
        raise _Bad(f'invalid input syntax for type {what}: "{value}"') from None


def check_value(col: Column, value: Any) -> Value:
    """One JSON value → the Python value for the column, or ``_Bad``."""
    if value is None:
        if not col.nullable:
            raise _Bad(f'null value in column "{col.name}" violates not-null constraint', "23502")
        return None
    if col.flexible:
        return _flexible(col, value)
    return _typed(col, value)


def _flexible(col: Column, value: Any) -> Value:
    """A value for a column of SQLite's flexible typing: the declared kind's value when it is
    one; else a string or number is stored as SQLite stores it (by the column's affinity), as
    real files hold text in INTEGER columns. A BLOB is written in its hex form, as read."""
    if col.kind == "bytes" and isinstance(value, str) and value.startswith("\\x"):
        return _bytes(value)  # hex form, or a 400 if it is malformed
    if col.kind == "other" and isinstance(value, str) and is_hex(value):
        return from_hex(value)
    if col.kind in ("bytes", "other"):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise _Bad(f"expected a string or a number, got {type(value).__name__}")
        if isinstance(value, str) and "\x00" in value:
            raise _Bad("text may not contain the NUL character", "22021")
        return value
    try:
        return _typed(col, value)
    except _Bad as bad:
        # Only the type gives way: out-of-range numbers and over-long text stay refused.
        if bad.code != "22P02" or isinstance(value, bool) \
                or not isinstance(value, (str, int, float)):
            raise
        if isinstance(value, str) and "\x00" in value:
            raise _Bad("text may not contain the NUL character", "22021") from None
        if isinstance(value, str) and col.kind != "text" and sqlite_overflows(value):
            raise _Bad(f"value {value[:40]} is out of range for type {col.db_type}",
                       "22003") from None
        return value


def _typed(col: Column, value: Any) -> Value:
    kind = col.kind
    if kind == "integer":
        digits = value.strip().lstrip("+-") if isinstance(value, str) else ""
        # ASCII only: "¹" is a digit to str.isdigit but not to int() (nor to PostgreSQL)
        if digits.isascii() and digits.isdigit():
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"expected an integer, got {value!r}"[:200])
        bound = 2 ** (col.int_bits - 1)
        if not -bound <= value < bound:
            raise _Bad(f"value {value} is out of range for type {col.db_type}", "22003")
        return value
    if kind in ("float", "numeric"):
        if isinstance(value, bool):
            raise _Bad("expected a number, got a boolean")
        try:
            num = decimal.Decimal(value.strip() if isinstance(value, str) else str(value))
        except (decimal.InvalidOperation, AttributeError, TypeError, ValueError):
            raise _Bad(f"expected a number, got {value!r}"[:200]) from None
        if not num.is_finite() and kind == "numeric":
            raise _Bad("numeric values must be finite")
        if num.is_finite() and abs(num) > _FLOAT_MAX:
            # JSON (and SQLite, which stores numerics as doubles) cannot carry it back
            raise _Bad(f"value {str(value)[:40]} is out of range for type {col.db_type}",
                       "22003")
        return float(num) if kind == "float" else num
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _Bad(f"expected a boolean, got {value!r}"[:200])
    if kind in TEXT_FORMS:
        return _iso(value, kind)
    if kind == "json":
        text = msgspec.json.encode(value).decode()
        if "\\u0000" in text:
            # PostgreSQL's jsonb cannot hold NUL; refuse it on both databases alike.
            raise _Bad("JSON text may not contain the NUL character (\\u0000)", "22P05")
        return text
    if kind == "bytes":
        return _bytes(value)
    if kind == "other":
        return _parsed(col, value)
    return _text(value, col)


# A range's text form, roughly: ``empty``, or bounds in brackets around a comma (PostgreSQL
# reads the bounds themselves and names what is wrong with them).
_RANGE = re.compile(r"^\s*(?:empty|[\[(].*,.*[\])])\s*$", re.IGNORECASE | re.DOTALL)
_ENCODE = msgspec.json.Encoder().encode


def _parsed(col: Column, value: Any) -> Value:
    """A value of a type PostgreSQL reads itself (``headwater.model.values.pg_parsed``): the
    forms of arrays and ranges are checked here, to name the column; the rest is left to
    PostgreSQL (an array or object travels as its JSON: ``JsonText``)."""
    t = col.db_type
    if t.endswith("[]"):
        if isinstance(value, list):
            return _json_text(value)
        if isinstance(value, str) and value.lstrip().startswith(("{", "[")):
            return _text(value, col)
        raise _Bad(f"malformed array literal: expected a JSON array or an array literal such "
                   f'as "{{a,b}}" for type {t}, got {_shown(value)}')
    if t.endswith("range") and not t.endswith("multirange"):
        if isinstance(value, str) and _RANGE.match(value):
            return _text(value, col)
        raise _Bad(f'malformed range literal: expected "[lower,upper)" or "empty" for type '
                   f"{t}, got {_shown(value)}")
    if isinstance(value, (list, dict, bool)):
        return _json_text(value)
    return _text(value, col)


def _json_text(value: Any) -> JsonText:
    text = _ENCODE(value).decode()
    if "\\u0000" in text:
        raise _Bad("text may not contain the NUL character", "22021")
    return JsonText(text)


def _shown(value: Any) -> str:
    return _ENCODE(value).decode()[:60]


def _bytes(value: Any) -> bytes:
    """``bytea`` as PostgREST takes it: the hex form (``\\x…``, which reads produce), or
    plain text without backslashes (PostgreSQL's escape form, whose backslash escapes are
    not worth a second syntax here)."""
    if not isinstance(value, str):
        raise _Bad(f"expected a string in hex form (\\x…), got {type(value).__name__}")
    if value.startswith("\\x"):
        try:
            return from_hex(value)
        except ValueError as exc:
            raise _Bad(f'invalid input syntax for type bytea: {exc}') from None
    if "\\" in value:
        raise _Bad('invalid input syntax for type bytea: write bytes in hex form ("\\x…")')
    return value.encode()


Checker = Callable[[Any], Value]


@functools.lru_cache(maxsize=4096)
def checker(col: Column) -> Checker:
    """``check_value`` for one column, with a fast path for the JSON type a well-formed body
    sends (a bulk insert validates every field of every row: this is most of its cost)."""
    slow = functools.partial(check_value, col)
    kind = col.kind
    if kind == "integer":
        lo, hi = -(2 ** (col.int_bits - 1)), 2 ** (col.int_bits - 1)

        def integer(value: Any) -> Value:
            if type(value) is int and lo <= value < hi:
                return value
            return slow(value)
        return integer
    if kind == "numeric":
        def numeric(value: Any) -> Value:
            t = type(value)
            if t is int or (t is float and math.isfinite(value)):
                num = decimal.Decimal(value if t is int else repr(value))
                if abs(num) <= _FLOAT_MAX:
                    return num
            return slow(value)
        return numeric
    if kind == "text" and col.max_length is None:
        def text(value: Any) -> Value:
            if type(value) is str and "\x00" not in value:
                return value
            return slow(value)
        return text
    return slow


@dataclass(frozen=True, slots=True)
class CheckedRows:
    columns: tuple[str, ...]
    rows: tuple[tuple[Value, ...], ...]


def check_rows(table: Table, body: Sequence[Mapping[str, Any]], *, mode: Mode,
               columns: Sequence[str] | None = None,
               missing_default: bool = False) -> list[CheckedRows]:
    """Validate every row; one group per distinct column set (see ``missing_default``).

    Without ``missing_default`` all rows share the union of their keys and a missing key is
    NULL, as PostgREST does for bulk inserts; with it, each group of rows with the same keys is
    written separately so absent columns take their defaults.
    """
    errors: list[FieldError] = []
    more = 0  # problems past MAX_PROBLEMS: counted, not described
    many = len(body) > 1
    wanted = tuple(columns) if columns else None
    if wanted:
        for name in wanted:
            if name not in table.columns:
                errors.append(FieldError(name, f"Could not find the '{name}' column of "
                                               f"'{table.name}' in the schema cache", "PGRST204"))
    groups: dict[tuple[str, ...], list[tuple[Value, ...]]] = {}
    plans: dict[tuple[str, ...], _RowPlan] = {}
    union: list[str] = []
    if not missing_default and not wanted:
        seen: set[str] = set()
        for row in body:
            for k in row:
                if k not in seen:
                    seen.add(k)
                    union.append(k)
    for i, row in enumerate(body):
        prefix = f"[{i}]." if many else ""
        if wanted:
            keys = wanted if not missing_default else tuple(k for k in wanted if k in row)
        elif missing_default:
            keys = tuple(row)
        else:
            keys = tuple(union)
        if len(errors) >= MAX_PROBLEMS:
            more += _count_problems(table, row, keys, plans, mode, wanted)
            continue
        if not wanted:
            for k in row:
                if k not in table.columns:
                    errors.append(FieldError(prefix + k, f"Could not find the '{k}' column of "
                                                         f"'{table.name}' in the schema cache",
                                             "PGRST204"))
        plan = plans.get(keys)
        if plan is None:
            plan = plans[keys] = _row_plan(table, keys, mode)
        checks, required, known = plan
        values: list[Value] = []
        get = row.get
        for k, check in checks:
            try:
                values.append(check(get(k)))
            except _Bad as bad:
                errors.append(FieldError(prefix + k, bad.message, bad.code))
        for name in required:
            errors.append(FieldError(
                prefix + name, f'null value in column "{name}" violates not-null constraint',
                "23502"))
        if not errors:  # once one row is wrong, the rows are never written: keep none
            groups.setdefault(known, []).append(tuple(values))
    if errors:
        more += max(0, len(errors) - MAX_PROBLEMS)
        raise_errors(table.name, errors[:MAX_PROBLEMS], more=more)
    return [CheckedRows(cols, tuple(rows)) for cols, rows in groups.items()]


def _count_problems(table: Table, row: Mapping[str, Any], keys: tuple[str, ...],
                    plans: dict[tuple[str, ...], _RowPlan], mode: Mode,
                    wanted: tuple[str, ...] | None) -> int:
    """The problems of one row, counted as ``check_rows`` would find them, with no message
    built for any of them."""
    n = 0 if wanted else sum(1 for k in row if k not in table.columns)
    plan = plans.get(keys)
    if plan is None:
        plan = plans[keys] = _row_plan(table, keys, mode)
    checks, required, _ = plan
    get = row.get
    for k, check in checks:
        try:
            check(get(k))
        except _Bad:
            n += 1
    return n + len(required)


async def check_rows_off_loop(table: Table, body: Sequence[Mapping[str, Any]], *, mode: Mode,
                              columns: Sequence[str] | None = None,
                              missing_default: bool = False) -> list[CheckedRows]:
    """``check_rows``, on a worker thread when the body is large (``THREAD_FIELDS``). The
    body is only read there; the caller waits for it before using it again."""
    fields = len(body) * max(1, len(body[0]) if body else 0)
    if fields < THREAD_FIELDS:
        return check_rows(table, body, mode=mode, columns=columns,
                          missing_default=missing_default)
    return await asyncio.to_thread(check_rows, table, body, mode=mode, columns=columns,
                                   missing_default=missing_default)


#: Per distinct key set: (key, checker) for the known columns, the required columns it lacks
#: (insert), and the known columns' names.
_RowPlan = tuple[tuple[tuple[str, Checker], ...], tuple[str, ...], tuple[str, ...]]


def _row_plan(table: Table, keys: tuple[str, ...], mode: Mode) -> _RowPlan:
    cols = table.columns
    checks = tuple((k, checker(cols[k])) for k in keys if k in cols)
    required: tuple[str, ...] = ()
    if mode == "insert":
        present = set(keys)
        required = tuple(c.name for c in cols.values()
                         if not c.nullable and not c.has_default and c.name not in present)
    return checks, required, tuple(k for k in keys if k in cols)


def raise_errors(table: str, errors: Sequence[FieldError], *, more: int = 0) -> None:
    """One ``InvalidBody`` for the problems listed in ``errors`` and ``more`` not listed."""
    first = errors[0]
    if len(errors) == 1 and not more:
        message = f"{first.field}: {first.message}"
    elif more:
        message = (f"{len(errors) + more} invalid values for {table}: the first "
                   f"{len(errors)} are in details, and {more} more")
    else:
        message = f"{len(errors)} invalid values for {table}"
    raise InvalidBody(message, code=first.code,
                      details="; ".join(f"{e.field}: {e.message}" for e in errors),
                      hint=None if first.code != "PGRST204" else
                      "Check the column names in the body or in columns=")
