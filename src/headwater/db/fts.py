"""SQLite full-text search: which columns an external-content FTS5 table indexes.

``fts``/``plfts``/``phfts``/``wfts`` on SQLite run through an FTS5 table declared with
``content='<table>'`` that lists the column: the filter becomes ``<rowid> IN (SELECT rowid
FROM <fts> WHERE <column> MATCH ?)``, the query rewritten for FTS5 (``model.fts_query``).
"""

from __future__ import annotations

import dataclasses
import re

import sqlalchemy as sa

from headwater.model.catalog import Table

_OPTION = re.compile(r"""\b(content|content_rowid)\s*=\s*(?:'((?:[^']|'')*)'|"((?:[^"]|"")*)"|(\w+))""",
                     re.IGNORECASE)


def _options(sql: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for m in _OPTION.finditer(sql):
        value = m[2] if m[2] is not None else m[3] if m[3] is not None else m[4]
        found[m[1].lower()] = value.replace("''", "'").replace('""', '"')
    return found


def with_full_text(conn: sa.Connection, tables: list[Table]) -> list[Table]:
    """``tables`` with ``Table.full_text`` filled in from the FTS5 tables of the file."""
    rows = conn.execute(sa.text(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' "
        "AND sql LIKE 'CREATE VIRTUAL TABLE%' AND lower(sql) LIKE '%using fts5%'")).fetchall()
    found: dict[str, list[tuple[str, str, str]]] = {}
    for name, sql in rows:
        opts = _options(str(sql))
        content = opts.get("content")
        if not content:
            continue  # a table that holds its own text has no rows of ours to match
        rowid = opts.get("content_rowid") or "rowid"
        quoted = '"' + str(name).replace('"', '""') + '"'
        for col in conn.execute(sa.text(f"PRAGMA table_info({quoted})")).fetchall():
            found.setdefault(content, []).append((str(col[1]), str(name), rowid))
    if not found:
        return tables
    return [dataclasses.replace(t, full_text=tuple(found[t.name])) if t.name in found else t
            for t in tables]
