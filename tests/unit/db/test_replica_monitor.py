"""The replica monitor's samples when a monitoring connection misbehaves: the replica (or the
primary's position) is given up for this sample and the connection replaced, as for any
connection error; the monitor itself carries on."""

from __future__ import annotations

import asyncio
import math
from typing import Any, cast

import asyncpg
import pytest

from headwater.config import Settings
from headwater.db.replicas import Replica, Replicas


class _Busy:
    """A connection still cancelling the query a timed-out sample left behind: asyncpg refuses
    the next one with an ``InternalClientError`` (not an ``InterfaceError``)."""

    def __init__(self) -> None:
        self.terminated = False

    def is_closed(self) -> bool:
        return False

    async def fetchrow(self, *_: Any, **__: Any) -> Any:
        raise asyncpg.exceptions.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress")

    async def fetchval(self, *_: Any, **__: Any) -> Any:
        return await self.fetchrow()

    def terminate(self) -> None:
        self.terminated = True


class _Log:
    def __getattr__(self, _: str) -> Any:
        return lambda *a, **k: None


def _replicas() -> tuple[Replicas, Replica]:
    settings = Settings(database_url="postgresql://127.0.0.1:1/x", replica_urls="postgresql://127.0.0.1:2/x")
    db = cast(Any, type("Db", (), {"settings": settings, "breaker": None}))
    r = Replica("replica1", db)
    r.reachable, r.started, r.lag, r.error = True, True, 0.0, None
    return Replicas(cast(Any, None), [r], settings, log=_Log()), r


def test_a_busy_replica_connection_is_unreachable_and_replaced() -> None:
    replicas, r = _replicas()
    busy = _Busy()
    r._monitor = busy
    asyncio.run(replicas._sample_replica(r, 1.0))
    assert not r.reachable and math.isinf(r.lag) and r.error == "InternalClientError"
    assert r._monitor is None and busy.terminated


def test_a_busy_primary_connection_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    replicas, _ = _replicas()
    busy = _Busy()
    replicas._primary_conn = busy

    async def refuse(_: str) -> Any:
        raise OSError("refused")

    monkeypatch.setattr(replicas, "_connect", refuse)
    asyncio.run(replicas._sample())
    assert replicas._primary_conn is None and busy.terminated
