"""The backend a database URL names."""

from __future__ import annotations

from headwater.config import Settings
from headwater.db.database import Database, QueryHook
from headwater.db.sqlite import SqliteDatabase


def open_database(settings: Settings, on_query: QueryHook | None = None) -> Database:
    url = settings.database_url
    if url.startswith("sqlite:"):
        return SqliteDatabase(settings, on_query)
    if url.startswith(("postgresql:", "postgres:")):
        settings.require_extras()  # asyncpg: the postgres extra
        from headwater.db.postgres import PostgresDatabase

        return PostgresDatabase(settings, on_query)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://...")
