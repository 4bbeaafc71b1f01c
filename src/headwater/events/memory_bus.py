"""The in-process bus (``MemoryBus``), the embedded default, behind ``events.bus.Bus``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from headwater.events.bus import Bus, Delivery, Envelope, OnDelivery, QueueSpec
from headwater.events.event import topic_matches
from headwater.events.outbox import DeadLetter


class DeadLetterStore(Protocol):
    async def add(self, letter: DeadLetter) -> None: ...

    async def peek(self, queue: str) -> list[DeadLetter]: ...

    async def take(self, queue: str) -> list[DeadLetter]:
        """Remove and return the letters to replay."""
        ...


@dataclass
class MemoryDeadLetters:
    letters: list[DeadLetter] = field(default_factory=list)

    async def add(self, letter: DeadLetter) -> None:
        self.letters.append(letter)

    async def peek(self, queue: str) -> list[DeadLetter]:
        return [d for d in self.letters if d.queue == queue]

    async def take(self, queue: str) -> list[DeadLetter]:
        taken = [d for d in self.letters if d.queue == queue]
        self.letters = [d for d in self.letters if d.queue != queue]
        return taken


class _MemoryQueue:
    def __init__(self, spec: QueueSpec, on_delivery: OnDelivery) -> None:
        self.spec = spec
        self.on_delivery = on_delivery
        self.items: asyncio.Queue[Envelope] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None


class _MemoryDelivery(Delivery):
    def __init__(self, bus: MemoryBus, queue: _MemoryQueue, envelope: Envelope) -> None:
        self.bus = bus
        self.queue = queue
        self.envelope = envelope

    async def ack(self) -> None:
        return None

    async def retry(self) -> None:
        again = replace(self.envelope, attempt=self.envelope.attempt + 1)
        delay = self.queue.spec.delay(self.envelope.attempt)
        handle = asyncio.get_running_loop().call_later(delay, self.queue.items.put_nowait, again)
        self.bus._timers.add(handle)

    async def dead_letter(self, error: str) -> None:
        e = self.envelope
        await self.bus.store.add(DeadLetter(self.queue.spec.name, e.id, e.routing_key, e.body,
                                            e.attempt, error))


class MemoryBus(Bus):
    """The embedded default: the same topic routing and retry semantics, in this process.

    Not durable by itself: an event handed to it is safe once its handler has succeeded or it
    is in the dead-letter store; one waiting for a retry is lost if the process dies."""

    def __init__(self, store: DeadLetterStore | None = None) -> None:
        self.store: DeadLetterStore = store or MemoryDeadLetters()
        self._queues: dict[str, _MemoryQueue] = {}
        self._timers: set[asyncio.TimerHandle] = set()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        for q in self._queues.values():
            if q.task is not None:
                q.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await q.task

    @property
    def connected(self) -> bool:
        return True

    async def wait_connected(self) -> None:
        return None

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        for e in envelopes:
            for q in self._queues.values():
                if any(topic_matches(p, e.routing_key) for p in q.spec.patterns):
                    q.items.put_nowait(e)

    async def subscribe(self, spec: QueueSpec, on_delivery: OnDelivery) -> None:
        q = _MemoryQueue(spec, on_delivery)
        self._queues[spec.name] = q
        q.task = asyncio.create_task(self._consume(q), name=f"headwater-queue-{spec.name}")

    async def inject(self, queue: str, envelope: Envelope) -> None:
        """Put a message straight into one queue (how replays arrive)."""
        q = self._queues.get(queue)
        if q is not None:
            q.items.put_nowait(envelope)

    async def _consume(self, q: _MemoryQueue) -> None:
        slots = asyncio.Semaphore(max(1, q.spec.prefetch))
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                envelope = await q.items.get()
                await slots.acquire()
                task = asyncio.create_task(self._deliver(q, envelope, slots))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in list(running):
                task.cancel()

    async def _deliver(self, q: _MemoryQueue, envelope: Envelope,
                       slots: asyncio.Semaphore) -> None:
        try:
            await q.on_delivery(_MemoryDelivery(self, q, envelope))
        finally:
            slots.release()

    async def dead_letters(self, queue: str) -> list[DeadLetter]:
        return await self.store.peek(queue)

    async def replay(self, queue: str) -> int:
        letters = await self.store.take(queue)
        for d in letters:
            await self.inject(d.queue, Envelope(d.id, d.routing_key, d.body))
        return len(letters)

