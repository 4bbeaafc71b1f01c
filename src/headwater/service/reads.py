"""The read coordinator: policy → plan → cache → execute → encode, for every read.

The HTTP layer parses a request and hands it here with the caller's ``Access``; what comes
back (``ReadAnswer``) is everything the response needs and nothing about HTTP. Every decision
about a read is taken in this one place: whether the cache may answer (never for decrypted
plaintext, never for CSV), whether the result may stream, and what ``Cache-Control`` a
response under a policy carries.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any

from headwater.cache.entry import Entry
from headwater.cache.keys import etag, raw_key
from headwater.cache.tiered import Cached, ReadCache
from headwater.config import Settings
from headwater.db.database import Database
from headwater.db.explain import explain_read
from headwater.db.reader import execute_read
from headwater.db.replicas import Replicas
from headwater.errors import DatabaseUnavailable, RequestError, TransactionConflict
from headwater.model.catalog import Catalog
from headwater.model.consistency import NO_ORIGIN, ReadOrigin
from headwater.model.headers import PlanAsk, parse_accept
from headwater.model.plan import ReadPlan
from headwater.model.request import ApiRequest, MediaType
from headwater.model.result import ReadAnswer, ReadResult
from headwater.observability.timing import ServerTiming
from headwater.service.crypto import FieldCipher
from headwater.service.plan import plan_read
from headwater.service.policy import Access

#: A read as sent, before parsing, which is what the cache's repeated-request lookup keys on:
#: (table, query string, Accept, Prefer, Range). A plain tuple: it is built on every read,
#: and a named one costs a Python-level constructor call there.
RawRead = tuple[str, bytes, bytes, bytes, bytes]


@functools.lru_cache(maxsize=64)
def _accepted(accept: bytes) -> MediaType:
    """The media type a cached answer is sent as. The entry was stored under this very Accept
    header (it is part of the raw key), so it parsed before; a handful of distinct headers are
    seen in practice, hence the memo."""
    return parse_accept(accept.decode("latin-1"))


class Reads:
    """One per process; holds what every read needs."""

    def __init__(self, *, db: Database, settings: Settings, cache: ReadCache | None,
                 cipher: FieldCipher | None, catalog: Callable[[], Catalog],
                 replicas: Replicas | None = None) -> None:
        self.db = db
        self.settings = settings
        self.cache = cache
        self.cipher = cipher
        self.catalog = catalog
        self.replicas = replicas
        # Decrypted reads never stream: the body is decrypted whole before it is sent.
        self._unstreamed = settings.replace(stream_threshold_rows=1 << 62)
        #: ``application/vnd.pgrst.plan`` is offered (else it is a media type nobody serves).
        self.plans = settings.db_plan_enabled and db.dialect == "postgresql"
        # A replica is tried once: when it fails, the primary answers at once instead.
        self._on_replica = {id(x): x.replace(retry_attempts=1)
                            for x in (settings, self._unstreamed)}

    async def explain(self, api: ApiRequest, access: Access, ask: PlanAsk) -> bytes:
        """The read's EXPLAIN, planned under the caller's policies like the read itself;
        never cached."""
        plan = self._plan(dataclasses.replace(api, media=ask.target), access)
        return await explain_read(self.db, plan, self.settings, ask.format, ask.options)

    def _plan(self, api: ApiRequest, access: Access) -> ReadPlan:
        """A read planned under the settings' bounds and the caller's policies."""
        s = self.settings
        return plan_read(self.catalog(), api, max_rows=s.max_rows, access=access,
                         max_embed_depth=s.max_embed_depth, aggregates=s.aggregates_enabled)

    def read(self, raw: RawRead, parse: Callable[[], ApiRequest], access: Access,
             timing: ServerTiming, origin: ReadOrigin = NO_ORIGIN,
             ) -> ReadAnswer | Coroutine[Any, Any, ReadAnswer]:
        """The answer itself when the cache holds it (no coroutine: a hit is most reads),
        else a coroutine to await. ``parse`` is called only when the cache cannot answer from
        the raw request. ``origin``: the consistency token the caller presented and who it is;
        the cache needs neither (its entries are exact), replica routing does."""
        cache = self.cache
        if cache is None:
            return self._parsed(None, parse, access, timing, origin)
        began = time.perf_counter()
        key = raw_key(*raw, access.context)
        found = cache.fast(key)
        if found is None:
            timing.since("cache", began)
            return self._parsed(key, parse, access, timing, origin)
        if isinstance(found, Cached):
            timing.since("cache", began)
            return self._cached(found, (_accepted(raw[2]) if raw[2] else "json"), access)
        return self._confirmed(cache, found, raw, key, parse, access, timing, began, origin)

    async def _confirmed(self, cache: ReadCache, e: Entry, raw: RawRead, key: str,
                         parse: Callable[[], ApiRequest], access: Access,
                         timing: ServerTiming, began: float, origin: ReadOrigin) -> ReadAnswer:
        hit = await cache.confirm(e)
        timing.since("cache", began)
        if hit is not None:
            return self._cached(hit, (_accepted(raw[2]) if raw[2] else "json"), access)
        return await self._parsed(key, parse, access, timing, origin)

    async def _parsed(self, key: str | None, parse: Callable[[], ApiRequest], access: Access,
                      timing: ServerTiming, origin: ReadOrigin) -> ReadAnswer:
        began = time.perf_counter()
        api = parse()
        began = timing.since("parse", began)
        plan = self._plan(api, access)
        timing.since("plan", began)
        return await self._planned(plan, key, access, timing, origin)

    async def _planned(self, plan: ReadPlan, key: str | None, access: Access,
                       timing: ServerTiming, origin: ReadOrigin = NO_ORIGIN) -> ReadAnswer:
        cache = self.cache
        cipher = self.cipher
        if cipher is not None and cipher.reads(plan.root):
            # Plaintext never enters a cache: decrypted reads are answered from the database.
            if plan.media == "csv":
                raise RequestError("encrypted columns are not offered as text/csv",
                                   code="PGRST107", status=406,
                                   hint="ask for application/json, or leave them out of select")
            result = await self._execute(plan, timing, self._unstreamed, access, origin)
            began = time.perf_counter()
            result.body = cipher.decrypt_body(result.body or b"[]", plan.root)
            timing.since("decrypt", began)
            return self._fresh(result, plan, access, cached=False)
        if cache is None or key is None or not cache.cacheable(plan):
            return self._fresh(await self._execute(plan, timing, self.settings, access, origin),
                               plan, access, cached=cache is not None)
        began = time.perf_counter()
        db_before = timing.total("db")
        out = await cache.read(key, plan, access.context,
                               lambda: self._execute(plan, timing, self.settings, access,
                                                     origin))
        # The database's share is reported on its own; what remains is the cache's.
        timing.add("cache", time.perf_counter() - began - (timing.total("db") - db_before))
        if isinstance(out, Cached):
            return self._cached(out, plan.media, access)
        return self._fresh(out, plan, access, cached=True)

    async def _execute(self, plan: ReadPlan, timing: ServerTiming, settings: Settings,
                       access: Access, origin: ReadOrigin) -> ReadResult:
        began = time.perf_counter()
        try:
            if self.replicas is None:
                return await execute_read(self.db, plan, settings)
            return await self._routed(self.replicas, plan, settings, access, origin)
        finally:
            timing.since("db", began)

    async def _routed(self, replicas: Replicas, plan: ReadPlan, settings: Settings,
                      access: Access, origin: ReadOrigin) -> ReadResult:
        """A plain read with replicas configured: a usable replica that has replayed past
        the caller's token (and the caller wrote nothing within the window), else the primary."""
        served = replicas.served
        replica = await replicas.route(origin.token, origin.who)
        if replica is not None:
            # Versions were read before this: an answer from a replica that had not replayed
            # every write announced with them (by any node) may predate them.
            announced = self.cache.versions.lsn if self.cache is not None else 0
            fresh_enough = replica.replay >= max(replicas.latest, announced)
            try:
                result = await execute_read(replica.db, plan, self._on_replica[id(settings)])
            except (DatabaseUnavailable, TransactionConflict) as exc:
                # Down, its circuit open, or a query cancelled by recovery: the primary answers.
                served["fallback"] = served.get("fallback", 0) + 1
                replicas.log.warning("replica_read_failed", replica=replica.name,
                                     code=exc.code, error=exc.message)
            else:
                served["replica"] = served.get("replica", 0) + 1
                result.cacheable = fresh_enough
                result.served_by = "replica"
                return result
        served["primary"] = served.get("primary", 0) + 1
        result = await execute_read(self.db, plan, settings)
        result.served_by = "primary"
        return result

    def _fresh(self, result: ReadResult, plan: ReadPlan, access: Access, *,
               cached: bool) -> ReadAnswer:
        cache = self.cache if cached else None
        control = (cache.cache_control(sorted(plan.tables), private=access.restricted)
                   if cache is not None else None)
        if access.restricted and control is None:
            control = "private, no-cache"
        body = result.body
        if body is None and result.stream is None:
            body = b"[]"
        return ReadAnswer(plan.media, result.rows, result.total, result.first, body=body,
                          stream=result.stream, etag=etag(body) if body is not None else None,
                          x_cache="MISS" if cache is not None else None, cache_control=control,
                          served_by=result.served_by)

    def _cached(self, hit: Cached, media: MediaType, access: Access) -> ReadAnswer:
        e = hit.entry
        control = e.cache_control
        if access.restricted and self.cache is not None:
            control = self.cache.cache_control(e.tables, private=True)
        return ReadAnswer(media, e.rows, e.total, e.first, body=e.body, etag=e.etag,
                          x_cache=hit.status, cache_control=control,
                          age=hit.age if hit.status == "STALE" else None)

