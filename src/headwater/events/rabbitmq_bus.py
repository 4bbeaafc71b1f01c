"""The RabbitMQ bus (``RabbitBus``, aio-pika), behind ``headwater.events.bus.Bus``.

A handler's queue ``Q`` is durable and bound to the ``headwater`` topic exchange; a retry goes
to ``Q.delay.<ms>``, a queue whose messages expire after that many milliseconds into ``Q``
again (TTL + dead-letter exchange), with the attempt counted in a header; dead letters go to
``Q.dlq``. The connection is kept by a background task that reconnects with exponential
backoff (stamina) and restores every subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aio_pika
import aiormq
import stamina
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aiormq.abc import ChannelFrame
from pamqp.header import ContentHeader

from headwater.errors import BrokerUnavailable
from headwater.events.bus import Bus, Delivery, Envelope, OnDelivery, QueueSpec
from headwater.events.outbox import DeadLetter

EXCHANGE = "headwater"
ATTEMPT = "x-headwater-attempt"
ROUTING_KEY = "x-headwater-routing-key"
ERROR = "x-headwater-error"

_CONNECT_ERRORS = (OSError, TimeoutError, aiormq.exceptions.AMQPError, ConnectionError)
#: A channel that is closed or closing: aiormq raises ChannelInvalidStateError (a RuntimeError)
#: from its lock once the channel is gone, before our close callbacks have run.
_CHANNEL_GONE = (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError,
                 ConnectionError)


def delay_queue(queue: str, seconds: float) -> str:
    return f"{queue}.delay.{round(seconds * 1000)}"


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dlq"


def _message(envelope: Envelope, **headers: Any) -> aio_pika.Message:
    return aio_pika.Message(
        envelope.body, message_id=envelope.id, content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={ATTEMPT: envelope.attempt, ROUTING_KEY: envelope.routing_key, **headers})


async def _publish_batch(raw: aiormq.Channel,
                         envelopes: Sequence[Envelope]) -> list[asyncio.Future[Any]]:
    """Publish ``envelopes`` as one write to the socket; one confirmation future each.

    ``aiormq.Channel.basic_publish`` costs a task, a timeout, the channel lock, a queue hand-off
    and a socket write per message: the relay spent more CPU per event there than the server
    spent on the write itself. This does what it does for a whole batch under one hold of the
    lock (delivery tags in order, a confirmation registered per tag; a channel that closes
    rejects them) and queues every frame as one chunk, so the broker reads the batch in order.
    It uses aiormq 7's channel attributes (pinned below 8 in pyproject.toml), and the tests
    that publish to real RabbitMQ cover it."""
    frames: list[Any] = []
    futures: list[asyncio.Future[Any]] = []
    async with raw.lock:
        if not raw.publisher_confirms:
            raise BrokerUnavailable("the channel has no publisher confirms")
        for e in envelopes:
            raw.delivery_tag += 1
            future = raw.create_future()
            raw.confirmations[raw.delivery_tag] = future
            futures.append(future)
            frames.append(aiormq.spec.Basic.Publish(exchange=EXCHANGE, routing_key=e.routing_key))
            frames.append(ContentHeader(properties=_properties(e), body_size=len(e.body)))
            frames.extend(raw._split_body(e.body))
        await raw.write_queue.put(ChannelFrame.marshall(channel_number=raw.number,
                                                        frames=frames))
    return futures


def _properties(envelope: Envelope) -> aiormq.spec.Basic.Properties:
    # A first delivery needs no headers (attempt 1, its own routing key): encoding them costs
    # ~15% of a publish.
    headers: dict[str, Any] | None = None
    if envelope.attempt != 1:
        headers = {ATTEMPT: envelope.attempt, ROUTING_KEY: envelope.routing_key}
    return aiormq.spec.Basic.Properties(message_id=envelope.id, content_type="application/json",
                                        delivery_mode=2, headers=headers)


def _envelope(message: AbstractIncomingMessage) -> Envelope:
    headers = message.headers or {}
    attempt = headers.get(ATTEMPT, 1)
    key = headers.get(ROUTING_KEY, message.routing_key or "")
    return Envelope(message.message_id or "", str(key), message.body,
                    int(attempt) if isinstance(attempt, int) else 1)


class _RabbitDelivery(Delivery):
    def __init__(self, channel: AbstractChannel, spec: QueueSpec,
                 message: AbstractIncomingMessage) -> None:
        self.channel = channel
        self.spec = spec
        self.message = message
        self.envelope = _envelope(message)

    async def ack(self) -> None:
        await self.message.ack()

    async def _forward(self, queue: str, envelope: Envelope, **headers: Any) -> None:
        # Publish (confirmed) before the ack: a crash in between repeats, never loses.
        await self.channel.default_exchange.publish(_message(envelope, **headers), queue,
                                                    mandatory=False, timeout=30)
        await self.message.ack()

    async def retry(self) -> None:
        e = self.envelope
        await self._forward(delay_queue(self.spec.name, self.spec.delay(e.attempt)),
                            replace(e, attempt=e.attempt + 1))

    async def dead_letter(self, error: str) -> None:
        await self._forward(dead_letter_queue(self.spec.name), self.envelope,
                            **{ERROR: error[:2000]})


#: Seconds between AMQP heartbeats unless a URL sets ``heartbeat``. aiormq's default is 60,
#: and a connection is given up after three missed (over three minutes), so a worker
#: consuming from a hung node would wait that long before it moved; RabbitMQ's guide calls
#: 5-20 s optimal for most environments.
HEARTBEAT = 15


@dataclass
class NodeOrder:
    """The order a bus tries a cluster's nodes in: the one it was connected to first again,
    but after that node failed it (the connection lost, or opened and then unusable) the one
    after it, so that a hung node, which costs a whole connect timeout, is tried last."""

    count: int
    connected: int = 0
    first: int = 0

    def tries(self) -> list[int]:
        return [(self.first + step) % self.count for step in range(self.count)]

    def connected_to(self, index: int) -> None:
        self.connected = self.first = index

    def failed(self) -> None:
        self.first = (self.connected + 1) % self.count


def connection_name() -> str:
    """What RabbitMQ shows for this process's connection (``rabbitmqctl list_connections
    client_properties``, the management UI): which machine, which process."""
    return f"headwater {socket.gethostname()} pid {os.getpid()}"


def client_properties(url: str) -> dict[str, Any] | None:
    """The properties a connection to ``url`` announces: our connection name, unless the URL
    names the connection itself (``?name=``; aiormq would let ours override the operator's)."""
    if "name" in parse_qs(urlsplit(url).query, keep_blank_values=True):
        return None
    return {"connection_name": connection_name()}


def broker_urls(url: str) -> list[str]:
    """``amqp://a,amqp://b``: the nodes of one cluster, tried in turn; each with
    ``heartbeat=15`` unless it names its own."""
    out = []
    for part in url.split(","):
        if part := part.strip():
            node = urlsplit(part)
            if "heartbeat" not in parse_qs(node.query, keep_blank_values=True):
                query = f"{node.query}&heartbeat={HEARTBEAT}".lstrip("&")
                part = urlunsplit(node._replace(query=query))
            out.append(part)
    return out


class RabbitBus(Bus):
    """``timeout`` bounds the wait for a batch's confirms, ``connect_timeout`` a connection
    to one node (a healthy node answers in milliseconds; one that accepts the TCP connection
    but never the handshake, as a hung or partitioned node does, must not hold the relay)."""

    def __init__(self, url: str, *, reconnect_max_delay: float = 10.0, timeout: float = 10.0,
                 connect_timeout: float = 5.0, queue_type: str = "classic",
                 log: Any = None) -> None:
        self.urls = broker_urls(url)
        if not self.urls:
            raise ValueError("no RabbitMQ URL")
        self._order = NodeOrder(len(self.urls))
        self.connect_timeout = connect_timeout
        self._queue_args: dict[str, Any] = ({"x-queue-type": "quorum"}
                                            if queue_type == "quorum" else {})
        self.reconnect_max_delay = reconnect_max_delay
        self.timeout = timeout
        self.log = log
        self._connection: AbstractConnection | None = None
        self._generation = 0
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._subs: list[tuple[QueueSpec, OnDelivery]] = []
        self._up = asyncio.Event()
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._keep_connected(), name="headwater-amqp")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._disconnect()

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    async def wait_connected(self) -> None:
        await self._up.wait()

    # --- connection ---------------------------------------------------------------------------

    async def _keep_connected(self) -> None:
        while True:
            try:
                async for attempt in stamina.retry_context(
                        on=_CONNECT_ERRORS, attempts=None, timeout=None, wait_initial=0.1,
                        wait_max=self.reconnect_max_delay, wait_jitter=0.1):
                    with attempt:
                        await self._connect()
            except Exception as exc:  # unexpected: keep trying, never give up the broker
                if self.log is not None:
                    self.log.error("broker_connect_failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(self.reconnect_max_delay)
                continue
            if self.log is not None:
                self.log.info("broker_connected")
            await self._lost.wait()
            if self.log is not None:
                self.log.warning("broker_disconnected")
            await self._disconnect()
            self._order.failed()

    async def _connect(self) -> None:
        await self._disconnect()
        self._lost.clear()
        try:
            connection = await self._open()
            self._connection = connection
            connection.close_callbacks.add(self._on_close())
            # A node can take the handshake and then hang (a minority side of a partition):
            # the rest of the set-up is bounded too, and that node is tried last next time.
            async with asyncio.timeout(self.connect_timeout):
                channel = await connection.channel(publisher_confirms=True)
                channel.close_callbacks.add(self._on_close())
                self._exchange = await channel.declare_exchange(
                    EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
                self._channel = channel
                for spec, on_delivery in self._subs:
                    await self._setup(connection, spec, on_delivery)
        except BaseException:
            if self._connection is not None:
                self._order.failed()
            await self._disconnect()
            raise
        self._up.set()

    async def _open(self) -> AbstractConnection:
        """A connection to the first node that takes one, in ``NodeOrder``'s order."""
        failure: BaseException | None = None
        for index in self._order.tries():
            try:
                connection = await aio_pika.connect(
                    self.urls[index], timeout=self.connect_timeout,
                    # Named at connect time: a worker may be forked after the bus was made.
                    client_properties=client_properties(self.urls[index]))
            except _CONNECT_ERRORS as exc:
                failure = exc
                continue
            if index != self._order.connected and self.log is not None:
                self.log.warning("broker_node_changed", node=index)
            self._order.connected_to(index)
            return connection
        assert failure is not None
        raise failure

    def _on_close(self) -> Callable[..., None]:
        generation = self._generation

        def closed(*_: Any) -> None:
            # Callbacks of a connection we already dropped arrive late: ignore them.
            if generation == self._generation:
                self._up.clear()
                self._lost.set()

        return closed

    async def _disconnect(self) -> None:
        self._up.clear()
        self._generation += 1
        connection, self._connection = self._connection, None
        self._channel = self._exchange = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)

    def _require(self) -> tuple[AbstractConnection, AbstractExchange]:
        if not self._up.is_set() or self._connection is None or self._exchange is None:
            raise BrokerUnavailable("RabbitMQ is not connected")
        return self._connection, self._exchange

    # --- publishing ---------------------------------------------------------------------------

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        self._require()
        assert self._channel is not None
        try:
            raw = cast(aiormq.Channel, await self._channel.get_underlay_channel())
            futures = await _publish_batch(raw, envelopes)
        except _CHANNEL_GONE as exc:
            self._lost.set()
            raise BrokerUnavailable("RabbitMQ channel is closed") from exc
        try:
            done, _ = await asyncio.wait(futures, timeout=self.timeout)
        finally:
            for f in futures:
                f.cancel()  # those not answered (aiormq then ignores a late answer)
        confirmed = 0
        for f in futures:
            # A connection that closed rejects the futures it left unanswered (exception set):
            # those count as unconfirmed, as timed-out or nacked ones do.
            if (f not in done or f.cancelled() or f.exception() is not None
                    or not isinstance(f.result(), aiormq.spec.Basic.Ack)):
                break
            confirmed += 1
        if confirmed < len(envelopes):
            failure = futures[confirmed]
            reason = ("timeout" if failure not in done else "closed" if failure.cancelled()
                      else type(failure.exception() or failure.result()).__name__)
            self._lost.set()  # reconnect: a channel that failed once is not trusted again
            raise BrokerUnavailable("RabbitMQ did not confirm every message",
                                    confirmed=confirmed, details=reason)

    # --- consuming ----------------------------------------------------------------------------

    async def subscribe(self, spec: QueueSpec, on_delivery: OnDelivery) -> None:
        self._subs.append((spec, on_delivery))
        if self._up.is_set() and self._connection is not None:
            await self._setup(self._connection, spec, on_delivery)

    async def _declare(self, channel: AbstractChannel, spec: QueueSpec) -> AbstractQueue:
        args = self._queue_args
        queue = await channel.declare_queue(spec.name, durable=True, arguments=args)
        exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        for pattern in spec.patterns:
            await queue.bind(exchange, pattern)
        for seconds in sorted(set(spec.retry_delays)):
            await channel.declare_queue(delay_queue(spec.name, seconds), durable=True, arguments={
                **args, "x-message-ttl": max(1, round(seconds * 1000)),
                "x-dead-letter-exchange": "", "x-dead-letter-routing-key": spec.name})
        await channel.declare_queue(dead_letter_queue(spec.name), durable=True, arguments=args)
        return queue

    async def _setup(self, connection: AbstractConnection, spec: QueueSpec,
                     on_delivery: OnDelivery) -> None:
        channel = await connection.channel(publisher_confirms=True)
        channel.close_callbacks.add(self._on_close())
        await channel.set_qos(prefetch_count=max(1, spec.prefetch))
        queue = await self._declare(channel, spec)

        async def on_message(message: AbstractIncomingMessage) -> None:
            await on_delivery(_RabbitDelivery(channel, spec, message))

        await queue.consume(on_message)

    @contextlib.asynccontextmanager
    async def _side_channel(self) -> Any:
        connection, _ = self._require()
        channel = await connection.channel(publisher_confirms=True)
        try:
            yield channel
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def dead_letters(self, queue: str) -> list[DeadLetter]:
        """Read the dead-letter queue without consuming it: every message is fetched
        unacknowledged, then the channel closes and the broker puts them all back in order."""
        out: list[DeadLetter] = []
        async with self._side_channel() as channel:
            dlq = await channel.declare_queue(dead_letter_queue(queue), durable=True,
                                              arguments=self._queue_args)
            while (message := await dlq.get(no_ack=False, fail=False)) is not None:
                e = _envelope(message)
                error = (message.headers or {}).get(ERROR, "")
                out.append(DeadLetter(queue, e.id, e.routing_key, e.body, e.attempt, str(error)))
        return out

    async def replay(self, queue: str) -> int:
        n = 0
        async with self._side_channel() as channel:
            dlq = await channel.declare_queue(dead_letter_queue(queue), durable=True,
                                              arguments=self._queue_args)
            while (message := await dlq.get(no_ack=False, fail=False)) is not None:
                e = replace(_envelope(message), attempt=1)
                await channel.default_exchange.publish(_message(e), queue, mandatory=False,
                                                       timeout=self.timeout)
                await message.ack()
                n += 1
        return n
