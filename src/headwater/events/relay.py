"""The relay: publishes committed outbox rows to the bus, in order, and marks them sent.

A background task of every server. Each round claims up to ``relay_batch`` pending rows in
``seq`` order, publishes them as one batch (publisher confirms, overlapping), and marks sent
exactly the leading rows the broker confirmed, in the claim's transaction. Whatever was not
confirmed stays pending and goes out again later: delivery is at least once, and since one
channel delivers a batch in order and the rest of a batch is resent after its first failure,
the first delivery of each event keeps the table's order.

Several nodes share the outbox: on PostgreSQL a round locks its rows (``FOR UPDATE SKIP
LOCKED``) and the tables it publishes (advisory locks), so each row is published by one node
and a table's rows by one node at a time; on SQLite one process holds a lease.

The relay wakes when a write on this node commits (``kick``), at most once per
``COALESCE`` seconds so that a stream of writes is published in batches, and otherwise polls
every ``relay_poll_interval``; with nobody to deliver to (embedded mode without handlers) it
only polls. While the broker or the database is down it backs off exponentially
(stamina) and the outbox grows; it drains by itself once they return. Sent rows are pruned
after ``outbox_retention``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import stamina

from headwater.config import Settings
from headwater.db.database import Database
from headwater.errors import BrokerUnavailable, HeadwaterError, ServiceError
from headwater.events.bus import Bus, Envelope
from headwater.events.outbox import Claimed, Outbox
from headwater.observability.metrics import Metrics

PENDING_INTERVAL = 1.0
PRUNE_INTERVAL = 60.0
LEASE_SECONDS = 30.0
COALESCE = 0.005


class Relay:
    def __init__(self, settings: Settings, db: Database, outbox: Outbox, bus: Bus, *,
                 metrics: Metrics, log: Any, eager: bool = True) -> None:
        self.settings = settings
        self.db = db
        self.outbox = outbox
        self.bus = bus
        self.metrics = metrics
        self.log = log
        self.node = uuid.uuid4().hex
        self.batch = max(1, settings.relay_batch)
        self.poll = max(0.01, settings.relay_poll_interval)
        #: Wake on every commit (someone waits for the events); else poll only.
        self.eager = eager
        self._wake = asyncio.Event()
        self._round_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._pruned = time.monotonic()
        self._ready = False
        self._renew_at = 0.0

    def kick(self) -> None:
        """A write with events committed on this node: publish now rather than at the poll."""
        if self.eager:
            self._wake.set()

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name="headwater-relay"),
                       asyncio.create_task(self._watch(), name="headwater-outbox-gauge")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._renew_at:
            # A server restarted on the same file relays at once, not after the lease ends.
            with contextlib.suppress(HeadwaterError, TimeoutError):
                async with asyncio.timeout(1.0), self.db.transaction() as tx:
                    await self.outbox.release(tx, "relay", self.node)
            self._renew_at = 0.0

    # --- loop ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                async for attempt in stamina.retry_context(
                        on=ServiceError, attempts=None, timeout=None, wait_initial=0.05,
                        wait_max=self.settings.amqp_reconnect_max_delay, wait_jitter=0.05):
                    with attempt:
                        await self.bus.wait_connected()
                        await self.drain()
            except Exception:  # a bug must not stop the events for good: log, go on
                self.metrics.relay_errors.labels("unexpected").inc()
                self.log.exception("relay_failed")
                await asyncio.sleep(self.poll)
            await self._maybe_prune()
            # Under a stream of writes, one round every few milliseconds carries many events,
            # where one round per commit would cost more than the writes themselves.
            spare = self._round_at + COALESCE - time.monotonic()
            if spare > 0:
                await asyncio.sleep(spare)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll)
            self._wake.clear()

    async def drain(self) -> int:
        """Publish until nothing is pending; returns how many were published."""
        total = 0
        while True:
            n = await self.round()
            total += n
            if n < self.batch:
                return total

    async def round(self) -> int:
        """One claim → publish → mark; returns the number of rows published."""
        self._round_at = time.monotonic()
        if not self._ready:
            if self.db.pool_stats()[0] == 0:  # the database was down when we started
                await self.db.start()
            # The first write with events creates the outbox; until then nothing to publish.
            await self.outbox.ensure(self.db, create=False)
            if not self.outbox.ready:
                return 0
            self._ready = True
        failure: BrokerUnavailable | None = None
        if not self.eager:
            # Nobody to deliver to (embedded, no handlers): the rows are only marked, as a
            # log kept for ``outbox_retention``; no message bodies are built.
            async with self.db.transaction(single=True) as tx:  # one statement
                return await self.outbox.mark_pending_sent(tx, self.batch)
        if self.outbox.pg:
            async with self.db.transaction() as tx:
                rows = await self.outbox.claim(tx, self.batch)
                if not rows:
                    return 0
                confirmed, failure = await self._publish(rows)
                await self.outbox.mark_sent(tx, [r.seq for r in rows[:confirmed]])
        else:
            # SQLite has one writer at a time: read without the write lock, and write once.
            if not await self._hold_lease():
                return 0
            rows = await self.outbox.claim_unlocked(self.db, self.batch)
            if not rows:
                return 0
            confirmed, failure = await self._publish(rows)
            if confirmed:
                async with self.db.transaction(single=True) as tx:  # one statement
                    await self.outbox.mark_sent(tx, [r.seq for r in rows[:confirmed]])
        if failure is not None:
            raise failure
        return confirmed

    async def _hold_lease(self) -> bool:
        """SQLite: one relay per database file (several worker processes may share it). The
        lease is renewed at half its life, so most rounds need no write for it."""
        now = time.monotonic()
        if now < self._renew_at:
            return True
        async with self.db.transaction() as tx:
            held = await self.outbox.lease(tx, "relay", self.node, LEASE_SECONDS)
        self._renew_at = now + LEASE_SECONDS / 2 if held else 0.0
        return held

    async def _publish(self, rows: list[Claimed]) -> tuple[int, BrokerUnavailable | None]:
        try:
            await self.bus.publish([Envelope(r.id, r.routing_key, r.body) for r in rows])
        except BrokerUnavailable as exc:
            self.metrics.events_published.inc(exc.confirmed)
            self.metrics.relay_errors.labels("broker").inc()
            self.log.warning("relay_publish_failed", confirmed=exc.confirmed, batch=len(rows),
                             error=exc.message, details=str(exc.details))
            return exc.confirmed, exc
        self.metrics.events_published.inc(len(rows))
        return len(rows), None

    async def _maybe_prune(self) -> None:
        if not self._ready or time.monotonic() - self._pruned < PRUNE_INTERVAL:
            return
        self._pruned = time.monotonic()
        try:
            n = await self.outbox.prune(self.db)
        except HeadwaterError as exc:
            self.log.warning("outbox_prune_failed", error=exc.message)
            return
        if n:
            self.log.info("outbox_pruned", rows=n)

    async def _watch(self) -> None:
        """Keep ``headwater_outbox_pending`` current, whatever the relay is waiting on."""
        while True:
            try:
                if self._ready:
                    self.metrics.set_outbox_pending(await self.outbox.pending(self.db))
            except HeadwaterError:
                pass  # the database is down: the last figure stands
            await asyncio.sleep(PENDING_INTERVAL)
