"""Rate-limit counters shared by a server's worker processes (a memory-mapped file)."""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path

import pytest

from headwater.api import shared_counters
from headwater.api.shared_counters import SharedCounters


async def test_counts_per_key_and_expires(tmp_path: Path) -> None:
    c = SharedCounters(str(tmp_path))
    assert [await c.incr("a", 60) for _ in range(3)] == [1, 2, 3]
    assert await c.incr("b", 60, 5) == 5
    assert await c.get("a") == 3
    assert await c.get("nobody") == 0
    other = SharedCounters(str(tmp_path))  # another worker opening the same file
    assert await other.incr("a", 60) == 4
    assert await c.incr("short", 0) == 1
    await asyncio.sleep(1.1)
    assert await c.get("short") == 0
    assert await c.incr("short", 0) == 1  # a fresh window
    c.close()
    other.close()


def _hammer(directory: str, n: int) -> None:
    c = SharedCounters(directory)

    async def run() -> None:
        for _ in range(n):
            await c.incr("k", 60)

    asyncio.run(run())


def test_processes_never_lose_an_increment(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(str(tmp_path), 2000)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert asyncio.run(SharedCounters(str(tmp_path)).get("k")) == 8000


async def test_a_full_probe_reuses_the_window_ending_first(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           ) -> None:
    monkeypatch.setattr(shared_counters, "SLOTS", 4)
    monkeypatch.setattr(shared_counters, "PROBES", 4)
    c = SharedCounters(str(tmp_path))
    for i in range(4):
        await c.incr(f"k{i}", 100 + i)
    assert await c.incr("late", 100) == 1  # took k0's slot (the earliest expiry)
    assert await c.get("k0") == 0
    assert await c.get("k3") == 1
