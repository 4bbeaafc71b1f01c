"""Admission to a full L1: a TinyLFU-style doorkeeper.

An LRU lets every miss in: on a table much larger than the cache, a stream of reads that
never repeat (one-hit wonders) evicts the hot entries and pays a store and an eviction per
request for nothing. Once the cache is full, a key is stored only on its second miss within a
window: the first miss is remembered here (its hash in a bounded set), the second is admitted.
The set is emptied every ``window`` remembered keys, so its memory stays bounded and a key seen
once long ago counts as new again (the "periodic reset" of TinyLFU's sample).

While the cache has room nothing is refused: storing costs no eviction, and a repeated read
answers ``HIT`` from its second request, as it always did.
"""

from __future__ import annotations


class Doorkeeper:
    """Remembers the hashes of keys missed once since the last reset."""

    __slots__ = ("_seen", "resets", "window")

    def __init__(self, window: int) -> None:
        self.window = max(1, window)
        self._seen: set[int] = set()
        self.resets = 0

    def admit(self, key: str) -> bool:
        """True when ``key`` was already missed in this window (the second miss); otherwise
        remember it and refuse. A hash collision admits a key early, which is harmless."""
        h = hash(key)
        seen = self._seen
        if h in seen:
            seen.discard(h)
            return True
        if len(seen) >= self.window:
            seen.clear()
            self.resets += 1
        seen.add(h)
        return False

    def __len__(self) -> int:
        return len(self._seen)
