"""Which of a server's worker processes runs its relay (and, without a broker, its handlers).

One process per server holds an exclusive ``flock`` on ``<runtime_dir>/relay.lock`` and runs
the relay; the others stand by and try again every ``RETRY`` seconds, so the lock passes to a
survivor when its holder exits (the kernel drops the lock with the process). A write that
commits events in a standby process wakes the holder with one datagram on
``<runtime_dir>/relay.sock``, as a commit in the holder wakes its own relay, so the events of
every worker go out at once rather than at the holder's next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
from collections.abc import Callable

RETRY = 1.0


class RelayLeader:
    def __init__(self, directory: str) -> None:
        self.lock_path = os.path.join(directory, "relay.lock")
        self.sock_path = os.path.join(directory, "relay.sock")
        self._fd: int | None = None
        self._listener: socket.socket | None = None
        self._sender: socket.socket | None = None
        self.state_path = os.path.join(directory, "broker.state")
        self._told: bool | None = None
        self._reporter: asyncio.Task[None] | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def wait(self) -> None:
        """Until this process holds the lock."""
        while True:  # polling: the kernel tells no waiter when a flock is released
            if self.try_acquire():
                return
            await asyncio.sleep(RETRY)

    def listen(self, on_kick: Callable[[], None],
               connected: Callable[[], bool] | None = None) -> None:
        """The holder: call ``on_kick`` when another worker commits events, and keep the
        broker's state (``connected``) where the others' ``/-/ready`` can read it."""
        assert self._fd is not None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.sock_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(self.sock_path)
        sock.setblocking(False)

        def drain() -> None:
            with contextlib.suppress(BlockingIOError, OSError):
                while sock.recv(64):
                    pass
            on_kick()

        asyncio.get_running_loop().add_reader(sock.fileno(), drain)
        self._listener = sock
        if connected is not None:
            self._reporter = asyncio.create_task(self._report(connected))

    async def _report(self, connected: Callable[[], bool]) -> None:
        while True:
            now = connected()
            if now != self._told:
                with contextlib.suppress(OSError):
                    self._write_state(now)
                    self._told = now
            await asyncio.sleep(0.1)  # a bool read; the file is written only on a change

    def _write_state(self, connected: bool) -> None:
        """A few bytes to a local file on a change of state: not worth a thread."""
        with open(self.state_path + ".tmp", "w") as f:
            f.write("ok" if connected else "down")
        os.replace(self.state_path + ".tmp", self.state_path)

    def broker_connected(self) -> bool:
        """A standby: whether the holder's relay is connected to the broker now."""
        try:
            with open(self.state_path) as f:
                return f.read() == "ok"
        except OSError:
            return False

    def kick(self) -> None:
        """A standby: wake the holder's relay (best effort: it also polls)."""
        if self._sender is None:
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
        with contextlib.suppress(OSError):
            self._sender.sendto(b"k", self.sock_path)

    def close(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
            self._reporter = None
        if self._listener is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
            with contextlib.suppress(OSError):
                os.unlink(self.sock_path)
        if self._sender is not None:
            self._sender.close()
            self._sender = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
