"""Two failures in a row: the last good copy survives a Redis outage as the fallback when the
database then fails, and open breakers notice a recovery within about a second.

Each scenario restores what it stops in a ``finally``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import httpx

from headwater.testing import ServerProcess
from tests.faults.conftest import (
    Row,
    Run,
    load,
    pg_start,
    pg_stop,
    redis_start,
    redis_stop,
    summarize,
)
from tests.integration import oracle
from tests.integration.events_rabbit import ProbeQueue, start_broker, stop_broker

READ = "/products?select=id,name,price&id=eq.3"


def breaker(c: httpx.Client, name: str) -> str:
    state: str = c.get("/-/ready").json()["checks"]["breakers"][name]
    return state


def wait_for(predicate: object, seconds: float, step: float = 0.02) -> float | None:
    """Seconds until ``predicate()`` holds (None if it never did within ``seconds``)."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - began
        time.sleep(step)
    return None


def test_stale_copy_survives_a_redis_restart_then_the_database_fails(
        server: ServerProcess) -> None:
    """The issue's sequence: Redis stopped and started again (empty), the read asked twice,
    then PostgreSQL stopped: the read is answered from its last good copy, marked stale."""
    with httpx.Client(base_url=server.url, timeout=10) as c:
        first = c.get(READ)
        assert first.status_code == 200
        assert c.get(READ).headers["x-cache"] == "HIT"
        try:
            redis_stop()
            for _ in range(8):  # enough failures to open the Redis breaker
                assert c.get(READ).status_code == 200
            assert breaker(c, "redis") != "closed"
            redis_start()
            for _ in range(2):
                assert c.get(READ).status_code == 200
            pg_stop()
            r = c.get(READ)
            # Whichever copy is newest: one taken after Redis came back (still exact, a HIT)
            # or the one from before the outage (STALE); never a 503.
            assert r.status_code == 200, r.text
            assert r.headers["x-cache"] in ("HIT", "STALE")
            assert r.json() == first.json()
        finally:
            pg_start()
            redis_start()


def test_stale_copy_while_redis_stays_down(server: ServerProcess) -> None:
    """Redis down, then the database too: copies taken before and during the Redis outage
    are served stale; a read never cached answers 503 at once."""
    with httpx.Client(base_url=server.url, timeout=10) as c:
        before = c.get(READ).json()
        try:
            redis_stop()
            during = "/products?select=id,name&id=eq.4"
            assert c.get(during).status_code == 200  # cached while Redis is down
            pg_stop()
            r = c.get(READ)
            assert (r.status_code, r.headers.get("x-cache")) == (200, "STALE")
            assert r.json() == before
            assert c.get(during).headers.get("x-cache") == "STALE"
            never = c.get("/products?select=id,sku&id=eq.5")
            assert never.status_code == 503
        finally:
            pg_start()
            redis_start()


def test_breakers_notice_recovery_within_a_second(server: ServerProcess,
                                                   fault_table: list[Row]) -> None:
    """From the dependency answering again to its breaker closing (and requests using it)."""
    with httpx.Client(base_url=server.url, timeout=10) as c:
        try:
            redis_stop()
            for _ in range(8):
                c.get(READ)
            assert breaker(c, "redis") == "open"
            redis_start()
            redis_back = wait_for(lambda: breaker(c, "redis") == "closed", 10)
            pg_stop()
            for _ in range(8):
                c.post("/customers", json={"name": "x", "email": "x@x.example",
                                           "created_at": "2024-01-01T00:00:00"})
            assert breaker(c, "database") == "open"
            pg_start()  # returns once the server accepts connections
            began = time.monotonic()
            db_back = wait_for(lambda: breaker(c, "database") == "closed", 10)
            first_write = wait_for(lambda: c.patch(
                "/customers?id=eq.1", json={"country": "SE"}).status_code == 204, 10)
        finally:
            pg_start()
            redis_start()
    fault_table.append(Row("5. Recovery: Redis, then PostgreSQL", 0, 0, 0, 0, 0, 0.0, 0.0,
                           round(max(redis_back or 99, db_back or 99), 2),
                           f"breaker closed {redis_back:.2f} s after Redis answered, "
                           f"{db_back:.2f} s after PostgreSQL did; first write "
                           f"{time.monotonic() - began:.2f} s" if redis_back and db_back
                           and first_write is not None else "did not recover"))
    assert redis_back is not None and redis_back <= 1.0
    assert db_back is not None and db_back <= 1.0


