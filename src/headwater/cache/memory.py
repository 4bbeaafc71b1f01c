"""The in-process store: an LRU bounded in bytes (L1, and the store of the embedded mode)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class MemoryLRU(Generic[V]):
    """Synchronous LRU with a byte budget and per-item expiry; no I/O, no locks needed on one
    event loop."""

    def __init__(self, max_bytes: int, sizer: Callable[[V], int],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self._sizer = sizer
        self._clock = clock
        self._items: OrderedDict[str, tuple[V, int, float]] = OrderedDict()
        self.bytes = 0
        self.evictions = 0

    def get(self, key: str) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        value, _size, expires = item
        if expires and self._clock() >= expires:
            self.delete(key)
            return None
        self._items.move_to_end(key)
        return value

    def set(self, key: str, value: V, ttl: float = 0.0) -> None:
        size = self._sizer(value)
        if size > self.max_bytes:
            return
        self.delete(key)
        self._items[key] = (value, size, self._clock() + ttl if ttl > 0 else 0.0)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, old_size, _) = self._items.popitem(last=False)
            self.bytes -= old_size
            self.evictions += 1

    def delete(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self.bytes -= item[1]

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)


class MemoryStore:
    """The in-process implementation of the byte-store interface ``RedisStore`` also has."""

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self._lru: MemoryLRU[bytes] = MemoryLRU(max_bytes, len)

    async def get(self, key: str) -> bytes | None:
        return self._lru.get(key)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._lru.set(key, value, ttl)

    async def delete(self, key: str) -> None:
        self._lru.delete(key)

    async def incr(self, key: str, field: str, by: int = 1) -> int:
        current = int(self._lru.get(f"{key}\x00{field}") or b"0") + by
        self._lru.set(f"{key}\x00{field}", str(current).encode())
        return current

    async def get_fields(self, key: str, fields: list[str]) -> list[int]:
        return [int(self._lru.get(f"{key}\x00{f}") or b"0") for f in fields]

    async def get_with_fields(self, key: str, hkey: str,
                              fields: list[str]) -> tuple[bytes | None, list[int]]:
        return await self.get(key), await self.get_fields(hkey, fields)

    async def bump(self, hkey: str, fields: list[str], channel: str) -> list[int]:
        return [await self.incr(hkey, f) for f in fields]

    @property
    def bytes(self) -> int:
        return self._lru.bytes

    @property
    def evictions(self) -> int:
        return self._lru.evictions
