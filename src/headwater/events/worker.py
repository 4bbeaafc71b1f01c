"""Workers: run ``@app.on`` handlers (and webhooks) on their own queues, effects once.

Each subscription has a durable queue named ``headwater.<name>``. A delivery is acknowledged
after its handler succeeds; a failure is retried after a growing delay (the bus's delay
queues), and after ``worker_max_attempts`` the event goes to the dead-letter queue. Effects
happen once per event id even if the event is delivered twice: the worker records
``(handler, event id)`` in ``_headwater_processed``. On PostgreSQL the id is inserted first, in
a transaction held while the handler runs, so a concurrent duplicate waits and then skips, and
a failed handler leaves no trace; on SQLite (one process) it is checked before and recorded
after the handler. The one gap: a worker that dies after a handler succeeded and before its
id is committed runs it again, so effects outside the database (an HTTP call) should be
idempotent; the event id is the natural key for that.

``headwater worker --app pkg.mod:app`` runs this against RabbitMQ; without a broker the server
runs the same ``Worker`` on its in-process bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
import stamina

from headwater.config import Settings
from headwater.db.connect import open_database
from headwater.db.database import Database
from headwater.errors import BrokerUnavailable, HeadwaterError, ServiceError
from headwater.events.bus import Bus, Delivery, QueueSpec
from headwater.events.event import Event, Subscription, decode_event
from headwater.events.outbox import DeadLetter, Outbox
from headwater.events.webhook import parse_webhooks, webhook_subscriptions
from headwater.observability.logging import route_library_logs
from headwater.observability.metrics import Metrics

if TYPE_CHECKING:  # aio-pika is the rabbitmq extra: imported only when configured
    from headwater.events.rabbitmq_bus import RabbitBus

QUEUE_PREFIX = "headwater."


def queue_name(subscription: str) -> str:
    return QUEUE_PREFIX + subscription


class Worker:
    """Subscribes each handler to the bus and applies the retry / dead-letter policy."""

    def __init__(self, settings: Settings, bus: Bus, db: Database, outbox: Outbox,
                 subscriptions: Sequence[Subscription], *, log: Any,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.bus = bus
        self.db = db
        self.outbox = outbox
        self.subscriptions = list(subscriptions)
        self.log = log
        self.metrics = metrics

    def spec(self, sub: Subscription) -> QueueSpec:
        s = self.settings
        return QueueSpec(queue_name(sub.name), sub.patterns, s.retry_delays(), s.worker_prefetch)

    async def start(self) -> None:
        for sub in self.subscriptions:
            await self.bus.subscribe(self.spec(sub), self._consumer(sub))

    def _count(self, sub: Subscription, result: str) -> None:
        if self.metrics is not None:
            self.metrics.events_handled.labels(sub.name, result).inc()

    def _consumer(self, sub: Subscription) -> Any:
        max_attempts = max(1, self.settings.worker_max_attempts)

        async def on_delivery(d: Delivery) -> None:
            envelope = d.envelope
            try:
                event = decode_event(envelope.body)
            except msgspec.DecodeError as exc:
                await d.dead_letter(f"undecodable event: {exc}")
                self._count(sub, "dead")
                return
            try:
                ran = await self._run_once(sub, event)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if envelope.attempt >= max_attempts:
                    self.log.error("event_dead_lettered", handler=sub.name, event_id=event.id,
                                   attempts=envelope.attempt, error=error)
                    await d.dead_letter(error)
                    self._count(sub, "dead")
                else:
                    self.log.warning("event_retry", handler=sub.name, event_id=event.id,
                                     attempt=envelope.attempt, error=error)
                    await d.retry()
                    self._count(sub, "retry")
                return
            await d.ack()
            self._count(sub, "ok" if ran else "duplicate")

        async def guarded(d: Delivery) -> None:
            try:
                await on_delivery(d)
            except Exception as exc:
                # The ack or the retry itself failed (broker gone): the broker redelivers.
                self.log.error("event_delivery_failed", handler=sub.name,
                               error=f"{type(exc).__name__}: {exc}")

        return guarded

    async def _run_once(self, sub: Subscription, event: Event) -> bool:
        """Run the handler unless this event id already ran it; False if skipped."""
        if self.db.dialect == "postgresql":
            async with self.db.transaction() as tx:
                if not await self.outbox.claim_processed(tx, sub.name, event.id):
                    return False
                await sub.handler(event)
            return True
        if await self.outbox.was_processed(self.db, sub.name, event.id):
            return False
        await sub.handler(event)
        async with self.db.transaction() as tx:
            await self.outbox.claim_processed(tx, sub.name, event.id)
        return True


def all_subscriptions(settings: Settings, app_subscriptions: Sequence[Subscription],
                      http: httpx.AsyncClient | None) -> list[Subscription]:
    subs = list(app_subscriptions)
    if http is not None:
        subs += webhook_subscriptions(settings, http)
    return subs


def stop_on_signals(stop: asyncio.Event | None) -> asyncio.Event:
    """``stop`` (or a new event), set by SIGTERM or SIGINT: how a process of ours ends."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def run_worker(settings: Settings, app_subscriptions: Sequence[Subscription],
                     stop: asyncio.Event | None = None) -> None:
    """The ``headwater worker`` process: the app's handlers and the webhooks on RabbitMQ,
    until SIGTERM/SIGINT (or ``stop``)."""
    log = route_library_logs(settings.log_level, fmt=settings.log_format)
    stop = stop_on_signals(stop)
    db = open_database(settings)
    outbox = Outbox(settings, db.dialect, db.schema)
    async for attempt in stamina.retry_context(on=ServiceError, attempts=None, timeout=None,
                                               wait_max=settings.amqp_reconnect_max_delay):
        with attempt:
            if db.pool_stats()[0] == 0:
                await db.start()
            await outbox.ensure(db)
    http = httpx.AsyncClient(timeout=settings.webhook_timeout) if settings.webhooks else None
    subs = all_subscriptions(settings, app_subscriptions, http)
    from headwater.events.rabbitmq_bus import RabbitBus  # the rabbitmq extra

    bus = RabbitBus(settings.amqp_url, reconnect_max_delay=settings.amqp_reconnect_max_delay,
                    queue_type=settings.amqp_queue_type, log=log)
    worker = Worker(settings, bus, db, outbox, subs, log=log)
    await worker.start()
    await bus.start()
    log.info("worker_started", handlers=[s.name for s in subs])
    try:
        await stop.wait()
    finally:
        await bus.close()
        if http is not None:
            await http.aclose()
        with contextlib.suppress(HeadwaterError):
            await db.close()
        log.info("worker_stopped")


