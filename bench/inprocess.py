"""CPU per request, in process: drive an ASGI app with synthetic requests, no sockets.

wrk on loopback measures what a client sees, but on a 2-core machine the load generator, the
database and the server share the cores, so small changes to the per-request cost drown in
noise. This tool calls the ASGI application directly (``app(scope, receive, send)``) with a
fixed concurrency and reports ``time.process_time`` per request for this process, which is the
Python cost that the server's request rate is bounded by. Optionally it profiles the run.

    .venv/bin/python bench/inprocess.py sqlite:////abs/demo.db "/orders?id=eq.7"
    .venv/bin/python bench/inprocess.py postgresql://postgres@127.0.0.1/headwater_bench \\
        "/orders?customer_id=eq.{i}&order=ordered_at.desc&limit=20" --baseline /b?customer_id={i}
    .venv/bin/python bench/inprocess.py URL "/orders?id=eq.7" --env HEADWATER_CACHE_ENABLED=true

``{i}`` in a path is replaced by a rotating id (1..--ids). ``--baseline PATH`` also measures the
hand-written endpoint of ``bench/baseline.py`` on the same database, ``--ceiling`` its constant
endpoint. ``--profile N`` prints the top N functions by cumulative time (cProfile).

Headwater runs with its log at ``warning`` (no access line) unless ``--log`` turns on the
default ``info`` level, whose access lines go to ``--log-to`` (``/dev/null`` unless told), so
that log on vs off compares the cost of rendering and writing them, not of a terminal.
``--log-ab R`` measures both in one process, in R alternating rounds of ``-n`` requests, and
prints the medians (the access log's cost with the noise of a shared machine averaged out).
``--ab R --ab-env NAME=VALUE`` does the same for any setting, one app at a time, e.g. the
cost of events on single-row inserts (CPU of both threads: the loop and SQLite's writer):

    .venv/bin/python bench/inprocess.py sqlite:////dev/shm/copy.db /order_items --method POST \\
        --body '{"order_id":7,"product_id":3,"quantity":2,"unit_price":9.99}' -c 32 -n 4000 \\
        --env HEADWATER_EVENTS_ENABLED=false --ab 7 --ab-env HEADWATER_EVENTS_ENABLED=true
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent / "src"))
sys.path.insert(0, str(BENCH_DIR))

ASGI = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def scope_for(method: str, target: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    path, _, query = target.partition("?")
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1", "method": method, "scheme": "http", "path": path,
            "raw_path": path.encode(), "root_path": "", "query_string": query.encode(),
            "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 3000),
            "state": {}}


async def one(app: ASGI, method: str, target: str, body: bytes,
              headers: list[tuple[bytes, bytes]]) -> int:
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope_for(method, target, headers), receive, send)
    return status


async def lifespan(app: ASGI) -> Callable[[], Awaitable[None]]:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()
    finished = asyncio.Event()
    await queue.put({"type": "lifespan.startup"})

    async def receive() -> dict[str, Any]:
        return await queue.get()

    async def send(message: dict[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup"):
            if message["type"].endswith("failed"):
                raise RuntimeError(message.get("message"))
            started.set()
        elif message["type"].startswith("lifespan.shutdown"):
            finished.set()

    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"},
                                    "state": {}}, receive, send))
    await started.wait()

    async def stop() -> None:
        await queue.put({"type": "lifespan.shutdown"})
        await finished.wait()
        await task

    return stop


class Driver:
    """Synthetic requests against one app, started (lifespan) and warmed up once."""

    def __init__(self, app: ASGI, method: str, template: str, body: bytes,
                 headers: list[tuple[bytes, bytes]], *, concurrency: int, ids: int) -> None:
        self.app, self.method, self.template = app, method, template
        self.body, self.headers = body, headers
        self.concurrency, self.ids = concurrency, ids
        self.counter = iter(range(10**12))
        self.statuses: dict[int, int] = {}
        self._stop: Callable[[], Awaitable[None]] | None = None

    async def start(self, warm: int) -> None:
        self._stop = await lifespan(self.app)
        await self.run(max(self.concurrency, warm))  # warm-up: plans, caches, pool

    async def stop(self) -> None:
        if self._stop is not None:
            await self._stop()

    async def _worker(self, count: int) -> None:
        statuses = self.statuses
        for _ in range(count):
            i = next(self.counter) % self.ids + 1
            s = await one(self.app, self.method, self.template.replace("{i}", str(i)),
                          self.body, self.headers)
            statuses[s] = statuses.get(s, 0) + 1

    async def run(self, total: int) -> None:
        await asyncio.gather(*(self._worker(total // self.concurrency)
                               for _ in range(self.concurrency)))

    async def timed(self, n: int, prof: cProfile.Profile | None = None
                    ) -> tuple[float, float, float, int]:
        """(CPU, loop thread's CPU, wall) seconds and the number of requests."""
        self.statuses.clear()
        cpu, wall, main = time.process_time(), time.perf_counter(), time.thread_time()
        if prof:
            prof.enable()
        await self.run(n)
        if prof:
            prof.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        main = time.thread_time() - main
        return cpu, main, wall, sum(self.statuses.values())


async def measure(name: str, app: ASGI, method: str, template: str, body: bytes,
                  headers: list[tuple[bytes, bytes]], *, n: int, concurrency: int, ids: int,
                  profile: int, sort: str, callers: str | None, out: Any = None) -> None:
    out = out or sys.stdout
    d = Driver(app, method, template, body, headers, concurrency=concurrency, ids=ids)
    await d.start(n // 10)
    prof = cProfile.Profile() if profile else None
    cpu, main, wall, done = await d.timed(n, prof)
    print(f"{name:10s} {method} {template[:60]:60s} {1e6 * cpu / done:8.1f} µs CPU/req "
          f"({1e6 * main / done:.1f} on the loop's thread) "
          f"{done / wall:9.0f} req/s wall  statuses={d.statuses}", file=out)
    if prof:
        stats = pstats.Stats(prof, stream=out).sort_stats(sort)
        stats.print_stats(profile)
        if callers:
            stats.print_callers(callers)
    await d.stop()


async def compare(apps: dict[str, ASGI], method: str, template: str, body: bytes,
                  headers: list[tuple[bytes, bytes]], *, rounds: int, n: int,
                  concurrency: int, ids: int, out: Any) -> None:
    """The same requests against several apps in one process, in alternating rounds: on a
    shared machine, load that comes and goes then weighs on every app alike. Prints the
    median CPU per request of each and its ratio to the first."""
    drivers = {k: Driver(a, method, template, body, headers, concurrency=concurrency, ids=ids)
               for k, a in apps.items()}
    for d in drivers.values():
        await d.start(n // 2)
    per: dict[str, list[float]] = {k: [] for k in drivers}
    for _ in range(rounds):
        for k, d in drivers.items():
            cpu, _main, _wall, done = await d.timed(n)
            per[k].append(1e6 * cpu / done)
    first = statistics.median(next(iter(per.values())))
    for k, v in per.items():
        m = statistics.median(v)
        print(f"{k:14s} {method} {template[:50]:50s} median {m:6.2f} µs CPU/req "
              f"({m / first:.3f}× {next(iter(per))})  rounds: "
              + " ".join(f"{x:.1f}" for x in v)
              + f"  statuses={drivers[k].statuses}", file=out)
    for d in drivers.values():
        await d.stop()


async def compare_fresh(makers: dict[str, Callable[[], ASGI]], method: str, template: str,
                        body: bytes, headers: list[tuple[bytes, bytes]], *, rounds: int,
                        n: int, concurrency: int, ids: int, out: Any) -> None:
    """As ``compare``, but one app at a time, made and started afresh for each round: for
    configurations that must not run side by side (two SQLite writers on one file, one's
    background work such as the events relay landing in the other's round)."""
    per: dict[str, list[float]] = {k: [] for k in makers}
    for _ in range(rounds):
        for k, make in makers.items():
            d = Driver(make(), method, template, body, headers, concurrency=concurrency,
                       ids=ids)
            await d.start(n // 10)
            cpu, _main, _wall, done = await d.timed(n)
            await d.stop()
            per[k].append(1e6 * cpu / done)
    first = statistics.median(next(iter(per.values())))
    for k, v in per.items():
        m = statistics.median(v)
        print(f"{k:14s} {method} {template[:50]:50s} median {m:6.2f} µs CPU/req "
              f"({m / first:.3f}× {next(iter(per))})  rounds: "
              + " ".join(f"{x:.1f}" for x in v), file=out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("url")
    p.add_argument("path")
    p.add_argument("--method", default="GET")
    p.add_argument("--body", default="")
    p.add_argument("--header", action="append", default=[], help="Name: value")
    p.add_argument("-n", type=int, default=5000)
    p.add_argument("-c", "--concurrency", type=int, default=8)
    p.add_argument("--ids", type=int, default=1000)
    p.add_argument("--baseline", help="baseline path to measure too, e.g. /a?id={i}")
    p.add_argument("--ceiling", action="store_true", help="measure the constant endpoint too")
    p.add_argument("--no-headwater", action="store_true")
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for Headwater")
    p.add_argument("--log", action="store_true",
                   help="log at info (the default: one access line per request)")
    p.add_argument("--log-to", default=os.devnull, help="where log lines go with --log")
    p.add_argument("--log-ab", type=int, default=0, metavar="ROUNDS",
                   help="access log off vs on in one process, alternating rounds")
    p.add_argument("--ab", type=int, default=0, metavar="ROUNDS",
                   help="Headwater with --env vs with --env and --ab-env too, alternating "
                        "rounds, each app made afresh")
    p.add_argument("--ab-env", action="append", default=[], help="NAME=VALUE for --ab's B")
    p.add_argument("--profile", type=int, default=0)
    p.add_argument("--callers", help="also print who calls functions matching this")
    p.add_argument("--sort", default="cumulative", help="pstats order: cumulative, tottime")
    a = p.parse_args()
    headers = [(k.strip().lower().encode(), v.strip().encode())
               for k, _, v in (h.partition(":") for h in a.header)]
    body = a.body.encode()
    if body and not any(k == b"content-type" for k, _ in headers):
        headers.append((b"content-type", b"application/json"))
    opts = {"n": a.n, "concurrency": a.concurrency, "ids": a.ids, "profile": a.profile,
            "sort": a.sort, "callers": a.callers}

    async def go() -> None:
        if a.ceiling or a.baseline:
            os.environ["BASELINE_DATABASE_URL"] = a.url
            import baseline

            app = baseline.create_app()
            if a.ceiling:
                await measure("ceiling", app, "GET", "/ceiling", b"", [], **opts)
            if a.baseline:
                await measure("baseline", baseline.create_app(), a.method, a.baseline, body,
                              headers, **opts)
        if not a.no_headwater:
            from headwater.app import create_app
            from headwater.config import Settings

            def headwater(log: bool, more: Sequence[str] = ()) -> ASGI:
                env = {"HEADWATER_DATABASE_URL": a.url, "HEADWATER_CACHE_ENABLED": "false",
                       "HEADWATER_LOG_LEVEL": "info" if log else "warning"}
                env.update(kv.split("=", 1) for kv in [*a.env, *more])
                return create_app(Settings.from_env(env))

            # The app writes its lines to sys.stdout; this tool's report goes to the original.
            report = sys.stdout
            with open(a.log_to, "w") as lines:
                sys.stdout = lines
                try:
                    if a.ab:
                        b = " ".join(a.ab_env) or "B"
                        await compare_fresh({"A": lambda: headwater(a.log),
                                             b: lambda: headwater(a.log, a.ab_env)},
                                            a.method, a.path, body, headers, rounds=a.ab,
                                            n=a.n, concurrency=a.concurrency, ids=a.ids,
                                            out=report)
                    elif a.log_ab:
                        on = headwater(True)  # the last app made sets the stdlib log level
                        await compare({"log off": headwater(False), "log on": on}, a.method, a.path,
                                      body, headers, rounds=a.log_ab, n=a.n,
                                      concurrency=a.concurrency, ids=a.ids, out=report)
                    else:
                        await measure("headwater", headwater(a.log), a.method, a.path, body,
                                      headers, **opts, out=report)
                finally:
                    sys.stdout = report

    try:
        import uvloop

        uvloop.run(go())
    except ImportError:
        asyncio.run(go())


if __name__ == "__main__":
    main()
