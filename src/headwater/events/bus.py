"""The event bus: a small async interface that the relay and the workers use.

Two kinds stand behind it: ``headwater.events.memory_bus.MemoryBus`` (in-process, the
embedded default) and ``headwater.events.rabbitmq_bus.RabbitBus`` (RabbitMQ, aio-pika). Both
give the same semantics, checked by one contract test:

* ``publish`` sends a batch to the topic exchange and returns once every message is confirmed
  (RabbitMQ publisher confirms); otherwise it raises ``BrokerUnavailable`` whose ``confirmed``
  counts the leading messages that were. Messages of one batch reach a queue in batch order.
* ``subscribe`` gives a named durable queue bound to topic patterns; each delivery is
  acknowledged (``ack``), sent back after the queue's delay for its attempt (``retry``) or
  moved to the queue's dead-letter queue (``dead_letter``).
* ``dead_letters`` lists a dead-letter queue, ``replay`` sends it back to its queue.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from headwater.events.outbox import DeadLetter


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message as the bus carries it: the body is an ``Event`` as JSON."""

    id: str
    routing_key: str
    body: bytes
    #: 1 on first delivery; each retry adds one.
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class QueueSpec:
    name: str
    patterns: tuple[str, ...]
    #: The wait before each retry: attempt ``n`` failed → ``retry_delays[n - 1]`` (the last
    #: one repeats).
    retry_delays: tuple[float, ...] = (1.0,)
    prefetch: int = 8

    def delay(self, attempt: int) -> float:
        delays = self.retry_delays or (1.0,)
        return delays[min(attempt, len(delays)) - 1]


class Delivery(ABC):
    envelope: Envelope

    @abstractmethod
    async def ack(self) -> None: ...

    @abstractmethod
    async def retry(self) -> None:
        """Deliver again, as attempt ``attempt + 1``, after the queue's delay."""

    @abstractmethod
    async def dead_letter(self, error: str) -> None: ...


OnDelivery = Callable[[Delivery], Awaitable[None]]


class Bus(ABC):
    @abstractmethod
    async def start(self) -> None:
        """Begin connecting; returns at once (the connection comes up in the background)."""

    @abstractmethod
    async def close(self) -> None: ...

    @property
    @abstractmethod
    def connected(self) -> bool: ...

    @abstractmethod
    async def wait_connected(self) -> None:
        """Return once connected (at once for the in-process bus)."""

    @abstractmethod
    async def publish(self, envelopes: Sequence[Envelope]) -> None: ...

    @abstractmethod
    async def subscribe(self, spec: QueueSpec, on_delivery: OnDelivery) -> None: ...

    @abstractmethod
    async def dead_letters(self, queue: str) -> list[DeadLetter]: ...

    @abstractmethod
    async def replay(self, queue: str) -> int:
        """Move a queue's dead letters back to it, each as a first attempt."""

