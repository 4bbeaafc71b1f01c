"""The HTTP connection: uvicorn's httptools protocol with the limits it lacks.

uvicorn's httptools path bounds nothing before the application runs: it buffers a header of
any size (a 200 MB header was accepted after a 7 s stall), it has no deadline for a request's
head (its keep-alive timer is armed only after a response and cancelled by the next byte, so
a connection that sends half a request line, or nothing at all, stays open for ever), and
its ``limit_concurrency`` answers a plain-text 503. h11 bounds the head
(``h11_max_incomplete_event_size``) but has no head deadline either, and parses in Python:
it would cost more than these few checks per chunk. So this subclass adds, per connection:

- ``max_header_bytes``: the bytes of a head are counted as they arrive; a head that has not
  ended within the limit gets 431 and the connection is closed (checked before httptools
  buffers the bytes, so memory stays bounded; bytes of a pipelined next request that arrive
  in the same chunk as the end of the previous one are not counted, a bound of one read);
- ``header_timeout``: from the connection's opening, or the first byte of the next request,
  to the end of the head; past it 408 (silently when nothing was sent) and closed;
- ``max_connections``: a request on a connection beyond the limit is answered 503
  (PostgREST-shaped, with ``Retry-After``) and its connection closed;
- a request answered before its body was read (a 401, a 405): the rest of its body must
  still come within ``body_timeout`` / ``body_min_rate``, else the connection is closed
  (uvicorn would otherwise keep it open for as long as a byte comes now and then).

The body's own deadline is the application's (``api.routes.read_body``), where the request
can be answered 408 and its admission slot given back while it waits.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any, cast

import msgspec
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from headwater.config import Settings
from headwater.errors import HeadersTooLarge, HeadwaterError, Overloaded, RequestTimeout


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_header_bytes: int
    header_timeout: float
    #: 0 = no limit.
    max_connections: int
    body_timeout: float
    body_min_rate: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(settings.max_header_bytes, settings.header_timeout, settings.max_connections,
                   settings.body_timeout, settings.body_min_rate)


def protocol_factory(settings: Settings) -> type[asyncio.Protocol]:
    """What ``uvicorn.run(http=...)`` takes: called like a protocol class, and picklable (so
    that ``--workers`` processes get it with uvicorn's config)."""
    return cast("type[asyncio.Protocol]", functools.partial(
        LimitedHttpToolsProtocol, limits=ConnectionLimits.from_settings(settings)))


def _raw_response(exc: HeadwaterError) -> bytes:
    body = msgspec.json.encode(exc.body())
    return b"".join([STATUS_LINE[exc.status], b"content-type: application/json\r\n",
                     b"content-length: ", str(len(body)).encode(), b"\r\n",
                     b"connection: close\r\n\r\n", body])


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *,
                 limits: ConnectionLimits) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        # True from the end of one request's message (or the connection's opening) to the end
        # of the next one's head: what arrives meanwhile is a head.
        self._in_head = True
        self._head_bytes = 0
        # The connection's opening starts its first head's deadline.
        self._head_started = True
        self._head_deadline = 0.0
        self._head_timer: asyncio.TimerHandle | None = None
        # A request answered before its body was read (a refusal): the rest of the body is
        # discarded as it comes, under the body's deadline, then the connection is reused.
        self._drain_timer: asyncio.TimerHandle | None = None
        self._drain_began = 0.0
        self._drained = 0

    # --- the head's deadline ------------------------------------------------------------------
    # One lazy timer per connection, not one per request: a head's start only sets the
    # deadline (and arms the timer if none is pending); the timer, when it fires, re-arms
    # itself for the current deadline while a head is awaited. Arming and cancelling a timer
    # per request cost ~4 µs (measured), most of what this class would add to a request.

    def _start_head(self) -> None:
        self._head_deadline = self.loop.time() + self.limits.header_timeout
        if self._head_timer is None:
            self._head_timer = self.loop.call_at(self._head_deadline, self._head_timeout)

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not (self._in_head and self._head_started):
            return  # between requests the keep-alive timeout is in charge
        left = self._head_deadline - self.loop.time()
        if left > 0 or (self.cycle is not None and not self.cycle.response_complete):
            # Not yet; or a pipelined head behind a request still being answered (the client
            # waits on us, not we on it).
            self._head_timer = self.loop.call_later(
                left if left > 0 else self.limits.header_timeout, self._head_timeout)
            return
        if self._head_bytes:
            self.transport.write(_raw_response(RequestTimeout(
                "Request headers not received in time",
                hint=f"send the request line and headers within {self.limits.header_timeout:g} "
                     "seconds")))
        self.transport.close()

    # --- the rest of a body nobody reads ------------------------------------------------------

    def _drain_deadline(self) -> float:
        rate = self.limits.body_min_rate
        return (self._drain_began + self.limits.body_timeout
                + (self._drained / rate if rate > 0 else 0.0))

    def _drain_timeout(self) -> None:
        self._drain_timer = None
        if self.transport.is_closing() or self._in_head:
            return
        left = self._drain_deadline() - self.loop.time()
        if left > 0:
            self._drain_timer = self.loop.call_later(left, self._drain_timeout)
        else:
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._in_head and not self.transport.is_closing() and self._drain_timer is None:
            self._drain_began = self.loop.time()
            self._drained = 0
            self._drain_timer = self.loop.call_at(self._drain_deadline(), self._drain_timeout)

    def on_body(self, body: bytes) -> None:
        if self._drain_timer is not None:
            self._drained += len(body)
        super().on_body(body)

    # --- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._in_head:
            super().data_received(data)
            return
        if not self._head_started:
            self._head_started = True
            self._start_head()
        room = self.limits.max_header_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)  # reset by on_headers_complete when the head ends
            super().data_received(data)
            return
        # The head may end within the bytes that still fit: feed those, and refuse only if
        # it did not; the rest (a body, the next request) is then fed as usual.
        self._head_bytes += room
        super().data_received(data[:room])
        if self.transport.is_closing():
            return
        if self._in_head:
            self.transport.write(_raw_response(HeadersTooLarge(
                "Request headers too large",
                hint=f"send at most {self.limits.max_header_bytes} bytes of request line and "
                     "headers")))
            self.transport.close()
            return
        super().data_received(data[room:])

    # --- httptools parser callbacks -------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_started = False
        self._head_bytes = 0
        limit = self.limits.max_connections
        if limit and len(self.connections) > limit:
            # uvicorn takes the request's application from self.app: this one request gets
            # the refusal instead.
            app = self.app
            self.app = _too_many_connections
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None


_OVERLOADED = msgspec.json.encode(Overloaded(
    "Server overloaded: too many connections open",
    hint="retry after the Retry-After delay, or reuse a connection").body())


async def _too_many_connections(scope: Any, receive: Any, send: Any) -> None:
    body = _OVERLOADED
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"retry-after", b"1"),
        (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
