"""What the Redis store makes of a client call that fails: a ``RedisUnavailable``, which the
cache treats as Redis being away (it falls back), never an error of the request."""

from __future__ import annotations

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
