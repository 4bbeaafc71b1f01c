"""Table versions: the counters that make the cache exact about invalidation.

A write bumps the versions of the tables it touched after it commits and before its response
is sent; an entry is valid only while the versions it was read at are still current. Versions
live where every node (or worker) can see them:

- ``SharedVersions``: a small memory-mapped file per database on this host, so several worker
  processes of the embedded mode stay exactly coherent with no service at all;
- ``RedisVersions``: a Redis hash shared by every node. ``strict`` reads it on every lookup
  (one round trip, pipelined with the L2 read); ``bounded`` trusts a local copy kept current
  by pub/sub, and falls back to reading Redis whenever that copy may be older than the bound.

Both sit behind ``Versions``; ``open_versions`` picks one from the settings, and the tiered
cache sees only the interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import struct
import tempfile
import time
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from headwater.config import Settings
from headwater.errors import RedisNotAsked, RedisUnavailable
from headwater.mapped_file import MappedFile

if TYPE_CHECKING:  # redis is the redis extra: imported only when configured
    from headwater.cache.redis import RedisStore

EPOCH = "__epoch__"
#: Epochs start at random below this: within Lua's exact integers (a script's HINCRBY reply).
_EPOCHS = 1 << 52
#: The highest commit position (PostgreSQL's WAL LSN) announced with a bump: a read from a
#: replica that has not replayed it may predate a version already seen, and is not cached.
LSN = "~lsn"
_SLOTS = 4096
_SLOT = struct.Struct("<q")
#: The words of a server's shared dirty flag (``_DirtyFlag``).
_DIRTY, _RAISED, _HEALED = 0, 1, 2


class Versions(Protocol):
    """The versions of some tables, then the epoch, as one tuple an entry is compared with.

    ``RedisUnavailable`` from ``current``, ``with_entry`` or ``bump`` means the versions cannot
    be known or moved now: the cache is bypassed, and a store that missed a bump moves the
    epoch before it answers again.
    """

    def local(self, tables: Sequence[str]) -> tuple[int, ...] | None:
        """Versions known without waiting, or None when they must be read with ``current``.

        On the hot path (an L1 hit): no I/O, no await.
        """
        ...

    async def current(self, tables: Sequence[str]) -> tuple[int, ...]:
        """Versions read after this call began: a bump acknowledged before it is seen."""
        ...

    async def with_entry(self, key: str, tables: Sequence[str],
                         ) -> tuple[bytes | None, tuple[int, ...]]:
        """The L2 entry stored under ``key`` beside these versions (None when there is none)
        and the current versions, in one round trip."""
        ...

    async def bump(self, tables: Sequence[str], lsn: int = 0) -> None:
        """Move these tables' versions; ``lsn`` (with read replicas) is the write's commit
        position, announced with the versions (``lsn`` below)."""
        ...

    @property
    def lsn(self) -> int:
        """The highest commit LSN announced with any bump this process has seen, read no
        earlier than the versions it last read (replicas, ``service.reads``)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class SharedVersions:
    """Counters in a memory-mapped file shared by every process on the host for one database.

    Tables hash to slots; two tables sharing a slot only cause extra invalidation, never a
    stale read. Increments take an exclusive file lock; reads are single aligned 8-byte loads.
    """

    def __init__(self, database_url: str, directory: str | None = None) -> None:
        digest = hashlib.blake2b(database_url.encode(), digest_size=8).hexdigest()
        self.path = os.path.join(directory or tempfile.gettempdir(),
                                 f"headwater-versions-{digest}")
        # The LSN lives after the slots: a file made by an older version grows by it.
        self._file = MappedFile(self.path, _SLOTS * 8 + 8)
        self._mm = self._file.mm
        self._offsets: dict[tuple[str, ...], tuple[int, ...]] = {}

    @staticmethod
    def _offset(table: str) -> int:
        if table == EPOCH:
            return 0
        return (zlib.crc32(table.encode()) % (_SLOTS - 1) + 1) * 8

    def local(self, tables: Sequence[str]) -> tuple[int, ...]:
        """Always known: the file is the source of truth, read in place."""
        mm = self._mm
        offsets = self._offsets.get(tuple(tables))
        if offsets is None:
            offsets = self._offsets[tuple(tables)] = tuple(
                self._offset(t) for t in (*tables, EPOCH))
        unpack = _SLOT.unpack_from
        if len(offsets) == 2:
            # One table and the epoch, most reads: no generator.
            return unpack(mm, offsets[0])[0], unpack(mm, offsets[1])[0]
        return tuple([unpack(mm, off)[0] for off in offsets])

    async def current(self, tables: Sequence[str]) -> tuple[int, ...]:
        return self.local(tables)

    async def with_entry(self, key: str, tables: Sequence[str],
                         ) -> tuple[bytes | None, tuple[int, ...]]:
        # No L2 lives beside a file on one host.
        return None, self.local(tables)

    async def bump(self, tables: Sequence[str], lsn: int = 0) -> None:
        with self._file.lock():
            # The position first: whoever sees the new versions sees it too.
            if lsn > self.lsn:
                _SLOT.pack_into(self._mm, _SLOTS * 8, lsn)
            for off in {self._offset(t) for t in tables}:
                _SLOT.pack_into(self._mm, off, _SLOT.unpack_from(self._mm, off)[0] + 1)

    @property
    def lsn(self) -> int:
        value: int = _SLOT.unpack_from(self._mm, _SLOTS * 8)[0]
        return value

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self._file.close()


