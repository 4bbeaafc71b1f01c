"""Issue 16, items 8 and 9: slow and oversized clients cannot starve the others.

Against a real ``headwater serve`` with small limits (set through the environment, so that
each test takes seconds): a body that trickles in holds no admission slot and is answered 408
after ``body_timeout`` (stretched by ``body_min_rate``); a head larger than
``max_header_bytes`` is refused (431) or the connection dropped; a head not complete within
``header_timeout`` is closed; beyond ``max_connections`` a request gets 503. Timings are
bounds with generous slack, never exact latencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from headwater.testing import ServerProcess

SLOW_CLIENTS = 120
#: Fewer slots than slow clients: before the fix, the trickling bodies held every one.
LIMITS = {"HEADWATER_MAX_INFLIGHT": "64", "HEADWATER_BODY_TIMEOUT": "1",
          "HEADWATER_BODY_MIN_RATE": "100", "HEADWATER_HEADER_TIMEOUT": "1",
          "HEADWATER_MAX_CONNECTIONS": "1000",
          # the limits are per worker process: one worker, so each is the one set
          "HEADWATER_WORKERS": "1"}
SLACK = 6.0  # seconds past a timeout within which the server must have acted


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def limited(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    db_url = request.getfixturevalue("demo_sqlite" if request.param == "sqlite"
                                     else "demo_postgres")
    with ServerProcess(db_url, env=LIMITS) as server:
        yield server


def _head(port: int, length: int, path: str = "/products") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


async def _slow_body(port: int, stop: asyncio.Event) -> tuple[bytes, float]:
    """Sends a head, then a byte a second of a 1,000-byte body: what came back (b"" when the
    server closed without a word) and after how many seconds."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    began = time.monotonic()
    try:
        writer.write(_head(port, 1000))
        await writer.drain()
        while not stop.is_set():
            try:
                data = await asyncio.wait_for(reader.read(4096), 1.0)
                seconds = time.monotonic() - began
                # The answer may come in more than one segment (its head, then its body):
                # read on until the server closes, as it does after a 408.
                with contextlib.suppress(TimeoutError, ConnectionError):
                    async with asyncio.timeout(2.0):
                        while data and (more := await reader.read(4096)):
                            data += more
                return data, seconds
            except TimeoutError:
                with contextlib.suppress(ConnectionError):
                    writer.write(b" ")
                    await writer.drain()
            except ConnectionError:
                return b"", time.monotonic() - began
        return b"still open", time.monotonic() - began
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _attack(server: ServerProcess) -> tuple[list[tuple[bytes, float]], list[int], float]:
    stop = asyncio.Event()
    port = server.port
    slow = [asyncio.create_task(_slow_body(port, stop)) for _ in range(SLOW_CLIENTS)]
    await asyncio.sleep(0.5)  # every slow client has sent its head and holds its request open
    statuses: list[int] = []
    worst = 0.0
    async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as client:
        for _ in range(20):
            began = time.monotonic()
            r = await client.get("/products", params={"limit": "1"})
            worst = max(worst, time.monotonic() - began)
            statuses.append(r.status_code)
    await asyncio.wait(slow, timeout=1.0 + SLACK)
    stop.set()
    return await asyncio.gather(*slow), statuses, worst


def test_slow_bodies_hold_no_slot_and_time_out(limited: ServerProcess) -> None:
    answers, statuses, worst = asyncio.run(_attack(limited))
    assert statuses == [200] * 20
    assert worst < 3.0
    for data, seconds in answers:
        assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:200]
        assert seconds < 1.0 + SLACK
    refused = [d for d, _ in answers if d]
    assert refused, "at least some slow clients are told why"
    body = refused[0].split(b"\r\n\r\n", 1)[1]
    assert b'"code":"HW408"' in body.replace(b" ", b"")
    assert httpx.get(limited.url + "/-/live", timeout=5).status_code == 200


def test_body_above_the_minimum_rate_is_read_past_the_timeout(limited: ServerProcess) -> None:
    """1,000 bytes at ~400 bytes/s take 2.5 s, past ``body_timeout`` (1 s), but the rate is
    above ``body_min_rate`` (100 bytes/s): the body is read (and refused as invalid JSON)."""
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as s:
        s.sendall(_head(limited.port, 1000))
        for _ in range(5):
            time.sleep(0.5)
            s.sendall(b" " * 199 if _ < 4 else b" " * 203 + b"x")
        assert s.recv(4096).startswith(b"HTTP/1.1 400")


