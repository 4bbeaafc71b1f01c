"""``text/csv`` bodies, byte for byte as PostgREST sends them (pure).

PostgREST builds CSV in SQL: the first row's keys joined by commas (unquoted), then each row
as PostgreSQL's record text without its parentheses, rows joined by newlines, no newline at
the end; an empty result is a lone newline. On PostgreSQL Headwater asks the database for the
same record text (``ReadSQL.csv_bounded``), so every type renders as PostgreSQL renders it.
SQLite has no record text: ``render_row`` rebuilds it from the row's JSON, as PostgreSQL
would write the same values (booleans ``t``/``f``, jsonb text for JSON columns, ``row_to_json``
and ``json_agg`` text for embeds).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

from headwater.model.plan import OutputColumn, OutputEmbed, ReadNode

# record_out quotes a field that is empty or holds any of these (or whitespace).
_SPECIAL = frozenset('"\\(),')
_SPACE = frozenset(" \t\n\r\v\f")


def quote_field(text: str) -> str:
    """One field as PostgreSQL's record text writes it."""
    if text and not any(ch in _SPECIAL or ch in _SPACE for ch in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '""') + '"'


def header(keys: Sequence[str], rows: int) -> str:
    """The header line and its newline; PostgREST takes the keys from the first row, so an
    empty result has an empty header."""
    return (",".join(keys) if rows else "") + "\n"


def _number(value: int | float) -> str:
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))  # float8 2.0 is written 2
        return repr(value)
    return str(value)


def _jsonb_text(value: object) -> str:
    """jsonb's text form: keys by length then bytes, ``", "`` and ``": "`` separators."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return "{" + ", ".join(json.dumps(k, ensure_ascii=False) + ": " + _jsonb_text(value[k])
                               for k in keys) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_jsonb_text(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _json_row(value: object, node: ReadNode) -> str:
    """An embedded row as ``row_to_json`` writes it (compact), its values in their own form."""
    if not isinstance(value, dict):
        return _jsonb_text(value)
    embeds = {o.key: o.node for o in node.outputs if isinstance(o, OutputEmbed)}
    parts = []
    for k, v in value.items():
        child = embeds.get(k)
        text = _embed_text(v, child) if child is not None else _jsonb_text(v)
        if isinstance(v, float) and child is None:
            text = _number(v)
        parts.append(json.dumps(k, ensure_ascii=False) + ":" + text)
    return "{" + ",".join(parts) + "}"


def _embed_text(value: object, node: ReadNode) -> str:
    if value is None:
        return "null"
    if node.to_many and isinstance(value, list):
        return "[" + ", \n ".join(_json_row(v, node) for v in value) + "]"  # json_agg's
    return _json_row(value, node)


def _field(value: object, embed: ReadNode | None, json_column: bool) -> str:
    if value is None:
        return ""
    if json_column:
        return quote_field(_jsonb_text(value))  # a JSON string keeps its quotes
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, (int, float)):
        return _number(value)
    if embed is not None:
        return quote_field(_embed_text(value, embed))
    if isinstance(value, (dict, list)):
        return quote_field(_jsonb_text(value))
    return quote_field(str(value))


def render_rows(rows: Iterable[Mapping[str, object]], root: ReadNode) -> Iterable[str]:
    """Record text of decoded JSON rows (SQLite)."""
    embeds = {o.key: o.node for o in root.outputs if isinstance(o, OutputEmbed)}
    json_keys = {o.key for o in root.outputs
                 if isinstance(o, OutputColumn) and o.kind == "json"}
    for row in rows:
        yield ",".join(_field(v, embeds.get(k), k in json_keys) for k, v in row.items())
