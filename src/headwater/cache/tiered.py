"""The read cache: L1 in-process → L2 Redis, exact by table versions, single-flight on misses,
stale-while-revalidate and stale-if-error.

Lookups never decide access: they are handed keys that already carry the caller's context.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from headwater.cache import entry as entries
from headwater.cache.admission import Doorkeeper
from headwater.cache.entry import Entry
from headwater.cache.keys import etag, plan_key
from headwater.cache.memory import MemoryLRU
from headwater.cache.versions import EPOCH, Versions, open_versions
from headwater.config import Settings
from headwater.errors import (
    BreakerOpen,
    DatabaseUnavailable,
    HeadwaterError,
    RedisUnavailable,
    Timeout,
)
from headwater.model.plan import ReadPlan
from headwater.model.result import ReadResult
from headwater.observability.metrics import Metrics

if TYPE_CHECKING:  # redis is the redis extra: imported only when configured
    from headwater.cache.redis import RedisStore

Status = Literal["HIT", "MISS", "STALE"]
#: The doorkeeper remembers at least this many first misses between its resets.
MIN_WINDOW = 1024
#: The versions of a copy taken while they could not be read: equal to no real versions, so
#: it is never fresh and only ever served as stale-if-error.
STALE_ONLY: tuple[int, ...] = ()
#: Errors that mean "the database cannot answer now", for stale-if-error.
_DB_DOWN = (DatabaseUnavailable, Timeout, BreakerOpen)


@dataclass(slots=True)
class Cached:
    entry: Entry
    status: Status

    @property
    def age(self) -> int:
        return max(0, int(time.time() - self.entry.stored_at))


def _parse_ttls(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        if name.strip() and value.strip():
            out[name.strip()] = float(value)
    return out


class ReadCache:
    def __init__(self, settings: Settings, metrics: Metrics, *, redis: RedisStore | None,
                 log: Any) -> None:
        self.settings = settings
        self.metrics = metrics
        self.log = log
        self.l1: MemoryLRU[Entry] = MemoryLRU(settings.cache_l1_bytes, Entry.size)
        self.aliases: MemoryLRU[str] = MemoryLRU(max(1 << 20, settings.cache_l1_bytes // 16),
                                                 lambda k: 120)
        #: L2, present exactly when the versions live in the same Redis.
        self.l2 = redis
        namespace = settings.cache_namespace or _namespace(settings.database_url)
        self.versions: Versions = open_versions(settings, redis, namespace=namespace, log=log)
        self._ttls = _parse_ttls(settings.cache_table_ttls)
        self._excluded = frozenset(t.strip() for t in settings.cache_exclude.split(",")
                                   if t.strip())
        #: Admission to a full L1 (None: every miss is stored, plain LRU).
        self.doorkeeper = Doorkeeper(MIN_WINDOW) if settings.cache_admission else None
        self._inflight: dict[str, asyncio.Future[Entry | None]] = {}
        self._refreshing: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._prefix = f"hw:{namespace}:e:"

    async def start(self) -> None:
        await self.versions.start()

    async def close(self) -> None:
        await self.versions.close()

    # --- versions ---------------------------------------------------------------------------

    async def _current(self, tables: Sequence[str]) -> tuple[int, ...] | None:
        """Versions read now, or None when they cannot be known (Redis down: bypass).

        Callers try ``versions.local`` first, so a hit that needs no I/O costs no await."""
        try:
            return await self.versions.current(tables)
        except RedisUnavailable:
            return None

    async def invalidate(self, tables: Sequence[str], lsn: int = 0) -> None:
        """After a commit, before the response: no node may serve older data after this.
        ``lsn``: the commit's position, with read replicas (``Versions.bump``)."""
        if not tables:
            return
        try:
            await self.versions.bump(tables, lsn)
        except RedisUnavailable:
            # Marked dirty: the epoch moves before this node trusts the cache again.
            self.log.warning("cache_invalidation_deferred", tables=list(tables))

    async def invalidate_all(self, lsn: int = 0) -> None:
        await self.invalidate([EPOCH], lsn)

    # --- lookups ----------------------------------------------------------------------------

    def _fresh(self, e: Entry, versions: tuple[int, ...] | None, now: float) -> bool:
        return versions is not None and e.versions == versions and now < e.expires_at

    def fast(self, raw: str) -> Cached | Entry | None:
        """The repeated-request path: raw key → normalized key → L1, before any parsing, and
        without a coroutine when this process knows the versions (the embedded mode, and
        Redis's bounded mode while its copy is current). ``Cached``: a fresh hit; an ``Entry``:
        held here, but its versions must be asked for (``confirm``); None: nothing to serve."""
        key = self.aliases.get(raw)
        if key is None:
            return None
        e = self.l1.get(key)
        if e is None:
            return None
        versions = self.versions.local(e.tables)
        if versions is None:
            return e
        if e.versions == versions and time.time() < e.expires_at:
            self.metrics.cache_result("l1", "hit")
            return Cached(e, "HIT")
        return None

    async def confirm(self, e: Entry) -> Cached | None:
        """``fast``'s answer when the versions live elsewhere (Redis in strict mode)."""
        if self._fresh(e, await self._current(e.tables), time.time()):
            self.metrics.cache_result("l1", "hit")
            return Cached(e, "HIT")
        return None

    def cacheable(self, plan: ReadPlan) -> bool:
        return plan.media != "csv" and not (plan.tables & self._excluded)

    async def read(self, raw: str, plan: ReadPlan, context: str,
                   execute: Callable[[], Awaitable[ReadResult]]) -> Cached | ReadResult:
        key = plan_key(plan, context)
        tables = tuple(sorted(plan.tables | plan.depends))
        now = time.time()
        e = self.l1.get(key)
        tier = "l1"
        versions: tuple[int, ...] | None
        if e is None and self.l2 is not None:
            tier = "l2"
            versions, e = await self._l2(self.l2, key, tables)
        else:
            versions = self.versions.local(tables)
            if versions is None:
                versions = await self._current(tables)
        if e is not None and self._fresh(e, versions, now):
            self.metrics.cache_result(tier, "hit")
            if tier == "l2":
                self.l1.set(key, e)
            self.aliases.set(raw, key)
            return Cached(e, "HIT")
        if (e is not None and versions is not None and e.versions == versions
                and now < e.expires_at + self.settings.cache_stale_while_revalidate):
            # Only time has passed, no write: serve it and refresh behind the response.
            self.metrics.cache_result(tier, "stale")
            self._refresh_later(key, tables, versions, plan, execute)
            return Cached(e, "STALE")
        self.metrics.cache_result(tier, "miss")
        if versions is None:
            return await self._bypass(key, tables, execute, stale=e)
        return await self._fill(raw, key, tables, versions, execute, stale=e)

    async def _bypass(self, key: str, tables: tuple[str, ...],
                      execute: Callable[[], Awaitable[ReadResult]],
                      stale: Entry | None) -> Cached | ReadResult:
        """The versions cannot be known (Redis down, or its circuit open): nothing may be
        served as fresh, but the copies held here stay the fallback should the database fail
        too, and the newest answer is kept as one (never served while the database is up)."""
        try:
            result = await execute()
        except _DB_DOWN:
            fallback = self._stale(key, stale)
            if fallback is None:
                raise
            return fallback
        e = self._entry(result, tables, STALE_ONLY)
        if e is not None:
            self.l1.set(key, e)
        return result

    def _stale(self, key: str, seen: Entry | None) -> Cached | None:
        """Stale-if-error: the newest copy held of ``key`` (the one the lookup saw, else
        L1's), while its ``cache_stale_if_error`` window lasts."""
        e = seen or self.l1.get(key)
        if e is None or time.time() >= e.stale_until:
            return None
        self.metrics.cache_result("l1", "stale")
        return Cached(e, "STALE")

    async def _l2(self, l2: RedisStore, key: str, tables: Sequence[str],
                  ) -> tuple[tuple[int, ...] | None, Entry | None]:
        local = self.versions.local(tables)
        try:
            if local is not None:
                data = await l2.get(self._prefix + key)
                return local, entries.load(data) if data else None
            data, versions = await self.versions.with_entry(self._prefix + key, tables)
        except RedisUnavailable:
            return None, None
        return versions, entries.load(data) if data else None

    async def _fill(self, raw: str, key: str, tables: tuple[str, ...],
                    versions: tuple[int, ...], execute: Callable[[], Awaitable[ReadResult]],
                    stale: Entry | None) -> Cached | ReadResult:
        waiting = self._inflight.get(key)
        if waiting is None:
            # Another request may have filled it while this one awaited the versions.
            done = self.l1.get(key)
            if done is not None and self._fresh(done, versions, time.time()):
                return Cached(done, "HIT")
        if waiting is not None:
            shared = await asyncio.shield(waiting)
            if shared is not None:
                return Cached(shared, "MISS")
            return await execute()
        future: asyncio.Future[Entry | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            try:
                result = await execute()
            except _DB_DOWN:
                future.set_result(None)
                fallback = self._stale(key, stale)
                if fallback is None:
                    raise
                return fallback
            # Refused: no entry is built (no ETag hash, no store, no eviction); requests
            # waiting on this one run their own read.
            e = self._entry(result, tables, versions) if self._admit(key, result) else None
            future.set_result(e)
            if e is not None:
                self.aliases.set(raw, key)
                await self._store(key, e)
            return result
        except BaseException:
            if not future.done():
                future.set_result(None)
            raise
        finally:
            self._inflight.pop(key, None)

    def _admit(self, key: str, result: ReadResult) -> bool:
        """Whether a miss's answer may be stored: always while L1 has room for it or holds the
        key already; once storing would evict, only on the key's second miss (doorkeeper)."""
        keeper = self.doorkeeper
        if keeper is None or result.body is None:
            return True
        l1 = self.l1
        if l1.bytes + len(result.body) + entries.OVERHEAD <= l1.max_bytes or key in l1:
            return True
        # The window follows the number of entries a full L1 holds.
        keeper.window = max(MIN_WINDOW, len(l1))
        return keeper.admit(key)

    def _entry(self, result: ReadResult, tables: tuple[str, ...],
               versions: tuple[int, ...]) -> Entry | None:
        if (result.body is None or len(result.body) > self.settings.cache_max_entry_bytes
                or not result.cacheable):
            return None
        now = time.time()
        ttl = min((self._ttls.get(t, self.settings.cache_ttl) for t in tables),
                  default=self.settings.cache_ttl)
        return Entry(body=result.body, etag=etag(result.body), rows=result.rows,
                     total=result.total, first=result.first, tables=tables, versions=versions,
                     stored_at=now, expires_at=now + ttl,
                     stale_until=now + ttl + self.settings.cache_stale_if_error,
                     cache_control=self.cache_control(tables))

    def cache_control(self, tables: Sequence[str], *, private: bool = False) -> str:
        """``private`` when the response depends on who asks (policies are enforced): shared
        caches (proxies, CDNs) must not keep it; otherwise they may, revalidating by ETag."""
        age = self.settings.cache_control_max_age
        if private:
            return f"private, max-age={age}" if age else "private, no-cache"
        return f"public, max-age={age}" if age else "no-cache"

    async def _store(self, key: str, e: Entry) -> None:
        self.l1.set(key, e)
        if self.l2 is not None:
            ttl = e.stale_until - e.stored_at
            with contextlib.suppress(RedisUnavailable):
                await self.l2.set(self._prefix + key, entries.dump(e), ttl)

    def _refresh_later(self, key: str, tables: tuple[str, ...], versions: tuple[int, ...],
                       plan: ReadPlan, execute: Callable[[], Awaitable[ReadResult]]) -> None:
        if key in self._refreshing:
            return
        self._refreshing.add(key)

        async def refresh() -> None:
            try:
                result = await execute()
                e = self._entry(result, tables, versions)
                if e is not None:
                    await self._store(key, e)
            except HeadwaterError as exc:
                self.log.warning("cache_refresh_failed", error=exc.message)
            finally:
                self._refreshing.discard(key)

        task = asyncio.ensure_future(refresh())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def stats(self) -> dict[str, int]:
        return {"l1_bytes": self.l1.bytes, "l1_entries": len(self.l1),
                "evictions": self.l1.evictions}


def _namespace(database_url: str) -> str:
    import hashlib

    return hashlib.blake2b(database_url.encode(), digest_size=6).hexdigest()