def _double(server: ServerProcess, tmp_path: Path, fault_db: str, name: str,
            timeline: list[tuple[float, str, object]], fault_table: list[Row],
            both_down: tuple[str, str]) -> None:
    try:
        run = load(server.url, tmp_path / "double.jsonl", rate=120, duration=22,
                   mix="cached=6,uncached=2,write=2",
                   timeline=timeline)  # type: ignore[arg-type]
    finally:
        pg_start()
        redis_start()
    a, b = run.offset(both_down[0]) + 0.5, run.offset(both_down[1])
    during = run.between(a, b)
    cached = [s for s in during if s.kind == "cached"]
    stale = sum(s.x_cache == "STALE" for s in cached)
    acked = [s.marker for s in run.samples if s.kind == "write" and s.status == 201]
    stored = {r[0] for r in oracle.rows(fault_db, "SELECT email FROM customers WHERE "
                                        "email LIKE '%@load.example'")}
    lost = [m for m in acked if f"{m}@load.example" not in stored]
    odd = [(s.status, s.kind) for s in run.samples if s.status not in (200, 201, 503)]
    last = run.between(run.offset("pg-start:done") + 1.0, 1e9)
    fault_table.append(summarize(
        name, run.samples, _recovered(run),
        f"both down: cached {len(cached)} all 200 ({stale} STALE); acked writes "
        f"{len(acked)}, lost {len(lost)}" + (f"; other statuses {odd[:3]}" if odd else "")))
    assert cached
    assert all(s.status == 200 for s in cached), [s for s in cached if s.status != 200][:5]
    assert lost == []
    assert odd == []
    assert all(200 <= s.status < 300 for s in last[len(last) // 2:])


def _recovered(run: Run) -> float | None:
    t0 = run.offset("pg-start:done")
    after = sorted(run.between(t0, 1e9, "uncached", "write"), key=lambda s: s.at)
    bad = [s.at for s in after if s.status not in (200, 201)]
    if not bad:
        return 0.0
    return None if bad[-1] >= after[-1].at else bad[-1] - t0


def test_redis_down_then_postgres_down(server: ServerProcess, tmp_path: Path, fault_db: str,
                                       fault_table: list[Row]) -> None:
    _double(server, tmp_path, fault_db, "6. Redis down, then PostgreSQL down too",
            [(4, "redis-stop", redis_stop), (8, "pg-stop", pg_stop),
             (14, "pg-start", pg_start), (16, "redis-start", redis_start)],
            fault_table, ("pg-stop:done", "pg-start:begin"))


def test_redis_restarted_empty_then_postgres_down(server: ServerProcess, tmp_path: Path,
                                                  fault_db: str,
                                                  fault_table: list[Row]) -> None:
    _double(server, tmp_path, fault_db, "7. Redis restarted empty, PostgreSQL down 2 s later",
            [(4, "redis-stop", redis_stop), (7, "redis-start", redis_start),
             (9, "pg-stop", pg_stop), (15, "pg-start", pg_start)],
            fault_table, ("pg-stop:done", "pg-start:begin"))


def test_postgres_down_then_redis_down(server: ServerProcess, tmp_path: Path, fault_db: str,
                                       fault_table: list[Row]) -> None:
    _double(server, tmp_path, fault_db, "8. PostgreSQL down, then Redis down too",
            [(4, "pg-stop", pg_stop), (7, "redis-stop", redis_stop),
             (13, "pg-start", pg_start), (15, "redis-start", redis_start)],
            fault_table, ("redis-stop:done", "pg-start:begin"))


def test_rabbitmq_down_while_postgres_restarts(fault_db: str, redis_url: str, amqp_url: str,
                                               tmp_path: Path, fault_table: list[Row]) -> None:
    """Events wait in the outbox through both outages: every acknowledged write is stored and
    its event published once RabbitMQ is back, none lost."""
    queue = ProbeQueue(amqp_url, "hwfault-" + secrets.token_hex(4), ["customers.insert"])
    asyncio.run(queue.declare())
    env = {"HEADWATER_REDIS_URL": redis_url, "HEADWATER_CACHE_NAMESPACE":
           "f" + secrets.token_hex(4), "HEADWATER_STATEMENT_TIMEOUT": "1",
           "HEADWATER_CONNECT_TIMEOUT": "1", "HEADWATER_POOL_TIMEOUT": "2",
           "HEADWATER_AMQP_URL": amqp_url, "HEADWATER_AMQP_RECONNECT_MAX_DELAY": "1.0"}
    try:
        with ServerProcess(fault_db, env=env) as server:
            try:
                run = load(server.url, tmp_path / "rabbit.jsonl", rate=100, duration=20,
                           mix="cached=5,uncached=2,write=3",
                           timeline=[(3, "mq-stop", stop_broker), (6, "pg-stop", pg_stop),
                                     (11, "pg-start", pg_start),
                                     (14, "mq-start", start_broker)])
            finally:
                pg_start()
                start_broker()
            acked = [s.marker for s in run.samples if s.kind == "write" and s.status == 201]
            got = asyncio.run(queue.drain(len(acked), idle=15))
    finally:
        asyncio.run(queue.delete())
    published = {str(r.event["new"]["email"]) for r in got
                 if str(r.event.get("new", {}).get("email", "")).endswith("@load.example")}
    stored = {r[0] for r in oracle.rows(fault_db, "SELECT email FROM customers WHERE "
                                        "email LIKE '%@load.example'")}
    lost_rows = [m for m in acked if f"{m}@load.example" not in stored]
    lost_events = [m for m in acked if f"{m}@load.example" not in published]
    during = run.between(run.offset("pg-stop:done") + 0.5, run.offset("pg-start:begin"))
    cached = [s for s in during if s.kind == "cached"]
    odd = [(s.status, s.kind) for s in run.samples if s.status not in (200, 201, 503)]
    fault_table.append(summarize(
        "9. RabbitMQ down while PostgreSQL restarts", run.samples, _recovered(run),
        f"cached {len(cached)} all 200 while PostgreSQL was down; acked writes {len(acked)}, "
        f"rows lost {len(lost_rows)}, events lost {len(lost_events)}"
        + (f"; other statuses {odd[:3]}" if odd else "")))
    assert cached and all(s.status == 200 for s in cached)
    assert acked
    assert lost_rows == []
    assert lost_events == []
    assert odd == []
