"""The tiered read cache over its versions, with no service: the shared counters file (the
embedded mode), and fakes standing in for Redis."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from headwater.cache.entry import Entry
from headwater.cache.redis import RedisStore
from headwater.cache.tiered import Cached, ReadCache
from headwater.cache.versions import RedisVersions, SharedVersions
from headwater.config import Settings
from headwater.errors import DatabaseUnavailable, RedisUnavailable
from headwater.model.plan import OutputColumn, ReadNode, ReadPlan
from headwater.model.result import ReadResult
from headwater.observability.metrics import Metrics
from headwater.resilience.breaker import CircuitBreaker
from tests.unit.cache.test_versions import FakeRedis


async def _fast(cache: ReadCache, raw: str) -> Cached | None:
    """The route's repeated-request lookup: ``fast``, and ``confirm`` when it must ask."""
    found = cache.fast(raw)
    if isinstance(found, Entry):
        return await cache.confirm(found)
    return found


def plan(table: str = "orders") -> ReadPlan:
    node = ReadNode(table, "t0", (OutputColumn("id", "id", "integer"),))
    return ReadPlan(node, (10, 0), False, "json", 0, 1, 0)


class Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, event: str, **_: Any) -> None:
        self.warnings.append(event)


class Database:
    def __init__(self) -> None:
        self.calls = 0
        self.down = False

    async def execute(self) -> ReadResult:
        self.calls += 1
        await asyncio.sleep(0)
        if self.down:
            raise DatabaseUnavailable("down")
        return ReadResult(1, None, 0, b'[{"id":%d}]' % self.calls)


class FakeL2(FakeRedis):
    async def get(self, key: str) -> bytes | None:
        return self.entries.get(key)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self.entries[key] = value


@pytest.fixture
async def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ReadCache]:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the shared counters file
    c = ReadCache(Settings(database_url=f"sqlite:///{tmp_path}/db.sqlite"), Metrics(),
                  redis=None, log=Log())
    await c.start()
    yield c
    await c.close()


def status(out: Cached | ReadResult) -> str:
    return out.status if isinstance(out, Cached) else "MISS"


async def test_without_redis_versions_are_the_shared_file_and_there_is_no_l2(
        cache: ReadCache) -> None:
    assert isinstance(cache.versions, SharedVersions)
    assert cache.l2 is None


async def test_miss_then_hit_then_invalidated(cache: ReadCache) -> None:
    db = Database()
    assert await _fast(cache, "raw") is None
    assert status(await cache.read("raw", plan(), "anon", db.execute)) == "MISS"
    hit = await _fast(cache, "raw")
    assert hit is not None and hit.status == "HIT" and hit.entry.body == b'[{"id":1}]'
    assert status(await cache.read("raw", plan(), "anon", db.execute)) == "HIT"
    await cache.invalidate(["items"])  # another table: still valid
    assert await _fast(cache, "raw") is not None
    await cache.invalidate(["orders"])
    assert await _fast(cache, "raw") is None
    assert status(await cache.read("raw", plan(), "anon", db.execute)) == "MISS"
    assert db.calls == 2
    await cache.invalidate_all()
    assert await _fast(cache, "raw") is None
    await cache.invalidate([])  # nothing written: nothing moves
    assert cache.stats()["l1_entries"] == 1


async def test_another_context_is_another_entry(cache: ReadCache) -> None:
    db = Database()
    await cache.read("raw-a", plan(), "role:a", db.execute)
    assert status(await cache.read("raw-b", plan(), "role:b", db.execute)) == "MISS"
    assert db.calls == 2


async def test_concurrent_misses_run_one_query(cache: ReadCache) -> None:
    db = Database()
    outs = await asyncio.gather(*(cache.read("raw", plan(), "anon", db.execute)
                                  for _ in range(10)))
    assert db.calls == 1
    assert {status(o) for o in outs} <= {"MISS", "HIT"}


async def test_stale_if_error_serves_the_previous_entry(cache: ReadCache) -> None:
    db = Database()
    await cache.read("raw", plan(), "anon", db.execute)
    await cache.invalidate(["orders"])
    db.down = True
    out = await cache.read("raw", plan(), "anon", db.execute)
    assert isinstance(out, Cached) and out.status == "STALE"
    assert out.entry.body == b'[{"id":1}]'


