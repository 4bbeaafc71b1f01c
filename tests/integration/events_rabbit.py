"""Helpers for the RabbitMQ events tests: a test consumer, the broker's stop and start."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage


@dataclass
class Received:
    message_id: str
    routing_key: str
    persistent: bool
    event: dict[str, Any]


@dataclass
class ProbeQueue:
    """A durable queue bound to the ``headwater`` exchange, read by the test."""

    url: str
    name: str
    patterns: Sequence[str]
    got: list[Received] = field(default_factory=list)

    async def declare(self) -> None:
        connection = await aio_pika.connect(self.url, timeout=10)
        try:
            channel = await connection.channel()
            exchange = await channel.declare_exchange("headwater", aio_pika.ExchangeType.TOPIC,
                                                      durable=True)
            queue = await channel.declare_queue(self.name, durable=True)
            for p in self.patterns:
                await queue.bind(exchange, p)
        finally:
            await connection.close()

    async def drain(self, expect: int, idle: float = 5.0,
                    done: Callable[[list[Received]], bool] | None = None) -> list[Received]:
        """Read until ``expect`` messages in all (or until ``done`` says the ones received are
        enough), or nothing came for ``idle`` seconds."""
        connection = await aio_pika.connect(self.url, timeout=10)
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=2000)
            queue = await channel.declare_queue(self.name, durable=True)
            arrived = asyncio.Event()

            async def on_message(message: AbstractIncomingMessage) -> None:
                self.got.append(Received(
                    message.message_id or "", message.routing_key or "",
                    message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT,
                    json.loads(message.body)))
                await message.ack()
                arrived.set()

            tag = await queue.consume(on_message)
            while not (done(self.got) if done is not None else len(self.got) >= expect):
                arrived.clear()
                try:
                    await asyncio.wait_for(arrived.wait(), idle)
                except TimeoutError:
                    break
            await queue.cancel(tag)
        finally:
            await connection.close()
        return self.got

    async def delete(self) -> None:
        connection = await aio_pika.connect(self.url, timeout=10)
        try:
            channel = await connection.channel()
            await channel.queue_delete(self.name)
        finally:
            await connection.close()


async def delete_queues(url: str, names: Sequence[str]) -> None:
    connection = await aio_pika.connect(url, timeout=10)
    try:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)
    finally:
        await connection.close()


def _port_open(port: int = 5672) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def stop_broker() -> None:
    """Stop RabbitMQ's application (the node stays up, so it starts again in seconds)."""
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)


def start_broker() -> None:
    """Start RabbitMQ again and wait for its port: safe to call when it is running."""
    if shutil.which("rabbitmqctl"):
        done = subprocess.run(["rabbitmqctl", "start_app"], capture_output=True, timeout=120)
        if done.returncode != 0:  # the node itself is down
            subprocess.run(["rabbitmq-server", "-detached"], capture_output=True, timeout=60)
    deadline = time.monotonic() + 90
    while not _port_open():
        if time.monotonic() > deadline:
            raise RuntimeError("RabbitMQ did not come back")
        time.sleep(0.2)
