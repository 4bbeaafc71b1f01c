"""The server's events: outbox tables, relay and bus, and in embedded mode the handlers.

With ``amqp_url`` set the relay publishes to RabbitMQ and handlers run in ``headwater worker``
processes. Without it the relay publishes to an in-process ``MemoryBus`` on which this process
runs the app's ``@app.on`` handlers and the webhooks, with the same retry policy; the
dead-letter queue is the ``_headwater_dead_letters`` table (``headwater events dlq replay``
flags rows, which this process picks up within a second).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from headwater.config import Settings
from headwater.db.connect import open_database
from headwater.db.database import Database
from headwater.db.sqlite import SqliteDatabase
from headwater.errors import HeadwaterError
from headwater.events.bus import Bus, Envelope
from headwater.events.event import Subscription
from headwater.events.leader import RelayLeader
from headwater.events.memory_bus import MemoryBus
from headwater.events.outbox import Outbox, TableDeadLetters
from headwater.events.relay import Relay
from headwater.events.webhook import webhook_subscriptions
from headwater.events.worker import Worker, stop_on_signals
from headwater.observability.logging import route_library_logs
from headwater.observability.metrics import Metrics

if TYPE_CHECKING:  # aio-pika is the rabbitmq extra: imported only when configured
    pass

REPLAY_INTERVAL = 1.0


class Events:
    def __init__(self, settings: Settings, db: Database | None, outbox: Outbox, bus: Bus | None,
                 relay: Relay | None, worker: Worker | None, http: httpx.AsyncClient | None,
                 log: Any) -> None:
        self.settings = settings
        self.db = db
        self.outbox = outbox
        self.bus = bus
        self.relay = relay
        self.worker = worker
        self.http = http
        self.log = log
        self._replays: asyncio.Task[None] | None = None
        #: Several workers: this process's part in choosing the one that relays.
        self.leader: RelayLeader | None = None
        #: A standby's wait for the leader's lock.
        self._standby: asyncio.Task[None] | None = None

    def adopt(self, running: Events) -> None:
        """A standby became the leader: take the parts it started."""
        self.db, self.bus, self.relay = running.db, running.bus, running.relay
        self.worker, self.http, self._replays = running.worker, running.http, running._replays

    def readiness(self) -> dict[str, Any] | None:
        """The broker's entry in ``/-/ready`` (None without one): degraded, not failing,
        while it is down, since writes go on and the outbox keeps their events."""
        if not self.settings.amqp_url:
            return None
        if self.bus is not None:
            connected = self.bus.connected
        elif self.leader is not None:  # another worker relays: its view of the broker
            connected = self.leader.broker_connected()
        else:
            return None
        return {"status": "ok" if connected else "degraded"}

    async def close(self) -> None:
        self.outbox.listeners.clear()
        if self._standby is not None:
            self._standby.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._standby
        if self._replays is not None:
            self._replays.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replays
        if self.relay is not None:
            await self.relay.close()
        if self.bus is not None:
            await self.bus.close()
        if self.http is not None:
            await self.http.aclose()
        if self.db is not None:
            await self.db.close()
        if self.leader is not None:
            self.leader.close()

    async def _watch_replays(self, bus: MemoryBus) -> None:
        """Embedded mode: deliver again the dead letters ``headwater events dlq replay``
        flagged."""
        db = self.db
        assert db is not None  # embedded mode always has the relay's database
        while True:
            await asyncio.sleep(REPLAY_INTERVAL)
            try:
                if not self.outbox.ready or not await self.outbox.replays_pending(db):
                    continue
                for d in await self.outbox.take_replays(db):
                    await bus.inject(d.queue, Envelope(d.id, d.routing_key, d.body))
            except HeadwaterError as exc:
                self.log.warning("dead_letter_replay_failed", error=exc.message)


async def start_events(settings: Settings, outbox: Outbox,
                       subscriptions: Sequence[Subscription], *, metrics: Metrics,
                       log: Any, app_db: Database | None = None) -> Events:
    """Start the relay (and in embedded mode the handlers). They use a small pool of their
    own, so their statements neither wait behind requests nor count as requests' queries;
    on SQLite they write through ``app_db``'s writer thread (one writer per process).

    Of one server's worker processes only the one holding ``events.leader``'s lock runs
    them; the others wake it when they commit events, and one of them takes over if it
    exits."""
    if settings.amqp_url and not settings.relay_in_server:
        log.info("relay_elsewhere", hint="run `headwater relay` to publish the outbox")
        return Events(settings, None, outbox, None, None, None, None, log)
    leader = RelayLeader(settings.runtime_dir) if settings.runtime_dir else None
    if leader is None or leader.try_acquire():
        events = await _run_events(settings, outbox, subscriptions, metrics=metrics, log=log,
                                   app_db=app_db)
        if leader is not None:
            events.leader = leader
            assert events.relay is not None and events.bus is not None
            leader.listen(events.relay.kick, _connected(events.bus))
        return events
    events = Events(settings, None, outbox, None, None, None, None, log)
    events.leader = leader
    outbox.listeners.append(leader.kick)

    async def take_over() -> None:
        await leader.wait()
        outbox.listeners.remove(leader.kick)
        running = await _run_events(settings, outbox, subscriptions, metrics=metrics, log=log,
                                    app_db=app_db)
        events.adopt(running)
        assert running.relay is not None and running.bus is not None
        leader.listen(running.relay.kick, _connected(running.bus))
        log.info("relay_taken_over")

    events._standby = asyncio.create_task(take_over())
    return events


def _connected(bus: Bus) -> Callable[[], bool]:
    return lambda: bus.connected


async def _run_events(settings: Settings, outbox: Outbox,
                      subscriptions: Sequence[Subscription], *, metrics: Metrics,
                      log: Any, app_db: Database | None) -> Events:
    own = settings.replace(pool_min_size=1, pool_max_size=max(2, min(settings.pool_max_size, 4)))
    db = (SqliteDatabase(own, writer_of=app_db) if isinstance(app_db, SqliteDatabase)
          else open_database(own))
    try:
        await db.start()
        await outbox.ensure(db, create=False)  # made by the first write that records events
    except HeadwaterError as exc:  # the database is down: the relay tries again
        log.warning("outbox_not_ready", error=exc.message)
    http: httpx.AsyncClient | None = None
    worker: Worker | None = None
    bus: Bus
    if settings.amqp_url:
        from headwater.events.rabbitmq_bus import RabbitBus  # the rabbitmq extra

        bus = RabbitBus(settings.amqp_url, reconnect_max_delay=settings.amqp_reconnect_max_delay,
                        queue_type=settings.amqp_queue_type, log=log)
    else:
        memory = bus = MemoryBus(TableDeadLetters(db, outbox))
        subs = list(subscriptions)
        if settings.webhooks.strip():
            http = httpx.AsyncClient(timeout=settings.webhook_timeout)
            subs += webhook_subscriptions(settings, http)
        if subs:
            worker = Worker(settings, memory, db, outbox, subs, log=log, metrics=metrics)
            await worker.start()
    await bus.start()
    relay = Relay(settings, db, outbox, bus, metrics=metrics, log=log,
                  eager=bool(settings.amqp_url) or worker is not None)
    outbox.listeners.append(relay.kick)
    await relay.start()
    events = Events(settings, db, outbox, bus, relay, worker, http, log)
    if worker is not None and isinstance(bus, MemoryBus):
        events._replays = asyncio.create_task(events._watch_replays(bus))
    return events


async def run_relay(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """The ``headwater relay`` process: publish the outbox to RabbitMQ until SIGTERM/SIGINT
    (or ``stop``), beside servers run with ``relay_in_server=false``. It has no commits of
    its own to wake it, so it polls every ``relay_poll_interval`` while idle; several relays
    share the outbox as several servers do."""
    log = route_library_logs(settings.log_level, fmt=settings.log_format)
    stop = stop_on_signals(stop)
    db = open_database(settings.replace(pool_min_size=1, pool_max_size=2))
    outbox = Outbox(settings, db.dialect, db.schema)
    from headwater.events.rabbitmq_bus import RabbitBus  # the rabbitmq extra

    bus = RabbitBus(settings.amqp_url, reconnect_max_delay=settings.amqp_reconnect_max_delay,
                    queue_type=settings.amqp_queue_type, log=log)
    await bus.start()
    relay = Relay(settings, db, outbox, bus, metrics=Metrics(), log=log)
    await relay.start()  # it opens the database when it can
    log.info("relay_started")
    try:
        await stop.wait()
    finally:
        await relay.close()
        await bus.close()
        with contextlib.suppress(HeadwaterError):
            await db.close()
        log.info("relay_stopped")
