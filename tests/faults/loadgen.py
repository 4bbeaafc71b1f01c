"""A small open-loop HTTP load generator, run in its own process by the fault suite.

Requests are scheduled at a fixed rate whatever the server does (latency is measured from
the scheduled time, so a stalled server cannot hide behind a slowed client), over a pool of
keep-alive connections. Each request's outcome is written as one JSON line:
``[scheduled_offset_s, latency_s, status, kind, x_cache]``; status 0 is a client timeout or a
broken connection. Bounded in count and time, loopback only.

    python -m tests.faults.loadgen --url http://127.0.0.1:PORT --rate 200 --duration 30 \\
        --mix cached=5,uncached=3,write=2 --out results.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Request:
    kind: str
    raw: bytes


IDEMPOTENT = frozenset({"cached", "uncached", "other_table", "heavy", "locked"})


def build(kind: str, host: str, rng: random.Random, tag: str) -> Request:
    if kind == "cached":
        path = f"/products?select=id,name,price&id=eq.{rng.randint(1, 20)}"
        return Request(kind, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    if kind == "uncached":
        path = f"/orders?select=id,total,order_items(id)&id=eq.{rng.randint(1, 10**9)}"
        return Request(kind, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    if kind == "other_table":
        path = f"/products?select=id,sku&id=eq.{rng.randint(1, 200)}&limit={rng.randint(1, 10**6)}"
        return Request(kind, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    if kind == "write":
        marker = f"{tag}-{uuid.uuid4().hex}"
        body = json.dumps({"name": "load", "email": f"{marker}@load.example",
                           "created_at": "2024-01-01T00:00:00"}).encode()
        return Request(kind, (f"POST /customers HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
                              f"application/json\r\nX-Marker: {marker}\r\nContent-Length: "
                              f"{len(body)}\r\n\r\n").encode() + body)
    if kind == "locked":
        body = json.dumps({"country": "SE"}).encode()
        return Request(kind, (f"PATCH /customers?id=eq.1 HTTP/1.1\r\nHost: {host}\r\n"
                              f"Content-Type: application/json\r\nContent-Length: {len(body)}"
                              f"\r\n\r\n").encode() + body)
    if kind == "heavy":
        path = ("/orders?select=*,customer:customers(*),order_items(*,product:products(*))"
                f"&order=id&limit=10&offset={rng.randint(0, 400)}")
        return Request(kind, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    raise ValueError(kind)


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
#: An idle connection older than this is closed rather than reused: well inside the servers'
#: keep-alive timeouts (Headwater's 5 s, HAProxy's 30 s), so a request is never sent on a
#: connection the server is closing.
MAX_IDLE = 2.0


class Connections:
    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host = host
        self.port = port
        self.idle: list[tuple[Conn, float]] = []  # most recently used last
        self.reused: set[Conn] = set()
        self.sem = asyncio.Semaphore(limit)

    async def get(self, fresh: bool = False) -> Conn:
        await self.sem.acquire()
        if self.idle and not fresh:
            conn, since = self.idle.pop()
            if time.monotonic() - since < MAX_IDLE:
                return conn
            # it and every one below it idle too long
            for old, _ in [*self.idle, (conn, since)]:
                self.reused.discard(old)
                old[1].close()
            self.idle.clear()
        try:
            return await asyncio.open_connection(self.host, self.port)
        except BaseException:
            self.sem.release()
            raise

    def put(self, conn: Conn, ok: bool) -> None:
        if ok:
            self.idle.append((conn, time.monotonic()))
            self.reused.add(conn)
        else:
            self.reused.discard(conn)
            conn[1].close()
        self.sem.release()


async def one(conns: Connections, req: Request, timeout: float) -> tuple[int, str]:
    for attempt in range(2):
        try:
            conn = await asyncio.wait_for(conns.get(fresh=attempt > 0), timeout)
        except (TimeoutError, OSError) as exc:
            return 0, type(exc).__name__
        reused = conn in conns.reused
        result = await _exchange(conns, conn, req, timeout)
        # A keep-alive connection closed with no answer: a read is sent again, as any client
        # does; a write is not (RFC 9110 9.2.2: it may have been applied; a load balancer
        # closes the client's connection so when the node under a write died).
        if (result != (0, "IncompleteReadError") or not reused or attempt
                or req.kind not in IDEMPOTENT):
            return result
    return 0, "unreachable"


async def _exchange(conns: Connections, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                    req: Request, timeout: float) -> tuple[int, str]:
    ok = False
    try:
        reader, writer = conn
        writer.write(req.raw)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        x_cache = ""
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "x-cache":
                x_cache = value.strip()
            elif name == "connection" and "close" in value.lower():
                close = True
        if length:
            await asyncio.wait_for(reader.readexactly(length), timeout)
        ok = not close
        return status, x_cache
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
        return 0, type(exc).__name__
    finally:
        conns.put(conn, ok)


async def run(url: str, rate: float, duration: float, mix: dict[str, int], out: str,
              timeout: float, connections: int, seed: int, closed: int) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    conns = Connections(host, port, connections)
    rng = random.Random(seed)
    kinds = [k for k, w in mix.items() for _ in range(w)]
    tag = uuid.uuid4().hex[:8]
    results: list[tuple[float, float, int, str, str, str]] = []
    start = time.perf_counter()
    wall_start = time.time()
    tasks: set[asyncio.Task[None]] = set()

    async def fire(at: float, req: Request) -> None:
        status, x_cache = await one(conns, req, timeout)
        marker = ""
        if req.kind == "write":
            marker = req.raw.split(b"X-Marker: ", 1)[1].split(b"\r\n", 1)[0].decode()
        results.append((at, time.perf_counter() - start - at, status, req.kind, x_cache,
                        marker))

    if closed:
        # Closed loop: ``closed`` clients back to back, to measure capacity.
        async def client() -> None:
            while time.perf_counter() - start < duration:
                await fire(time.perf_counter() - start, build(rng.choice(kinds), host, rng, tag))

        await asyncio.gather(*(client() for _ in range(closed)))
    else:
        for i in itertools.count():
            at = i / rate
            if at >= duration:
                break
            delay = start + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            t = asyncio.ensure_future(fire(at, build(rng.choice(kinds), host, rng, tag)))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout + 1)
    for (_, writer), _since in conns.idle:
        with contextlib.suppress(Exception):
            writer.close()
    with open(out, "w") as fh:
        fh.write(json.dumps({"start_epoch": wall_start}) + "\n")
        for r in results:
            fh.write(json.dumps(r) + "\n")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--rate", type=float, default=200)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--mix", default="cached=1")
    p.add_argument("--out", required=True)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=256)
    p.add_argument("--closed", type=int, default=0, help="closed-loop clients instead of a rate")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    host = urlsplit(a.url).hostname or ""
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        raise SystemExit("loadgen only targets loopback addresses")
    mix = {k: int(v) for k, v in (part.split("=") for part in a.mix.split(","))}
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run(a.url, a.rate, min(a.duration, 120.0), mix, a.out, a.timeout,
                    a.connections, a.seed, a.closed))


if __name__ == "__main__":
    main()
