"""Shared fixtures: real databases with the demo data, and real server processes.

Under CI (``CI=true``) an unreachable PostgreSQL is a failure, not a skip.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from headwater.demo import build_demo
from headwater.testing import ServerProcess

CI = os.environ.get("CI") == "true"
PG_ADMIN = os.environ.get("HEADWATER_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
DEMO_SCALE = 0.2


def unavailable(what: str) -> None:
    message = f"{what} is not reachable"
    if CI:
        pytest.fail(message + " (required under CI=true)")
    pytest.skip(message)


async def _pg_execute(url: str, *sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        for s in sql:
            await conn.execute(s)
    finally:
        await conn.close()


def pg_url_for(dbname: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + dbname


@pytest.fixture(scope="session")
def pg_admin() -> str:
    try:
        asyncio.run(_pg_execute(PG_ADMIN, "SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError):
        unavailable("PostgreSQL at " + PG_ADMIN)
    return PG_ADMIN


@pytest.fixture(scope="session")
def fresh_pg_database(pg_admin: str) -> Iterator[str]:
    """One empty throwaway PostgreSQL database for the session."""
    name = "hw_test_" + secrets.token_hex(4)
    asyncio.run(_pg_execute(pg_admin, f'CREATE DATABASE "{name}"'))
    try:
        yield pg_url_for(name)
    finally:
        asyncio.run(_pg_execute(pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def demo_postgres(fresh_pg_database: str) -> str:
    asyncio.run(build_demo(fresh_pg_database, scale=DEMO_SCALE))
    return fresh_pg_database


@pytest.fixture(scope="session")
def demo_sqlite(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = Path(tmp_path_factory.mktemp("demo")) / "demo.db"
    url = f"sqlite:///{path}"
    asyncio.run(build_demo(url, scale=DEMO_SCALE))
    return url


@dataclass(frozen=True)
class Served:
    url: str
    database_url: str
    dialect: str


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    """A running ``headwater serve`` on the demo data, once per database."""
    db_url = request.getfixturevalue("demo_sqlite" if request.param == "sqlite"
                                     else "demo_postgres")
    with ServerProcess(db_url) as server:
        yield Served(server.url, db_url, request.param)


AUDIT_DDL = {
    "sqlite": "CREATE TABLE audit_log (id INTEGER PRIMARY KEY, event TEXT NOT NULL, ref INTEGER)",
    "postgresql": "CREATE TABLE audit_log (id serial PRIMARY KEY, event text NOT NULL, ref integer)",
}


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def served_rw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              ) -> Iterator[Served]:
    """A server on its own writable copy of the demo data, with the test hooks and RPC."""
    from tests.integration import oracle

    if request.param == "sqlite":
        path = Path(tmp_path_factory.mktemp("rw")) / "rw.db"
        db_url = f"sqlite:///{path}"
        asyncio.run(build_demo(db_url, scale=0.05))
    else:
        admin = request.getfixturevalue("pg_admin")
        name = "hw_rw_" + secrets.token_hex(4)
        asyncio.run(_pg_execute(admin, f'CREATE DATABASE "{name}"'))
        request.addfinalizer(lambda: asyncio.run(  # noqa: PT021
            _pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))
        db_url = pg_url_for(name)
        asyncio.run(build_demo(db_url, scale=0.05))
    oracle.execute(db_url, AUDIT_DDL[request.param])
    env = {"HEADWATER_MAX_BODY_BYTES": "300000"}
    with ServerProcess(db_url, env=env, args=("--app", "tests.integration.shop_app:app")) as s:
        yield Served(s.url, db_url, request.param)


REDIS_URL = os.environ.get("HEADWATER_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError):
        unavailable("Redis at " + REDIS_URL)
    finally:
        client.close()
    return REDIS_URL


AMQP_URL = os.environ.get("HEADWATER_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture(scope="session")
def amqp_url() -> str:
    import aio_pika

    async def ping() -> None:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
        await connection.close()

    # In a thread of its own: an async test may be the first to ask for this fixture. A few
    # tries: a fault test elsewhere on the machine may be restarting the broker.
    with ThreadPoolExecutor(1) as pool:
        for attempt in range(10):
            try:
                pool.submit(asyncio.run, ping()).result()
                return AMQP_URL
            except (OSError, TimeoutError, aio_pika.exceptions.AMQPError):
                if attempt < 9:
                    time.sleep(1.0)
    unavailable("RabbitMQ at " + AMQP_URL)
    return AMQP_URL
