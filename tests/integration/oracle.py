"""Hand-written SQL against the same database, as the oracle for API results."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import asyncpg


def rows(database_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run ``sql`` (written with ``$1`` placeholders) on either database."""
    if database_url.startswith("sqlite"):
        path = database_url.removeprefix("sqlite:///")
        conn = sqlite3.connect(path)
        try:
            text = sql
            for i in range(len(params), 0, -1):
                text = text.replace(f"${i}", f"?{i}")
            return [tuple(r) for r in conn.execute(text, params).fetchall()]
        finally:
            conn.close()

    async def run() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(database_url)
        try:
            return [tuple(r) for r in await conn.fetch(sql, *params)]
        finally:
            await conn.close()

    return asyncio.run(run())


def ids(database_url: str, sql: str, *params: Any) -> list[int]:
    return [int(r[0]) for r in rows(database_url, sql, *params)]


def execute(database_url: str, sql: str) -> None:
    if database_url.startswith("sqlite"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        try:
            conn.executescript(sql)
        finally:
            conn.close()
        return

    async def run() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())
