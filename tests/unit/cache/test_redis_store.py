"""What the Redis store makes of a client call that fails: a ``RedisUnavailable``, which the
cache treats as Redis being away (it falls back), never an error of the request."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from headwater.cache.redis import RedisStore
from headwater.errors import RedisUnavailable
from headwater.resilience.breaker import CircuitBreaker


@pytest.mark.parametrize("exc", [
    # redis-py's cluster client, under command timeouts: a connection disconnected by one
    # task (``disconnect_free_connections``) while another has just taken it for a pipeline
    AttributeError("'NoneType' object has no attribute 'writelines'"),
    RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is "
                 "closed"),
])
async def test_a_connection_closed_under_a_call_is_redis_unavailable(exc: Exception) -> None:
    store = RedisStore("redis://127.0.0.1:1/0", CircuitBreaker("redis"))  # never connected

    async def call() -> None:
        raise exc

    with pytest.raises(RedisUnavailable):
        await store._run(call())
    await store.close()


async def test_a_call_ends_at_the_deadline() -> None:
    """A reply that trickles in: the call ends at the store's deadline as
    ``RedisUnavailable`` (a plain client's call is cancelled in place, no task of its own).
    The deadline is set below the socket timeout here, which otherwise ends this call first."""
    stop = asyncio.Event()
    handlers: list[asyncio.Task[None]] = []

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        with contextlib.suppress(ConnectionError):
            await reader.read(1024)
            writer.write(b"$1000\r\n")
            while not stop.is_set():
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.02)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStore(f"redis://127.0.0.1:{port}/0", CircuitBreaker("redis"), timeout=1.0)
    store.deadline = 0.2
    started = time.monotonic()
    with pytest.raises(RedisUnavailable) as raised:
        await store.get("k")
    took = time.monotonic() - started
    assert raised.value.details == "TimeoutError"
    assert store.deadline <= took < store.deadline + 0.15
    stop.set()
    await store.close()
    await asyncio.gather(*handlers)
    server.close()
    await server.wait_closed()
