"""One contract for both event buses: the in-process one and RabbitMQ."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aio_pika
import pytest

from headwater.errors import BrokerUnavailable
from headwater.events.bus import Bus, Delivery, Envelope, QueueSpec
from headwater.events.memory_bus import MemoryBus
from headwater.events.rabbitmq_bus import RabbitBus, dead_letter_queue, delay_queue
from headwater.testing import free_port


@dataclass
class Harness:
    bus: Bus
    prefix: str
    queues: list[QueueSpec] = field(default_factory=list)

    def spec(self, name: str, *patterns: str, delays: tuple[float, ...] = (0.05,),
             prefetch: int = 1) -> QueueSpec:
        spec = QueueSpec(f"{self.prefix}.{name}", patterns, delays, prefetch)
        self.queues.append(spec)
        return spec


async def delete_queues(url: str, specs: list[QueueSpec]) -> None:
    connection = await aio_pika.connect(url, timeout=5)
    try:
        channel = await connection.channel()
        for spec in specs:
            names = [spec.name, dead_letter_queue(spec.name),
                     *(delay_queue(spec.name, d) for d in set(spec.retry_delays))]
            for name in names:
                await channel.queue_delete(name)
    finally:
        await connection.close()


@pytest.fixture(params=["memory", "rabbitmq", "rabbitmq-quorum"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    prefix = "hwtest-" + secrets.token_hex(4)
    if request.param == "memory":
        bus: Bus = MemoryBus()
    else:
        url = request.getfixturevalue("amqp_url")
        if request.param == "rabbitmq-quorum":
            # Quorum queues, and a first node that is down: the bus goes on to the next.
            bus = RabbitBus(f"amqp://guest:guest@127.0.0.1:{free_port()}/,{url}",
                            reconnect_max_delay=0.5, queue_type="quorum")
        else:
            bus = RabbitBus(url, reconnect_max_delay=0.5)
    await bus.start()
    async with asyncio.timeout(10):
        await bus.wait_connected()
    h = Harness(bus, prefix)
    try:
        yield h
    finally:
        await bus.close()
        if isinstance(bus, RabbitBus):
            await delete_queues(bus.urls[-1], h.queues)


def envelope(key: str, n: int) -> Envelope:
    return Envelope(str(uuid.uuid4()), key, b'{"n": %d}' % n)


class Inbox:
    """Collects deliveries; ``decide`` says what to do with each."""

    def __init__(self, decide: Callable[[Delivery], str] | None = None) -> None:
        self.got: list[Envelope] = []
        self.decide = decide or (lambda d: "ack")
        self.changed = asyncio.Event()

    async def __call__(self, d: Delivery) -> None:
        self.got.append(d.envelope)
        action = self.decide(d)
        if action == "ack":
            await d.ack()
        elif action == "retry":
            await d.retry()
        else:
            await d.dead_letter(action)
        self.changed.set()

    async def wait_for(self, n: int, timeout: float = 10.0) -> list[Envelope]:
        async with asyncio.timeout(timeout):
            while len(self.got) < n:
                self.changed.clear()
                await self.changed.wait()
        return self.got


async def test_routes_by_topic_pattern_and_keeps_order(harness: Harness) -> None:
    orders, everything, new_customers = Inbox(), Inbox(), Inbox()
    await harness.bus.subscribe(harness.spec("orders", "orders.*"), orders)
    await harness.bus.subscribe(harness.spec("all", "#"), everything)
    await harness.bus.subscribe(harness.spec("cust", "customers.insert"), new_customers)
    keys = ["orders.insert", "orders.update", "customers.insert", "customers.delete",
            "order_items.insert"]
    sent = [envelope(keys[i % len(keys)], i) for i in range(100)]
    await harness.bus.publish(sent)
    assert await everything.wait_for(100) == sent
    assert await orders.wait_for(40) == [e for e in sent if e.routing_key.startswith("orders.")]
    assert await new_customers.wait_for(20) == [e for e in sent
                                                if e.routing_key == "customers.insert"]
    await asyncio.sleep(0.2)  # nothing more arrives
    assert (len(everything.got), len(orders.got), len(new_customers.got)) == (100, 40, 20)


async def test_retry_then_dead_letter_then_replay(harness: Harness) -> None:
    fixed = False

    def decide(d: Delivery) -> str:
        if fixed:
            return "ack"
        return "retry" if d.envelope.attempt < 3 else "boom: always fails"

    inbox = Inbox(decide)
    spec = harness.spec("flaky", "orders.insert", delays=(0.05, 0.2))
    await harness.bus.subscribe(spec, inbox)
    e = envelope("orders.insert", 1)
    await harness.bus.publish([e])
    got = await inbox.wait_for(3)
    assert [g.attempt for g in got] == [1, 2, 3]
    assert {(g.id, g.routing_key, g.body) for g in got} == {(e.id, e.routing_key, e.body)}

    async with asyncio.timeout(5):
        while not (letters := await harness.bus.dead_letters(spec.name)):
            await asyncio.sleep(0.05)
    [letter] = letters
    assert (letter.id, letter.routing_key, letter.body, letter.attempts) == (
        e.id, "orders.insert", e.body, 3)
    assert letter.error == "boom: always fails"
    # listing does not consume
    assert len(await harness.bus.dead_letters(spec.name)) == 1

    fixed = True
    assert await harness.bus.replay(spec.name) == 1
    again = await inbox.wait_for(4)
    assert (again[3].id, again[3].attempt, again[3].routing_key) == (e.id, 1, "orders.insert")
    assert await harness.bus.dead_letters(spec.name) == []


async def test_publish_with_no_queue_bound_is_confirmed(harness: Harness) -> None:
    await harness.bus.publish([envelope("nobody_listens.insert", 1)])


async def test_rabbit_messages_are_persistent_json_with_the_event_id(amqp_url: str) -> None:
    bus = RabbitBus(amqp_url)
    await bus.start()
    name = "hwtest-raw-" + secrets.token_hex(4)
    connection = await aio_pika.connect(amqp_url)
    try:
        async with asyncio.timeout(10):
            await bus.wait_connected()
        channel = await connection.channel()
        exchange = await channel.declare_exchange("headwater", aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        queue = await channel.declare_queue(name, durable=True)
        await queue.bind(exchange, "raw.*")
        e = envelope("raw.update", 7)
        await bus.publish([e])
        async with asyncio.timeout(5):
            while (message := await queue.get(no_ack=True, fail=False)) is None:
                await asyncio.sleep(0.02)
        assert message.message_id == e.id
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.content_type == "application/json"
        assert message.routing_key == "raw.update"
        assert message.body == e.body
        assert message.exchange == "headwater"
        await queue.delete()
    finally:
        await connection.close()
        await bus.close()


async def test_rabbit_unreachable_publish_fails_fast() -> None:
    bus = RabbitBus("amqp://guest:guest@127.0.0.1:1/", reconnect_max_delay=0.2)
    await bus.start()
    try:
        assert not bus.connected
        with pytest.raises(BrokerUnavailable) as info:
            await bus.publish([envelope("orders.insert", 1)])
        assert info.value.confirmed == 0
    finally:
        await bus.close()