def test_huge_header_is_refused_and_server_keeps_serving(limited: ServerProcess) -> None:
    began = time.monotonic()
    head = (f"GET /products?limit=1 HTTP/1.1\r\nHost: 127.0.0.1:{limited.port}\r\n"
            "X-Big: ").encode() + b"a" * (1024 * 1024) + b"\r\n\r\n"
    answer = b""
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as s:
        try:
            s.sendall(head)
            answer = s.recv(4096)
        except ConnectionError:
            pass
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert time.monotonic() - began < 5.0
    assert httpx.get(limited.url + "/products?limit=1", timeout=5).status_code == 200


@pytest.mark.parametrize("sent", [b"", b"GET /products HTT", b"GET / HTTP/1.1\r\nHost: x\r\n"])
def test_incomplete_head_is_closed_within_the_header_timeout(limited: ServerProcess,
                                                             sent: bytes) -> None:
    with socket.create_connection(("127.0.0.1", limited.port), timeout=1.0 + SLACK) as s:
        began = time.monotonic()
        s.sendall(sent)
        try:
            answer = s.recv(4096)
        except TimeoutError:
            pytest.fail("the server kept a half-sent connection open")
        except ConnectionError:
            answer = b""
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert time.monotonic() - began < 1.0 + SLACK


def test_connections_beyond_the_limit_get_503(demo_sqlite: str) -> None:
    # The limit is per worker process (README, Worker processes): one worker here.
    env = {"HEADWATER_MAX_CONNECTIONS": "4", "HEADWATER_HEADER_TIMEOUT": "30",
           "HEADWATER_WORKERS": "1"}
    with ServerProcess(demo_sqlite, env=env) as server:
        held = [socket.create_connection(("127.0.0.1", server.port), timeout=5)
                for _ in range(4)]
        try:
            time.sleep(0.3)
            r = httpx.get(server.url + "/products?limit=1", timeout=5)
            assert r.status_code == 503
            assert r.json()["code"] == "HW503"
            assert "retry-after" in r.headers
        finally:
            for s in held:
                s.close()
        time.sleep(0.3)
        assert httpx.get(server.url + "/products?limit=1", timeout=5).status_code == 200


def _read_response(s: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += s.recv(4096)
    return head


def test_a_keep_alive_connection_outlives_the_header_timeout(limited: ServerProcess) -> None:
    """The head deadline is per request: requests 0.7 s apart on one connection, for longer
    than ``header_timeout`` (1 s) in all, are all answered."""
    request = (f"GET /products?limit=1 HTTP/1.1\r\nHost: 127.0.0.1:{limited.port}\r\n"
               "\r\n").encode()
    with socket.create_connection(("127.0.0.1", limited.port), timeout=5) as s:
        for _ in range(4):
            s.sendall(request)
            assert _read_response(s).startswith(b"HTTP/1.1 200")
            time.sleep(0.7)


def test_an_unread_body_that_trickles_is_cut_off(limited: ServerProcess) -> None:
    """A request answered before its body is read (405 here) must still send the rest of the
    body in time: a byte every 0.5 s of 1,000 gets the connection closed after
    ``body_timeout`` (1 s), not kept for as long as bytes come."""
    with socket.create_connection(("127.0.0.1", limited.port), timeout=1.0 + SLACK) as s:
        s.sendall(_head(limited.port, 1000, "/-/live"))
        assert _read_response(s).startswith(b"HTTP/1.1 405")
        began = time.monotonic()
        closed = False
        while time.monotonic() - began < 1.0 + SLACK and not closed:
            time.sleep(0.5)
            try:
                s.sendall(b" ")
                s.setblocking(False)
                try:
                    closed = s.recv(4096) == b""
                except BlockingIOError:
                    pass
                finally:
                    s.setblocking(True)
            except ConnectionError:
                closed = True
        assert closed, "the server kept reading a body nobody wanted for ever"