async def test_versions_that_cannot_be_known_bypass_the_cache(cache: ReadCache) -> None:
    class Unknown:
        def local(self, tables: Sequence[str]) -> tuple[int, ...] | None:
            return None

        async def current(self, tables: Sequence[str]) -> tuple[int, ...]:
            raise RedisUnavailable("down")

        async def with_entry(self, key: str, tables: Sequence[str],
                             ) -> tuple[bytes | None, tuple[int, ...]]:
            raise RedisUnavailable("down")

        async def bump(self, tables: Sequence[str], lsn: int = 0) -> None:
            raise RedisUnavailable("down")

        @property
        def lsn(self) -> int:
            return 0

        async def start(self) -> None:
            pass

        async def close(self) -> None:
            pass

    db = Database()
    await cache.read("raw", plan(), "anon", db.execute)
    await cache.versions.close()
    cache.versions = Unknown()
    assert await _fast(cache, "raw") is None
    for _ in range(2):
        assert isinstance(await cache.read("raw", plan(), "anon", db.execute), ReadResult)
    assert db.calls == 3
    await cache.invalidate(["orders"])  # deferred, not raised
    assert cast(Log, cache.log).warnings == ["cache_invalidation_deferred"]
    # ... and while the versions are unknown, the copies held are still the fallback when
    # the database fails too: the newest one (taken during the outage), marked stale.
    db.down = True
    out = await cache.read("raw", plan(), "anon", db.execute)
    assert isinstance(out, Cached) and out.status == "STALE"
    assert out.entry.body == b'[{"id":3}]'
    other = plan("customers")
    with pytest.raises(DatabaseUnavailable):  # never cached: nothing to fall back on
        await cache.read("raw2", other, "anon", db.execute)


async def test_with_l2_a_node_reads_what_another_stored() -> None:
    fake = FakeL2()
    fake.random_epochs = True
    store = RedisStore("redis://127.0.0.1:1/0", CircuitBreaker("redis"))  # never connected

    def node() -> ReadCache:
        # The cache as built with Redis, its store swapped for the fake.
        c = ReadCache(Settings(cache_namespace="n"), Metrics(), redis=store, log=Log())
        c.l2 = cast(RedisStore, fake)
        c.versions = RedisVersions(cast(RedisStore, fake), "n")
        return c

    a, b, db = node(), node(), Database()
    await a.read("raw", plan(), "anon", db.execute)
    out = await b.read("raw", plan(), "anon", db.execute)  # L1 empty: the L2 entry, strict
    assert isinstance(out, Cached) and out.status == "HIT" and db.calls == 1
    assert await _fast(b, "raw") is not None  # and now in b's L1
    await a.invalidate(["orders"])
    assert await _fast(b, "raw") is None
    assert status(await b.read("raw", plan(), "anon", db.execute)) == "MISS"
    assert db.calls == 2
    await store.close()


def _node(store: RedisStore, fake: FakeL2) -> ReadCache:
    c = ReadCache(Settings(cache_namespace="n"), Metrics(), redis=store, log=Log())
    c.l2 = cast(RedisStore, fake)
    c.versions = RedisVersions(cast(RedisStore, fake), "n")
    return c


async def test_versions_that_go_back_never_make_an_old_copy_fresh() -> None:
    """Redis loses the versions hash (a node restarted without persistence, as the rig's do;
    or a failover to a replica that had not received the last HINCRBYs): the counters start
    again from 0, and an L1 copy taken at a version the counter reaches again is a HIT."""
    fake = FakeL2()
    fake.random_epochs = True
    store = RedisStore("redis://127.0.0.1:1/0", CircuitBreaker("redis"))  # never connected
    a, db = _node(store, fake), Database()
    await a.invalidate(["orders"])                        # orders = 1
    assert status(await a.read("raw", plan(), "anon", db.execute)) == "MISS"  # body id=1
    await a.invalidate(["orders"])                        # a write: orders = 2
    assert await _fast(a, "raw") is None                  # the copy is stale, rightly
    fake.hash.clear()                                     # Redis restarted empty
    fake.entries.clear()
    await a.invalidate(["orders"])                        # the next write: orders = 1 again
    out = await _fast(a, "raw")
    assert not (isinstance(out, Cached) and out.status == "HIT"), (
        f"served a copy from before two writes as fresh: {out.entry.body!r}")
    await store.close()
