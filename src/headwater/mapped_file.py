"""A file of fixed size that each worker process of one server maps into memory (under the
server's runtime directory), and the file's lock: the ground under the tables the workers
share without a service (rate-limit counters, recent writers).

``words`` sees the file as signed 8-byte integers. Reading or writing one is a ``memcpy`` of
8 aligned bytes, which compilers emit as one load (store): a reader without the lock sees a
word's old value or its new one, never a mix of both.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os


class _Lock:
    __slots__ = ("fd", "how")

    def __init__(self, fd: int, how: int) -> None:
        self.fd = fd
        self.how = how

    def __enter__(self) -> None:
        fcntl.flock(self.fd, self.how)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)


class MappedFile:
    def __init__(self, path: str, size: int) -> None:
        """Open (or create) ``path`` mapped at ``size`` bytes (a multiple of 8); a smaller
        file grows with zeros."""
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self.mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._lock_fd = os.open(path, os.O_RDWR)
        self.words = memoryview(self.mm).cast("q")
        self._exclusive = _Lock(self._lock_fd, fcntl.LOCK_EX)
        self._shared = _Lock(self._lock_fd, fcntl.LOCK_SH)

    def lock(self, *, shared: bool = False) -> _Lock:
        """The file's lock across processes: exclusive to change it, shared to read it
        consistently (a context manager; a class, not a generator, for the hot path)."""
        return self._shared if shared else self._exclusive

    def clear(self) -> None:
        """Zero the whole file (under the exclusive lock)."""
        self.mm[:] = bytes(len(self.mm))

    def close(self) -> None:
        with contextlib.suppress(ValueError, OSError, BufferError):
            self.words.release()
            self.mm.close()
            os.close(self._lock_fd)