# --- dead letters (``headwater events dlq``) --------------------------------------------------


def queue_names(settings: Settings, app_subscriptions: Sequence[Subscription],
                handlers: Sequence[str] = ()) -> list[str]:
    """The queues named by ``--handler``, else every handler of the app and every webhook."""
    if handlers:
        return [queue_name(h) for h in handlers]
    return [queue_name(s.name) for s in all_subscriptions(settings, app_subscriptions, None)] + [
        queue_name("webhook." + h.name) for h in parse_webhooks(settings)]


@contextlib.asynccontextmanager
async def _dead_letter_access(settings: Settings) -> AsyncIterator[tuple[Bus | None, Database,
                                                                          Outbox]]:
    """RabbitMQ's dead-letter queues, or (no broker) the database's dead-letter table."""
    db = open_database(settings.replace(pool_min_size=1, pool_max_size=2))
    outbox = Outbox(settings, db.dialect, db.schema)
    bus: RabbitBus | None = None
    try:
        if settings.amqp_url:
            from headwater.events.rabbitmq_bus import RabbitBus  # the rabbitmq extra

            bus = RabbitBus(settings.amqp_url, reconnect_max_delay=1.0,
                            queue_type=settings.amqp_queue_type)
            await bus.start()
            try:
                # Time for every node's connect timeout: the first may be the one that hangs.
                async with asyncio.timeout(settings.connect_timeout
                                           + bus.connect_timeout * len(bus.urls)):
                    await bus.wait_connected()
            except TimeoutError:
                raise BrokerUnavailable(f"cannot reach RabbitMQ at {settings.amqp_url}") from None
        else:
            await db.start()
            await outbox.ensure(db)
        yield bus, db, outbox
    finally:
        if bus is not None:
            await bus.close()
        await db.close()


async def list_dead_letters(settings: Settings, queues: Sequence[str]) -> list[DeadLetter]:
    async with _dead_letter_access(settings) as (bus, db, outbox):
        if bus is None:
            if not queues:
                return await outbox.list_dead_letters(db)
            return [d for q in queues for d in await outbox.list_dead_letters(db, q)]
        return [d for q in queues for d in await bus.dead_letters(q)]


async def replay_dead_letters(settings: Settings, queues: Sequence[str]) -> dict[str, int]:
    """Send dead letters back to their queues. Without a broker they are flagged in the table
    and the running server delivers them within a second or so."""
    async with _dead_letter_access(settings) as (bus, db, outbox):
        if bus is None:
            if not queues:
                return {"*": await outbox.request_replay(db)}
            return {q: await outbox.request_replay(db, q) for q in queues}
        return {q: await bus.replay(q) for q in queues}
