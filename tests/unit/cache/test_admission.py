"""Admission to a full L1 (the doorkeeper): one-hit wonders never evict hot entries."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater.cache.admission import Doorkeeper
from headwater.cache.tiered import MIN_WINDOW, Cached, ReadCache
from headwater.config import Settings
from headwater.model.result import ReadResult
from headwater.observability.metrics import Metrics
from tests.unit.cache.test_tiered import Database, Log, plan, status

#: Room for this many of Database's entries (a ~10-byte body plus the entry overhead).
ROOM = 8


def test_a_key_is_admitted_on_its_second_miss_only() -> None:
    keeper = Doorkeeper(10)
    assert not keeper.admit("a")
    assert not keeper.admit("b")
    assert keeper.admit("a")
    # Admitted keys are forgotten: the cache holds them now.
    assert len(keeper) == 1
    assert not keeper.admit("a")


def test_the_window_resets_so_its_memory_stays_bounded() -> None:
    keeper = Doorkeeper(3)
    for key in "abc":
        keeper.admit(key)
    assert not keeper.admit("d")  # the window was full: reset, then d remembered
    assert keeper.resets == 1 and len(keeper) == 1
    assert not keeper.admit("a")  # seen before the reset: new again


@given(st.lists(st.text(max_size=4), max_size=200), st.integers(1, 20))
def test_never_more_than_the_window_and_never_admits_a_first_sighting(
        keys: list[str], window: int) -> None:
    keeper = Doorkeeper(window)
    seen_since_reset: set[str] = set()
    for key in keys:
        resets = keeper.resets
        admitted = keeper.admit(key)
        if keeper.resets != resets:
            seen_since_reset.clear()
        if admitted:
            # Admission needs an earlier sighting in this window (or a hash collision,
            # which text this short does not produce for distinct keys in practice).
            assert key in seen_since_reset
            seen_since_reset.discard(key)
        else:
            seen_since_reset.add(key)
        assert len(keeper) <= window


def small_cache(tmp_path: Path, *, admission: bool) -> ReadCache:
    body = len(b'[{"id":10}]') + 200
    return ReadCache(Settings(database_url=f"sqlite:///{tmp_path}/db.sqlite",
                              cache_l1_bytes=body * ROOM, cache_admission=admission),
                     Metrics(), redis=None, log=Log())


@pytest.fixture
async def make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               ) -> AsyncIterator[Callable[[bool], ReadCache]]:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the shared counters file
    made: list[ReadCache] = []

    def make(admission: bool) -> ReadCache:
        c = small_cache(tmp_path, admission=admission)
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()


async def read(cache: ReadCache, db: Database, n: int) -> Cached | ReadResult:
    # One key per context: the same plan read as different callers.
    return await cache.read(f"raw{n}", plan(), f"ctx{n}", db.execute)


async def test_with_room_a_repeated_read_hits_from_its_second_request(
        make: Callable[[bool], ReadCache]) -> None:
    cache, db = make(True), Database()
    await cache.start()
    assert status(await read(cache, db, 1)) == "MISS"
    assert status(await read(cache, db, 1)) == "HIT"
    assert cache.doorkeeper is not None and len(cache.doorkeeper) == 0


@pytest.mark.parametrize("admission", [True, False])
async def test_one_hit_wonders_do_not_evict_hot_entries(
        make: Callable[[bool], ReadCache], admission: bool) -> None:
    cache, db = make(admission), Database()
    await cache.start()
    hot = range(ROOM)
    for n in hot:
        await read(cache, db, n)
    assert len(cache.l1) == ROOM
    for n in range(1000, 1000 + 5 * ROOM):  # a scan of reads that never repeat
        assert status(await read(cache, db, n)) == "MISS"
    survivors = [status(await read(cache, db, n)) for n in hot].count("HIT")
    if admission:
        assert survivors == ROOM and cache.l1.evictions == 0
    else:
        assert survivors == 0


async def test_a_key_missed_twice_when_full_is_stored(
        make: Callable[[bool], ReadCache]) -> None:
    cache, db = make(True), Database()
    await cache.start()
    for n in range(ROOM):
        await read(cache, db, n)
    assert status(await read(cache, db, 500)) == "MISS"  # first miss: remembered only
    assert status(await read(cache, db, 500)) == "MISS"  # second: stored, one eviction
    assert cache.l1.evictions == 1
    assert status(await read(cache, db, 500)) == "HIT"
    hit = cache.fast("raw500")
    assert isinstance(hit, Cached) and hit.status == "HIT"
    assert cache.doorkeeper is not None and cache.doorkeeper.window == MIN_WINDOW


async def test_a_refused_read_leaves_no_alias(make: Callable[[bool], ReadCache]) -> None:
    cache, db = make(True), Database()
    await cache.start()
    for n in range(ROOM):
        await read(cache, db, n)
    await read(cache, db, 700)
    assert cache.fast("raw700") is None
    assert len(cache.aliases) == ROOM
