"""Who wrote within the last ``read_your_writes_window`` seconds: the principals whose plain
reads stay on the primary without a consistency token.

A server started by ``headwater serve`` keeps them in a memory-mapped file in its runtime
directory, so the window is the server's, whichever of its workers took the write and
whichever takes the read. A process without a runtime directory (an app made by
``create_app``) keeps them in its own memory.

Times are ``CLOCK_MONOTONIC`` nanoseconds (``time.monotonic_ns``): one clock for every
process on the machine (Linux counts it from boot), so workers compare each other's times,
and it never jumps with the wall clock, so an NTP step can neither cut a window short (a read
sent to a lagging replica) nor stretch one.
"""

from __future__ import annotations

import os
import zlib
from time import monotonic_ns

from headwater.mapped_file import MappedFile

SLOTS = 1 << 18
#: Word 0: the latest window end of anyone, so that a read skips the slot while every window
#: is closed; the slots follow.
_LATEST = 0


class RecentWriters:
    """One process's memory: principal → when its window ends, oldest first."""

    def __init__(self, window: float) -> None:
        self.window = int(window * 1e9)
        self._until: dict[str, int] = {}

    def wrote(self, who: str) -> None:
        now = monotonic_ns()
        until = self._until
        until.pop(who, None)
        until[who] = now + self.window
        while until:
            oldest = next(iter(until))
            if until[oldest] > now:
                break
            del until[oldest]

    def recent(self, who: str) -> bool:
        if not self._until:
            return False
        ends = self._until.get(who)
        return ends is not None and monotonic_ns() < ends

    def close(self) -> None:
        self._until.clear()


class SharedRecentWriters:
    """The same for every worker of one server: a principal hashes to one of ``SLOTS``
    8-byte slots, which holds the latest window end of every principal hashing there.

    Nothing is ever evicted, so no principal is forgotten inside its window; two principals
    sharing a slot share windows, which sends the other's reads to the primary, never the
    reverse (with W principals' windows open, a reader's chance is about W / ``SLOTS``: 1%
    at 2,600). Writes take the file's lock; a read is at most two aligned 8-byte loads,
    without it (``mapped_file``): a slot and the latest end only grow, and a write sets both
    before its response, so a read that follows the response sees them.
    """

    def __init__(self, directory: str, window: float) -> None:
        self.window = int(window * 1e9)
        self._file = MappedFile(os.path.join(directory, "recent-writers"), (1 + SLOTS) * 8)
        self._words = self._file.words
        with self._file.lock():
            # A window ending further than a window from now was opened on another clock:
            # the file outlived a reboot (a ``runtime_dir`` of one's own), or a longer window
            # was configured before a restart. Those windows are over.
            if self._words[_LATEST] > monotonic_ns() + self.window:
                self._file.clear()

    @staticmethod
    def _slot(who: str) -> int:
        # crc32: a stable hash (``hash`` differs per process), 4x cheaper than blake2b here.
        return 1 + zlib.crc32(who.encode()) % SLOTS

    def wrote(self, who: str) -> None:
        words, slot = self._words, self._slot(who)
        with self._file.lock():
            ends = monotonic_ns() + self.window
            if words[slot] < ends:
                words[slot] = ends
            if words[_LATEST] < ends:
                words[_LATEST] = ends

    def recent(self, who: str) -> bool:
        words, now = self._words, monotonic_ns()
        return words[_LATEST] > now and words[self._slot(who)] > now

    def close(self) -> None:
        self._file.close()
