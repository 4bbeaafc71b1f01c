"""Rate-limit counters shared by the worker processes of one server, without Redis.

A memory-mapped file in the server's runtime directory holds a fixed table of slots
``(key hash, expiry, count)``; a key hashes to a slot and probes linearly past it. Every
increment takes the file's exclusive lock for a few microseconds, so N workers together
allow exactly a limit's amount per window, as one process would. The table holds
``SLOTS`` live windows; only when more than ``PROBES`` consecutive slots are live is the one
expiring first reused, which can forget a count (more than ``SLOTS`` clients active in one
window), never refuse a request that should pass.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
import time

from headwater.mapped_file import MappedFile

SLOTS = 1 << 16
PROBES = 64
_SLOT = struct.Struct("<Qqq")  # key hash (0 = empty), expiry (epoch seconds), count


class SharedCounters:
    """The subset of ``limits``' storage the rate limiter uses: ``incr`` and ``get``."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "ratelimit-counters")
        self._file = MappedFile(self.path, SLOTS * _SLOT.size)
        self._mm = self._file.mm

    @staticmethod
    def _hash(key: str) -> int:
        h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
        return h or 1

    def _find(self, h: int, now: float) -> tuple[int, bool]:
        """The slot offset for ``h`` and whether it holds ``h``'s live count. A slot once
        used is never emptied (only reused once expired), so a key is never past an empty
        slot: the probe stops at the first."""
        mm, start = self._mm, h % SLOTS
        free, oldest, oldest_expiry = -1, -1, math.inf
        for i in range(PROBES):
            off = ((start + i) % SLOTS) * _SLOT.size
            slot_hash, expiry, _ = _SLOT.unpack_from(mm, off)
            if slot_hash == h:
                return off, expiry > now
            if slot_hash == 0:
                return (free if free >= 0 else off), False
            if expiry <= now:
                if free < 0:
                    free = off
            elif expiry < oldest_expiry:
                oldest, oldest_expiry = off, expiry
        return (free if free >= 0 else oldest), False

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        h, now = self._hash(key), time.time()
        with self._file.lock():
            off, live = self._find(h, now)
            count = (_SLOT.unpack_from(self._mm, off)[2] if live else 0) + amount
            ends = _SLOT.unpack_from(self._mm, off)[1] if live else int(now + expiry) + 1
            _SLOT.pack_into(self._mm, off, h, ends, count)
            return count

    async def get(self, key: str) -> int:
        h, now = self._hash(key), time.time()
        with self._file.lock(shared=True):
            off, live = self._find(h, now)
            return int(_SLOT.unpack_from(self._mm, off)[2]) if live else 0

    def close(self) -> None:
        self._file.close()
