"""The in-process bounded cache: an LRU with a size budget and optional per-item expiry.

Every bounded in-process cache of Headwater is one of these: L1 and its raw-key aliases
(sized in bytes), the compressed bodies (bytes), the verified credentials (one per entry, each
until its own deadline).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class MemoryLRU(Generic[V]):
    """Synchronous LRU with a size budget and per-item expiry; no I/O, no locks needed on one
    event loop.

    ``sizer`` gives each value's share of ``max_bytes`` (its bytes, or 1 to bound the count).
    """

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
        # An item without expiry costs no clock read.
        if expires and self._clock() >= expires:
            self.delete(key)
            return None
        self._items.move_to_end(key)
        return value

    def set(self, key: str, value: V, ttl: float = 0.0) -> None:
        """Keep ``value`` for ``ttl`` seconds of the clock (0: until evicted)."""
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

    def __contains__(self, key: str) -> bool:
        """Held (expired or not), without touching its recency."""
        return key in self._items
