"""Table versions without services: the shared counters file, and Redis's logic over a fake
store (the real Redis runs in tests/integration/test_cache_store.py)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from headwater.cache.redis import RedisStore
from headwater.cache.versions import EPOCH, LSN, RedisVersions, SharedVersions, open_versions
from headwater.config import Settings
from headwater.errors import RedisNotAsked, RedisUnavailable
from headwater.resilience.breaker import CircuitBreaker

FIRST_EPOCH = 7


class FakeRedis:
    """The calls ``RedisVersions`` makes on its store, on a dict."""

    deadline = 0.05

    def __init__(self) -> None:
        self.hash: dict[str, int] = {}
        self.entries: dict[str, bytes] = {}
        self.reads = 0
        self.down = False
        #: The breaker is open: guarded calls are refused (nothing reaches Redis).
        self.refusing = False
        self.random_epochs = False
        #: Awaited by ``init_field`` (the first call of a heal) when set.
        self.stall: Callable[[], Awaitable[None]] | None = None

    def _check(self, guarded: bool = True) -> None:
        if self.refusing and guarded:
            raise RedisNotAsked("circuit open")
        if self.down:
            raise RedisUnavailable("down")

    async def get_fields(self, key: str, fields: list[str]) -> list[int]:
        self._check()
        self.reads += 1
        return [self.hash.get(f, 0) for f in fields]

    async def get_with_fields(self, key: str, hkey: str,
                              fields: list[str]) -> tuple[bytes | None, list[int]]:
        self._check()
        return self.entries.get(key), [self.hash.get(f, 0) for f in fields]

    async def init_field(self, key: str, field: str, value: int, *,
                         guarded: bool = True) -> int:
        if self.stall is not None:
            await self.stall()
        self._check(guarded)
        # FIRST_EPOCH stands for the random start (expectations stay legible), unless the
        # test is about that randomness.
        return self.hash.setdefault(field, value if self.random_epochs else FIRST_EPOCH)

    async def bump(self, hkey: str, fields: list[str], channel: str,
                   lsn: int = 0, *, guarded: bool = True) -> list[int]:
        self._check(guarded)
        for f in fields:
            self.hash[f] = self.hash.get(f, 0) + 1
        if lsn > self.hash.get(LSN, 0):
            self.hash[LSN] = lsn
        return [self.hash[f] for f in fields]


def redis_versions(fake: FakeRedis, bounded_ms: float | None = None, *,
                   runtime_dir: Path | None = None, log: Any = None) -> RedisVersions:
    return RedisVersions(cast(RedisStore, fake), "test", bounded_ms=bounded_ms, log=log,
                         runtime_dir=str(runtime_dir) if runtime_dir else None)


class Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, event: str, **fields: object) -> None:
        self.warnings.append(event)


# --- the shared counters file -----------------------------------------------------------------

async def test_a_bump_announces_its_commit_position_to_every_reader(tmp_path: Path) -> None:
    """Replicas: the highest commit LSN moves with the versions (never backwards), so a node
    that sees a new version also knows how far a replica must have replayed."""
    a = SharedVersions("sqlite:///lsn.db", str(tmp_path))
    b = SharedVersions("sqlite:///lsn.db", str(tmp_path))
    fake = FakeRedis()
    ra, rb = redis_versions(fake), redis_versions(fake)
    try:
        for writer, reader in ((a, b), (ra, rb)):
            assert reader.lsn == 0
            await writer.bump(["orders"], 500)
            await writer.bump(["orders"], 300)  # an older position never lowers it
            await reader.current(["orders"])
            assert reader.lsn == 500
    finally:
        await a.close()
        await b.close()


async def test_shared_versions_are_seen_by_every_instance_on_the_host(tmp_path: Path) -> None:
    a = SharedVersions("sqlite:///x.db", str(tmp_path))
    b = SharedVersions("sqlite:///x.db", str(tmp_path))
    other = SharedVersions("sqlite:///y.db", str(tmp_path))
    try:
        assert a.local(["orders", "items"]) == (0, 0, 0)
        await a.bump(["orders"])
        await a.bump(["orders", "items"])
        assert b.local(["orders", "items"]) == (2, 1, 0)
        assert await b.current(["items"]) == (1, 0)
        await b.bump([EPOCH])
        assert a.local(["customers"]) == (0, 1)
        assert other.local(["orders"]) == (0, 0)  # another database, another file
    finally:
        for v in (a, b, other):
            await v.close()


async def test_shared_versions_have_no_l2_beside_them(tmp_path: Path) -> None:
    v = SharedVersions("sqlite:///x.db", str(tmp_path))
    await v.start()
    await v.bump(["orders"])
    assert await v.with_entry("any", ["orders"]) == (None, (1, 0))
    await v.close()
    await v.close()  # closing twice is harmless


# --- Redis versions' own logic --------------------------------------------------------------

async def test_strict_never_answers_locally_and_coalesces_concurrent_reads() -> None:
    fake = FakeRedis()
    v = redis_versions(fake)
    await v.bump(["orders"])
    assert v.local(["orders"]) is None
    results = await asyncio.gather(*(v.current(["orders"]) for _ in range(20)),
                                   v.current(["items", "orders"]))
    assert fake.reads == 1
    assert results[:20] == [(1, FIRST_EPOCH)] * 20
    assert results[20] == (0, 1, FIRST_EPOCH)


async def test_with_entry_reads_the_entry_and_versions_together() -> None:
    fake = FakeRedis()
    fake.entries["k"] = b"entry"
    fake.hash["orders"] = 3
    v = redis_versions(fake)
    assert await v.with_entry("k", ["orders"]) == (b"entry", (3, FIRST_EPOCH))
    assert await v.with_entry("other", ["orders"]) == (None, (3, FIRST_EPOCH))


async def test_bounded_trusts_its_copy_only_while_heard_within_the_bound() -> None:
    fake = FakeRedis()
    v = redis_versions(fake, bounded_ms=100)
    assert v.local(["orders"]) is None  # never heard: not trusted
    await v.bump(["orders"])  # its own bumps are learnt at once
    v._heard = time.monotonic()
    assert v.local(["orders"]) == (1, 0)
    v._heard = time.monotonic() - 0.2
    assert v.local(["orders"]) is None  # older than the bound


async def test_a_bump_missed_while_redis_was_down_moves_the_epoch_once_back() -> None:
    fake = FakeRedis()
    v = redis_versions(fake, bounded_ms=100)
    v._heard = time.monotonic()
    fake.down = True
    with pytest.raises(RedisUnavailable):
        await v.bump(["orders"])
    assert v.local(["orders"]) is None  # dirty: nothing local is trusted
    with pytest.raises(RedisUnavailable):
        await v.current(["orders"])
    fake.down = False
    assert await v.current(["orders"]) == (0, FIRST_EPOCH + 1)
    assert fake.hash == {EPOCH: FIRST_EPOCH + 1}
    assert await v.current(["orders"]) == (0, FIRST_EPOCH + 1)  # healed once, not every read


async def test_a_read_that_failed_while_redis_was_down_moves_the_epoch_once_back() -> None:
    # Another worker's (or node's) bump may have failed meanwhile, unannounced: copies held at
    # the versions Redis still has could predate that write.
    for read in ("current", "with_entry"):
        fake = FakeRedis()
        v = redis_versions(fake)
        fake.down = True
        with pytest.raises(RedisUnavailable):
            await (v.current(["orders"]) if read == "current" else v.with_entry("k", ["orders"]))
        fake.down = False
        assert await v.current(["orders"]) == (0, FIRST_EPOCH + 1), read
        assert fake.hash == {EPOCH: FIRST_EPOCH + 1}
        assert await v.current(["orders"]) == (0, FIRST_EPOCH + 1)  # healed once


async def test_a_refused_read_learns_nothing_and_moves_no_epoch() -> None:
    fake = FakeRedis()
    v = redis_versions(fake)
    fake.refusing = True  # the breaker opened (its failures had made the worker dirty then)
    with pytest.raises(RedisNotAsked):
        await v.current(["orders"])
    fake.refusing = False
    assert await v.current(["orders"]) == (0, FIRST_EPOCH)  # the epoch starts, not moves
    assert fake.hash == {EPOCH: FIRST_EPOCH}


async def test_a_writes_bump_goes_past_an_open_breaker() -> None:
    # Opened by another node's failures (a cluster's lost primary): the node with the
    # versions answers, and other workers read them; the write must be announced.
    fake = FakeRedis()
    v = redis_versions(fake)
    fake.refusing = True
    await v.bump(["orders"])
    assert fake.hash == {"orders": 1} and not v.dirty


async def test_a_failure_marked_while_a_sibling_heals_keeps_the_flag_raised(
        tmp_path: Path) -> None:
    """Workers of one server share the dirty flag; a heal clears only what was marked before
    it began, so a write that went unannounced meanwhile is healed by the next lookup."""
    redis, cut_off = FakeRedis(), FakeRedis()
    cut_off.down = True
    a = redis_versions(cut_off, runtime_dir=tmp_path)
    b, c = (redis_versions(redis, runtime_dir=tmp_path) for _ in range(2))
    with pytest.raises(RedisUnavailable):
        await a.bump(["orders"])

    async def a_fails_again() -> None:
        redis.stall = None
        with pytest.raises(RedisUnavailable):
            await a.bump(["orders"])

    redis.stall = a_fails_again
    assert await b.current(["orders"]) == (0, FIRST_EPOCH + 1)  # healed A's first write
    assert await c.current(["orders"]) == (0, FIRST_EPOCH + 2)  # and then A's second
    assert await b.current(["orders"]) == (0, FIRST_EPOCH + 2)
    for v in (b, c):
        await v.close()
    cut_off.down = False
    await a.close()  # still dirty itself: heals once more at exit
    assert redis.hash[EPOCH] == FIRST_EPOCH + 2 and cut_off.hash[EPOCH] == FIRST_EPOCH + 1


async def test_a_dirty_worker_heals_at_close_even_past_an_open_breaker() -> None:
    fake = FakeRedis()
    v = redis_versions(fake)
    fake.down = True
    with pytest.raises(RedisUnavailable):
        await v.bump(["orders"])
    fake.down, fake.refusing = False, True  # Redis is back; the breaker is still open
    await v.close()
    assert fake.hash == {EPOCH: FIRST_EPOCH + 1}
    await v.close()  # closing twice is harmless
    assert fake.hash == {EPOCH: FIRST_EPOCH + 1}


async def test_a_heal_at_close_gives_up_at_the_stores_deadline() -> None:
    for down in (True, False):  # Redis refuses it, or does not answer in time
        fake, log = FakeRedis(), Log()
        v = redis_versions(fake, log=log)
        fake.down = True
        with pytest.raises(RedisUnavailable):
            await v.current(["orders"])
        fake.down = down
        fake.stall = None if down else (lambda: asyncio.sleep(10))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await v.close()
        assert loop.time() - started < 5 * fake.deadline
        assert log.warnings == ["versions_heal_at_exit_failed"]
        assert EPOCH not in fake.hash


async def test_a_clean_worker_does_not_move_the_epoch_at_close(tmp_path: Path) -> None:
    fake = FakeRedis()
    v = redis_versions(fake, runtime_dir=tmp_path)
    await v.bump(["orders"])
    await v.close()
    assert fake.hash == {"orders": 1}


# --- the choice ---------------------------------------------------------------------------------

async def test_open_versions_picks_by_redis_and_mode(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    shared = open_versions(Settings(database_url="sqlite:///x.db"), None, namespace="n")
    assert isinstance(shared, SharedVersions)
    assert Path(shared.path).parent == tmp_path
    await shared.close()
    store = RedisStore("redis://127.0.0.1:1/0", CircuitBreaker("redis"))  # never connected
    try:
        strict = open_versions(Settings(cache_mode="strict"), store, namespace="n")
        bounded = open_versions(Settings(cache_mode="bounded", cache_bounded_lag_ms=250), store,
                                namespace="n")
        assert isinstance(strict, RedisVersions) and strict.bounded is None
        assert isinstance(bounded, RedisVersions) and bounded.bounded == 0.25
        assert bounded.hkey == "hw:n:versions"
        # ``headwater serve``'s workers share a dirty flag in their runtime directory.
        served = open_versions(Settings(runtime_dir=str(tmp_path)), store, namespace="n")
        assert isinstance(served, RedisVersions)
        assert [p.name for p in tmp_path.glob("versions-dirty-*")] != []
        for v in (strict, bounded, served):
            await v.close()
    finally:
        await store.close()
