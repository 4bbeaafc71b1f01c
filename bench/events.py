"""Events benchmark: what transactional events cost the write path, and how fast they flow.

    .venv/bin/python bench/events.py [--dbs postgres,sqlite] [--duration 4] [--repeat 3]
                                     [--relay-events 20000] [--latency-events 400] [--rate 100]
                                     [--no-rabbitmq] [--out bench/results]

1. Write throughput, events off vs on. wrk (one thread, 32 connections) POSTs one new row per
   request (bench/inserts.lua) to a fresh ``bench_items`` table on a fresh database, against a
   ``headwater serve`` with events off, on with the in-process bus, and on with RabbitMQ (the
   relay publishing in the same process). Runs alternate between modes and the median of
   ``--repeat`` runs is reported; the result cache is off, as in bench/run.py, and so is the
   event-loop-lag load shedding (it would turn saturation into 503s).
2. Relay throughput: ``--relay-events`` events are put in the outbox first, then one relay
   drains it (claim → publish → confirm → mark sent, batches of 500) to the in-process bus or
   to RabbitMQ (a durable queue bound, so the broker stores every message).
3. Commit → handler latency: ``--latency-events`` inserts, one at a time at ``--rate`` per
   second, with a handler (bench/events_app.py) noting when each event reached it, in the
   embedded mode (handler in the server) and with RabbitMQ (handler in ``headwater worker``).
   "commit→handler" is measured from the moment the client has the 201 (the commit happened
   just before: this understates by the response's way back, ~0.1 ms); "request→handler" from
   the moment the request was sent (an upper bound).

Results go to ``<out>/events.json`` and ``<out>/events.md``. PostgreSQL on 127.0.0.1:5432
(trust auth, user postgres) and, unless ``--no-rabbitmq``, RabbitMQ on 127.0.0.1:5672.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
sys.path.insert(0, str(REPO_DIR / "src"))

from headwater.config import Settings  # noqa: E402
from headwater.db.connect import open_database  # noqa: E402
from headwater.events.bus import Bus  # noqa: E402
from headwater.events.memory_bus import MemoryBus  # noqa: E402
from headwater.events.outbox import Outbox  # noqa: E402
from headwater.events.rabbitmq_bus import RabbitBus  # noqa: E402
from headwater.events.recording import EventBuffer, Recorder  # noqa: E402
from headwater.events.relay import Relay  # noqa: E402
from headwater.observability.logging import make_logger  # noqa: E402
from headwater.observability.metrics import Metrics  # noqa: E402
from headwater.testing import ServerProcess, queue_consumers  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DDL = "CREATE TABLE bench_items (id bigint PRIMARY KEY, client integer NOT NULL, n integer NOT NULL)"
BASE_ENV = {"HEADWATER_CACHE_ENABLED": "false", "HEADWATER_MAX_LOOP_LAG_MS": "0",
            "HEADWATER_LOG_LEVEL": "warning"}


# --- databases ---------------------------------------------------------------------------------


class Databases:
    """Fresh databases with an empty ``bench_items``; all dropped at the end."""

    def __init__(self) -> None:
        self.pg: list[str] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="hw-bench-events-"))

    def fresh(self, db: str) -> str:
        if db == "sqlite":
            path = self.tmp / f"{secrets.token_hex(4)}.db"
            conn = sqlite3.connect(path)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(DDL)
            conn.commit()
            conn.close()
            return f"sqlite:///{path}"
        name = "hw_bench_ev_" + secrets.token_hex(4)
        asyncio.run(_pg(PG_ADMIN, f'CREATE DATABASE "{name}"'))
        self.pg.append(name)
        url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
        asyncio.run(_pg(url, DDL))
        return url

    def close(self) -> None:
        for name in self.pg:
            for _ in range(30):  # a fault test elsewhere may have stopped PostgreSQL a while
                try:
                    asyncio.run(_pg(PG_ADMIN, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    break
                except OSError:
                    time.sleep(1.0)
        shutil.rmtree(self.tmp, ignore_errors=True)


async def _pg(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def rabbit_reachable() -> bool:
    async def ping() -> None:
        connection = await aio_pika.connect(AMQP_URL, timeout=3)
        await connection.close()

    try:
        asyncio.run(ping())
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError):
        return False
    return True


def load() -> float:
    return round(os.getloadavg()[0], 2)


# --- 1. write throughput -----------------------------------------------------------------------


def wrk(url: str, seconds: float, first_id: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{max(1, round(seconds))}s", "--latency", "-s",
         str(BENCH_DIR / "inserts.lua"), url, "--", "bench_items", str(first_id)],
        capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)$", out, re.M)
        if m is None:
            return float("nan")
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m[2]]
        return round(float(m[1]) * scale, 3)

    return {"rps": rps, "non_2xx": float(bad[1]) if bad else 0.0, "p50_ms": pct("50"),
            "p99_ms": pct("99")}


def write_throughput(dbs: list[str], modes: list[str], seconds: float, repeat: int,
                     databases: Databases) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for db in dbs:
        runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
        for r in range(repeat):
            for mode in modes:
                env = {**BASE_ENV, "HEADWATER_EVENTS_ENABLED": "false" if mode == "off" else "true"}
                if mode.startswith("rabbitmq"):
                    env["HEADWATER_AMQP_URL"] = AMQP_URL
                if mode == "rabbitmq-relay":
                    env["HEADWATER_RELAY_IN_SERVER"] = "false"
                url = databases.fresh(db)
                with ServerProcess(url, env=env) as server, relay_process(url, mode):
                    wrk(server.url, 1, 1_000_000_000)  # warm-up
                    res = wrk(server.url, seconds, 1)
                    if mode.startswith("rabbitmq"):
                        res["drain_s"] = drain_time(url)
                res["load"] = load()
                runs[mode].append(res)
                print(f"  writes {db:8} events {mode:14} run {r + 1}: {res['rps']:8.0f} req/s  "
                      f"p99 {res['p99_ms']} ms  non-2xx {res['non_2xx']:.0f}"
                      + (f"  outbox drained {res['drain_s']} s after" if "drain_s" in res
                         else ""), flush=True)
        base = statistics.median(x["rps"] for x in runs["off"])
        for mode in modes:
            med = statistics.median(x["rps"] for x in runs[mode])
            rows.append({"db": db, "events": mode, "rps_median": round(med),
                         "rps_runs": [round(x["rps"]) for x in runs[mode]],
                         "p99_ms_median": statistics.median(x["p99_ms"] for x in runs[mode]),
                         "non_2xx": sum(x["non_2xx"] for x in runs[mode]),
                         "drain_s": (statistics.median(x["drain_s"] for x in runs[mode])
                                     if mode.startswith("rabbitmq") else None),
                         "vs_off": round(med / base, 3)})
    return rows


@contextmanager
def relay_process(url: str, mode: str) -> Iterator[None]:
    """``headwater relay`` beside the server, for the ``rabbitmq-relay`` mode."""
    if mode != "rabbitmq-relay":
        yield
        return
    proc = subprocess.Popen(
        [sys.executable, "-m", "headwater", "relay", url, "--amqp-url", AMQP_URL,
         "--poll-interval", "0.02", "--log-level", "warning"], cwd=REPO_DIR)
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def drain_time(url: str, limit: float = 120.0) -> float:
    """Seconds until every event of the run is published (the relay kept up, or caught up)."""
    async def wait() -> float:
        settings = Settings(database_url=url)
        db = open_database(settings)
        await db.start()
        try:
            outbox = Outbox(settings, db.dialect, db.schema)
            t0 = time.monotonic()
            # polling another process's progress: there is no event to wait on
            while await outbox.pending(db) and time.monotonic() - t0 < limit:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            return round(time.monotonic() - t0, 1)
        finally:
            await db.close()

    return asyncio.run(wait())


# --- 2. relay throughput -----------------------------------------------------------------------


async def relay_rate(db_url: str, bus_kind: str, n: int) -> dict[str, Any]:
    settings = Settings(database_url=db_url, relay_batch=500)
    db = open_database(settings)
    await db.start()
    outbox = Outbox(settings, db.dialect, db.schema)
    await outbox.ensure(db)
    principal = {"role": "anonymous", "claims": {}}
    recorder = Recorder(outbox)
    for start in range(0, n, 1000):
        buf = EventBuffer(recorder, principal)
        buf.add_rows("bench_items", "insert", ("id",),
                     [{"id": i, "client": 1, "n": i} for i in range(start, min(n, start + 1000))])
        async with db.transaction() as tx:
            await buf.flush(tx)
    queue_name = "hwbench-relay-" + secrets.token_hex(4)
    bus: Bus
    if bus_kind == "rabbitmq":
        bus = RabbitBus(AMQP_URL)
        connection = await aio_pika.connect(AMQP_URL)
        channel = await connection.channel()
        exchange = await channel.declare_exchange("headwater", aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        queue = await channel.declare_queue(queue_name, durable=True)
        await queue.bind(exchange, "bench_items.*")
    else:
        bus = MemoryBus()
    await bus.start()
    await asyncio.wait_for(bus.wait_connected(), 10)
    relay = Relay(settings, db, outbox, bus, metrics=Metrics(), log=make_logger("error"))
    t0 = time.perf_counter()
    published = await relay.drain()
    elapsed = time.perf_counter() - t0
    await bus.close()
    if bus_kind == "rabbitmq":
        await queue.delete(if_unused=False, if_empty=False)
        await connection.close()
    left = await outbox.pending(db)
    await db.close()
    assert published == n and left == 0, (published, left)
    return {"events": n, "seconds": round(elapsed, 3), "events_per_s": round(n / elapsed)}


def relay_throughput(dbs: list[str], buses: list[str], n: int,
                     databases: Databases) -> list[dict[str, Any]]:
    rows = []
    for db in dbs:
        for bus in buses:
            res = asyncio.run(relay_rate(databases.fresh(db), bus, n))
            rows.append({"db": db, "bus": bus, **res, "load": load()})
            print(f"  relay  {db:8} → {bus:9}: {res['events_per_s']:8.0f} events/s "
                  f"({n} in {res['seconds']} s)", flush=True)
    return rows


# --- 3. commit → handler latency ---------------------------------------------------------------


@contextmanager
def worker_process(db_url: str, env: dict[str, str], log: Path) -> Iterator[None]:
    out = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "headwater", "worker", "--app", "bench.events_app:app", db_url],
        env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_DIR)
    try:
        deadline = time.monotonic() + 30
        while asyncio.run(queue_consumers(AMQP_URL, BENCH_QUEUE)) == 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(10)
        out.close()


BENCH_QUEUE = "headwater.bench-latency"


def reset_bench_queues() -> None:
    """Drop the latency handler's durable queues: left bound to the exchange, they would
    collect the events of every other run and feed them to the next worker."""
    from headwater.events.rabbitmq_bus import dead_letter_queue, delay_queue

    async def drop() -> None:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
        try:
            channel = await connection.channel()
            names = [BENCH_QUEUE, dead_letter_queue(BENCH_QUEUE),
                     *(delay_queue(BENCH_QUEUE, d) for d in Settings().retry_delays())]
            for name in names:
                await channel.queue_delete(name)
        finally:
            await connection.close()

    asyncio.run(drop())


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def latency(db: str, mode: str, count: int, rate: float,
            databases: Databases) -> dict[str, Any]:
    url = databases.fresh(db)
    seen = databases.tmp / f"seen-{secrets.token_hex(4)}.txt"
    seen.touch()
    env = {**BASE_ENV, "HW_BENCH_SEEN": str(seen)}
    if mode == "rabbitmq":
        env["HEADWATER_AMQP_URL"] = AMQP_URL
    sent: dict[int, tuple[float, float]] = {}
    with ServerProcess(url, env=env, args=("--app", "bench.events_app:app")) as server:
        ctx = worker_process(url, env, databases.tmp / "worker.log") if mode == "rabbitmq" \
            else _nothing()
        with ctx, httpx.Client(base_url=server.url) as client:
            client.post("/bench_items", json={"id": 0, "client": 1, "n": 0}).raise_for_status()
            time.sleep(1.0)
            start = time.monotonic()
            for i in range(1, count + 1):
                t0 = time.time()
                client.post("/bench_items", json={"id": i, "client": 1, "n": i}).raise_for_status()
                sent[i] = (t0, time.time())
                wait = start + i / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            deadline = time.monotonic() + 30
            while len(_seen(seen)) < count + 1:
                if time.monotonic() > deadline:
                    missing = sorted(set(range(count + 1)) - set(_seen(seen)))
                    raise RuntimeError(f"events that never reached the handler: {missing[:20]}")
                time.sleep(0.1)
    at = _seen(seen)
    from_commit = [at[i] - sent[i][1] for i in sent]
    from_request = [at[i] - sent[i][0] for i in sent]
    write = [sent[i][1] - sent[i][0] for i in sent]
    return {"db": db, "mode": mode, "events": count, "rate_per_s": rate,
            "commit_to_handler_ms": {"p50": _pct(from_commit, 0.5), "p99": _pct(from_commit, 0.99)},
            "request_to_handler_ms": {"p50": _pct(from_request, 0.5),
                                      "p99": _pct(from_request, 0.99)},
            "write_ms": {"p50": _pct(write, 0.5), "p99": _pct(write, 0.99)}, "load": load()}


def _seen(path: Path) -> dict[int, float]:
    """Event id → when the handler first saw it (a handler may see an event again if its
    work was done but not recorded, e.g. the worker died in between)."""
    out: dict[int, float] = {}
    for line in path.read_text().splitlines():
        key, when = line.split()
        out.setdefault(int(key), float(when))
    return out


@contextmanager
def _nothing() -> Iterator[None]:
    yield


# --- report ------------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Events benchmark — {result['when']}", "",
             f"{result['machine']}; load average at start {result['load_start']}, "
             f"end {result['load_end']}.", "",
             "## Write throughput (wrk, 1 thread, 32 connections, one new row per request)", "",
             "in-process: events on, dispatched to the server's own handlers (none here); "
             "rabbitmq: published by the server's relay; rabbitmq-relay: published by a "
             "`headwater relay` process (the server runs with `relay_in_server=false`). "
             "Drained: seconds after the run until every event was confirmed by RabbitMQ.", "",
             "| db | events | req/s (median) | runs | p99 ms | non-2xx | vs off | drained s |",
             "|---|---|---:|---|---:|---:|---:|---:|"]
    for r in result["write"]:
        drained = "" if r.get("drain_s") is None else r["drain_s"]
        lines.append(f"| {r['db']} | {r['events']} | {r['rps_median']} | "
                     f"{', '.join(map(str, r['rps_runs']))} | {r['p99_ms_median']} | "
                     f"{r['non_2xx']:.0f} | {r['vs_off']:.2f}× | {drained} |")
    lines += ["", "## Relay throughput (outbox → bus, batches of 500)", "",
              "| db | bus | events | seconds | events/s |", "|---|---|---:|---:|---:|"]
    for r in result["relay"]:
        lines.append(f"| {r['db']} | {r['bus']} | {r['events']} | {r['seconds']} | "
                     f"{r['events_per_s']} |")
    lines += ["", "## Commit → handler latency", "",
              "| db | mode | events | commit→handler p50 / p99 ms | request→handler p50 / p99 ms "
              "| write p50 / p99 ms |", "|---|---|---:|---:|---:|---:|"]
    for r in result["latency"]:
        c, q, w = r["commit_to_handler_ms"], r["request_to_handler_ms"], r["write_ms"]
        lines.append(f"| {r['db']} | {r['mode']} | {r['events']} | {c['p50']} / {c['p99']} | "
                     f"{q['p50']} / {q['p99']} | {w['p50']} / {w['p99']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dbs", default="postgres,sqlite")
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--relay-events", type=int, default=20_000)
    p.add_argument("--latency-events", type=int, default=400)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--no-rabbitmq", action="store_true")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    a = p.parse_args()
    os.chdir(REPO_DIR)  # the servers import bench.events_app from here
    dbs = ["postgresql" if d.strip().startswith("postgres") else d.strip()
           for d in a.dbs.split(",") if d.strip()]
    rabbit = not a.no_rabbitmq and rabbit_reachable()
    databases = Databases()
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_start": load()}
    try:
        if rabbit:
            reset_bench_queues()
        print("1. write throughput", flush=True)
        modes = ["off", "on", *(["rabbitmq", "rabbitmq-relay"] if rabbit else [])]
        result["write"] = write_throughput(dbs, modes, a.duration, a.repeat, databases)
        print("2. relay throughput", flush=True)
        result["relay"] = relay_throughput(dbs, ["memory", *(["rabbitmq"] if rabbit else [])],
                                           a.relay_events, databases)
        print("3. commit → handler latency", flush=True)
        result["latency"] = []
        for db in dbs:
            for mode in ["embedded", *(["rabbitmq"] if rabbit else [])]:
                r = latency(db, mode, a.latency_events, a.rate, databases)
                if mode == "rabbitmq":
                    reset_bench_queues()
                result["latency"].append(r)
                print(f"  latency {db:8} {mode:9}: commit→handler p50 "
                      f"{r['commit_to_handler_ms']['p50']} ms, p99 "
                      f"{r['commit_to_handler_ms']['p99']} ms", flush=True)
    finally:
        databases.close()
    result["load_end"] = load()
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "events.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    (a.out / "events.md").write_text(md)
    print("\n" + md)


if __name__ == "__main__":
    main()