class _Batch:
    """The version reads of concurrent lookups, sent as one HMGET.

    A lookup joins the batch that is sent at the event loop's next turn, so every read reaches
    Redis after the lookup began: a bump acknowledged before a request arrived is always seen
    (strict mode's promise), while a burst of requests shares one round trip.
    """

    def __init__(self, store: RedisStore, hkey: str) -> None:
        self.store = store
        self.hkey = hkey
        self._fields: set[str] = set()
        self._future: asyncio.Future[dict[str, int]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def read(self, fields: Sequence[str]) -> dict[str, int]:
        future = self._future
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._future = loop.create_future()
            loop.call_soon(self._send)
        self._fields.update(fields)
        # Shielded: one caller's cancellation must not cancel the others' answer.
        return await asyncio.shield(future)

    def _send(self) -> None:
        future, fields = self._future, list(self._fields)
        self._future, self._fields = None, set()
        assert future is not None

        async def fetch() -> None:
            try:
                values = await self.store.get_fields(self.hkey, fields)
            except asyncio.CancelledError:
                future.cancel()
                raise
            except Exception as exc:
                future.set_exception(exc)
                # Every waiter may have been cancelled: do not warn about an unread error.
                future.exception()
            else:
                future.set_result(dict(zip(fields, values, strict=True)))

        task = asyncio.ensure_future(fetch())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _DirtyFlag:
    """A Redis failure that one worker saw, known to every worker of its server: the
    workers' runtime directory holds three words per cache namespace, ``raised`` (failures
    marked), ``healed`` (the ``raised`` a heal began at) and ``dirty`` (``raised > healed``,
    kept in one word so that the hot path reads one aligned word, without the lock).

    A heal counts for the failures marked before it began: one marked while it runs keeps
    the flag raised. One file per namespace, as a heal moves that namespace's epoch only.
    Without a runtime directory (an app made by ``create_app``) the words
    are this process's own.
    """

    def __init__(self, directory: str | None, namespace: str) -> None:
        self._file: MappedFile | None = None
        if directory:
            digest = hashlib.blake2b(namespace.encode(), digest_size=8).hexdigest()
            self._file = MappedFile(os.path.join(directory, f"versions-dirty-{digest}"), 24)
            self.words = self._file.words
        else:
            self.words = memoryview(bytearray(24)).cast("q")

    def _locked(self, *, shared: bool = False) -> contextlib.AbstractContextManager[None]:
        if self._file is None:
            return contextlib.nullcontext()
        return self._file.lock(shared=shared)

    def mark(self) -> None:
        words = self.words
        with self._locked():
            # ``dirty`` first: a process killed in between leaves the flag raised (healed by
            # the next heal), never a count above ``healed`` with the flag down, seen by none.
            words[_DIRTY] = 1
            words[_RAISED] += 1

    def raised(self) -> int:
        """Read before a heal begins; handed to ``healed`` after it succeeded."""
        with self._locked(shared=True):
            return int(self.words[_RAISED])

    def healed(self, raised: int) -> None:
        words = self.words
        with self._locked():
            if raised > words[_HEALED]:
                words[_HEALED] = raised
            words[_DIRTY] = int(words[_RAISED] > words[_HEALED])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class RedisVersions:
    def __init__(self, store: RedisStore, namespace: str, *, bounded_ms: float | None = None,
                 log: Any = None, runtime_dir: str | None = None) -> None:
        self.store = store
        self.hkey = f"hw:{namespace}:versions"
        self.channel = f"hw:{namespace}:bumps"
        self.bounded = bounded_ms / 1000 if bounded_ms else None
        self._local: dict[str, int] = {}
        self._heard = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._batch = _Batch(store, self.hkey)
        self._log = log
        self._node = os.urandom(6).hex()
        #: The highest LSN read beside versions in strict mode (bounded: in ``_local``).
        self._seen_lsn = 0
        #: Set when Redis failed a call: a bump of this worker's that went unannounced, or a
        #: read (another worker's or node's bump may have failed meanwhile, and copies held
        #: at the versions Redis still has would then predate it). The epoch moves once Redis
        #: is back, before this worker trusts a version again.
        self.dirty = False
        #: ``dirty`` for every worker of the server: a sibling that exits (or is killed)
        #: before it heals leaves the heal to the others (``_DirtyFlag``).
        self._shared = _DirtyFlag(runtime_dir, namespace)
        self._shared_dirty = self._shared.words
        self._closed = False

    # --- strict: read Redis ----------------------------------------------------------------

    async def current(self, tables: Sequence[str]) -> tuple[int, ...]:
        if self.dirty or self._shared_dirty[_DIRTY]:
            await self._heal()
        try:
            values = await self._batch.read((*tables, EPOCH, LSN))
            epoch = values[EPOCH] or await self._new_epoch()
        except RedisUnavailable as exc:
            self._failed(exc)
            raise
        self._seen_lsn = max(self._seen_lsn, values[LSN])
        return (*(values[t] for t in tables), epoch)

    async def with_entry(self, key: str, tables: Sequence[str],
                         ) -> tuple[bytes | None, tuple[int, ...]]:
        if self.dirty or self._shared_dirty[_DIRTY]:
            await self._heal()
        try:
            data, values = await self.store.get_with_fields(key, self.hkey,
                                                            [*tables, EPOCH, LSN])
        except RedisUnavailable as exc:
            self._failed(exc)
            raise
        self._seen_lsn = max(self._seen_lsn, values[-1])
        if not values[-2]:
            try:
                values[-2] = await self._new_epoch()
            except RedisUnavailable as exc:
                self._failed(exc)
                raise
        return data, tuple(values[:-1])

    async def bump(self, tables: Sequence[str], lsn: int = 0) -> None:
        try:
            # Past the breaker: it opens on any failure of the Redis (a cluster's lost node),
            # while the node with the versions may still answer this, and other nodes' reads
            # of them; a bump that could land must not go unannounced.
            values = await self.store.bump(self.hkey, list(tables), self.channel, lsn,
                                           guarded=False)
        except RedisUnavailable:
            self._mark_dirty()
            raise
        self._learn({**dict(zip(tables, values, strict=True)), LSN: lsn})

    def _failed(self, exc: RedisUnavailable) -> None:
        if not isinstance(exc, RedisNotAsked):  # a refusal learns nothing new (``dirty``)
            self._mark_dirty()

    def _mark_dirty(self) -> None:
        self.dirty = True
        self._shared.mark()

    @property
    def lsn(self) -> int:
        return max(self._seen_lsn, self._local.get(LSN, 0))

    async def _new_epoch(self, *, guarded: bool = True) -> int:
        """The hash has no epoch: it is new, or Redis lost it (a node restarted without
        persistence, a failover to a replica that missed the last increments) and its
        counters start again from 0, towards values that copies were stored at. The epoch
        starts at a random value, so no version read from now on equals one from before."""
        epoch = await self.store.init_field(self.hkey, EPOCH, secrets.randbelow(_EPOCHS) + 1,
                                            guarded=guarded)
        self._learn({EPOCH: epoch})
        return epoch

    async def _heal(self, *, guarded: bool = True) -> None:
        """Writes may have gone unannounced while Redis was down (this worker's, a sibling's
        marked in the shared flag, or others' it cannot know of): invalidate everything,
        everywhere. A failure marked after this began keeps the shared flag raised."""
        raised = self._shared.raised()
        await self._new_epoch(guarded=guarded)
        values = await self.store.bump(self.hkey, [EPOCH], self.channel, guarded=guarded)
        self._learn({EPOCH: values[0]})
        self.dirty = False
        self._shared.healed(raised)

    # --- bounded: a local copy kept fresh by pub/sub ---------------------------------------

    def local(self, tables: Sequence[str]) -> tuple[int, ...] | None:
        """Versions without I/O, or None when the copy may lag more than the bound."""
        if (self.bounded is None or self.dirty or self._shared_dirty[_DIRTY]
                or time.monotonic() - self._heard > self.bounded):
            return None
        get = self._local.get
        return tuple(get(t, 0) for t in (*tables, EPOCH))

    def _learn(self, values: dict[str, int]) -> None:
        epoch = values.get(EPOCH)
        if epoch is not None and epoch != self._local.get(EPOCH):
            # A new epoch (a heal, or a hash Redis lost): the counters may have started
            # again below what was known, so what was known of them goes.
            self._local = {LSN: self._local.get(LSN, 0), EPOCH: epoch}
        for k, v in values.items():
            if v > self._local.get(k, 0):
                self._local[k] = v

    async def start(self) -> None:
        if self.bounded is None:
            return
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._beat())]

    async def close(self) -> None:
        """Before the store closes (``Headwater.close``): a worker that exits dirty heals
        first, once, within the store's deadline, so that its unannounced write does not wait
        for a sibling's next read (or, without siblings, for every copy's TTL)."""
        if self._closed:
            return
        self._closed = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.dirty or self._shared_dirty[_DIRTY]:
            try:
                async with asyncio.timeout(self.store.deadline):
                    # Past the breaker: still open after an outage, it would refuse the one
                    # attempt left, while Redis may well answer it.
                    await self._heal(guarded=False)
            except (RedisUnavailable, TimeoutError) as exc:
                if self._log is not None:
                    self._log.warning("versions_heal_at_exit_failed", error=type(exc).__name__)
        self._shared.close()

    async def _listen(self) -> None:
        """Follow the bump channel; reconnect with a pause whenever Redis fails."""
        while True:
            pubsub = self.store.client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                # Subscribe first, then read the hash: no bump can fall in between.
                raw: dict[Any, Any] = await self.store.client.hgetall(self.hkey)
                self._local = {(k.decode() if isinstance(k, bytes) else str(k)): int(v)
                               for k, v in raw.items()}
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is None:
                        continue
                    raw_data = msg["data"]
                    data = raw_data.decode() if isinstance(raw_data, bytes) else str(raw_data)
                    if data.startswith("~"):
                        node, _, sent = data[1:].partition(":")
                        if node == self._node:
                            # Everything Redis announced before this beat was sent is known.
                            self._heard = float(sent)
                        continue
                    learned: dict[str, int] = {}
                    for part in data.split(","):
                        name, _, value = part.rpartition("=")
                        if name and value.isdigit():
                            learned[name] = int(value)
                    self._learn(learned)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any Redis failure: distrust the copy, retry shortly
                self._heard = 0.0
                if self._log is not None:
                    self._log.warning("versions_subscription_lost", error=type(exc).__name__)
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _beat(self) -> None:
        """Heartbeats through the channel prove the local copy is at most one beat old."""
        assert self.bounded is not None
        interval = max(0.005, self.bounded / 4)
        while True:
            with contextlib.suppress(Exception):
                await self.store.client.publish(self.channel,
                                                f"~{self._node}:{time.monotonic()}")
            await asyncio.sleep(interval)


def open_versions(settings: Settings, redis: RedisStore | None, *, namespace: str,
                  log: Any = None) -> Versions:
    """Redis when there is one (every node sees it), else the host's shared counters file."""
    if redis is None:
        return SharedVersions(settings.database_url)
    bounded = settings.cache_bounded_lag_ms if settings.cache_mode == "bounded" else None
    # The server's workers share a dirty flag there (``_DirtyFlag``).
    return RedisVersions(redis, namespace, bounded_ms=bounded, log=log,
                         runtime_dir=settings.runtime_dir or None)
