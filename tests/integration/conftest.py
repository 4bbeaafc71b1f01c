"""Fixtures for integration tests that need a database of their own.

Reachability (skip, or fail under ``CI=true``) comes from ``pg_admin`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from tests.conftest import pg_url_for

PgDatabaseFactory = Callable[[str], Awaitable[str]]
"""``await create(prefix)`` makes an empty database ``<prefix>_<random hex>``; returns its URL."""


@pytest.fixture
async def pg_database_factory(pg_admin: str) -> AsyncIterator[PgDatabaseFactory]:
    """Throwaway PostgreSQL databases, each dropped (even if still in use) after the test."""
    created: list[str] = []

    async def create(prefix: str) -> str:
        name = f"{prefix}_{secrets.token_hex(6)}"
        conn = await asyncpg.connect(pg_admin, timeout=5)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        created.append(name)
        return pg_url_for(name)

    yield create

    if created:
        conn = await asyncpg.connect(pg_admin, timeout=5)
        try:
            for name in created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
