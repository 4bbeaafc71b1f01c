"""A server per test module on the client fixture schema (``schema.py``), once per database."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from headwater.testing import ServerProcess
from tests.clients import schema
from tests.conftest import Served, _pg_execute, pg_url_for


async def _load_postgres(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await schema.load_postgres(conn)
    finally:
        await conn.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def clients_served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                   ) -> Iterator[Served]:
    """``headwater serve`` on a fresh copy of the fixture schema, with the Python RPC app."""
    if request.param == "sqlite":
        path = Path(tmp_path_factory.mktemp("clients")) / "clients.db"
        conn = sqlite3.connect(path)
        try:
            conn.executescript(schema.sqlite_script())
        finally:
            conn.close()
        db_url = f"sqlite:///{path}"
    else:
        admin = request.getfixturevalue("pg_admin")
        name = "hw_clients_" + secrets.token_hex(4)
        asyncio.run(_pg_execute(admin, f'CREATE DATABASE "{name}"'))
        request.addfinalizer(lambda: asyncio.run(  # noqa: PT021
            _pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))
        db_url = pg_url_for(name)
        asyncio.run(_load_postgres(db_url))
    # db_plan_enabled: PostgREST's name for the setting that allows explain() (issue 14); an
    # unknown HEADWATER_* variable is ignored until the setting exists.
    env = {"HEADWATER_DB_PLAN_ENABLED": "true"}
    with ServerProcess(db_url, env=env, args=("--app", "tests.clients.app:app")) as server:
        yield Served(server.url, db_url, request.param)


def postgres_only(served: Served, what: str) -> None:
    if served.dialect != "postgresql":
        pytest.skip(f"PostgreSQL only: {what}")
