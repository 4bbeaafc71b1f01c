"""Invariant 3 under fire: 10,000 write requests from 16 concurrent clients while RabbitMQ is
stopped for part of the run. Writes are unaffected, the outbox grows, and after the broker
returns a consumer receives every committed event and none from a rolled-back request, in
each client's order."""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from headwater.testing import ServerProcess
from tests.integration import oracle
from tests.integration.events_rabbit import ProbeQueue, start_broker, stop_broker

REQUESTS = 10_000
CLIENTS = 16
STOP_AFTER = 2_000  # requests done when the broker is stopped ...
DOWN_FOR = 4.0  # ... for this many seconds of writing
DDL = "CREATE TABLE ev_items (id bigint PRIMARY KEY, client integer NOT NULL, n integer NOT NULL)"


def pending(text: str) -> float:
    m = re.search(r"^headwater_outbox_pending (\S+)$", text, re.M)
    assert m
    return float(m[1])


async def test_no_event_lost_none_invented_while_the_broker_is_down(
        amqp_url: str, pg_admin: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from tests.conftest import _pg_execute, pg_url_for

    name = "hw_outage_" + secrets.token_hex(4)
    await _pg_execute(pg_admin, f'CREATE DATABASE "{name}"')
    db_url = pg_url_for(name)
    await _pg_execute(db_url, DDL)
    queue = ProbeQueue(amqp_url, "hwtest-outage-" + secrets.token_hex(4), ["ev_items.*"])
    await queue.declare()
    server = ServerProcess(db_url, env={"HEADWATER_AMQP_URL": amqp_url,
                                        "HEADWATER_AMQP_RECONNECT_MAX_DELAY": "1.0",
                                        "HEADWATER_POOL_MAX_SIZE": "20"})
    await asyncio.to_thread(server.start)
    counter = itertools.count()
    done = 0
    committed: set[int] = set()  # ids whose insert committed
    rolled_back: set[int] = set()
    updates = 0
    failures: list[str] = []
    outage: dict[str, float] = {}
    stopped = asyncio.Event()

    async def client(c: int, http: httpx.AsyncClient) -> None:
        nonlocal done, updates
        n = 0
        last: int | None = None
        while (i := next(counter)) < REQUESTS:
            n += 1
            if i % 10 == 9:  # rolled back: must never produce an event
                rid = 10_000_000 + i
                r = await http.post("/ev_items", json={"id": rid, "client": c, "n": n},
                                    headers={"Prefer": "tx=rollback"})
                ok = r.status_code == 201
                rolled_back.add(rid)
            elif i % 5 == 4 and last is not None:
                r = await http.patch(f"/ev_items?id=eq.{last}", json={"n": n})
                ok = r.status_code == 204
                updates += ok
            else:
                r = await http.post("/ev_items", json={"id": i, "client": c, "n": n})
                ok = r.status_code == 201
                if ok:
                    committed.add(i)
                    last = i
            if not ok:
                failures.append(f"{r.status_code} {r.text[:200]}")
            done += 1
            if done == STOP_AFTER:
                stopped.set()

    async def break_the_broker(http: httpx.AsyncClient) -> None:
        await stopped.wait()
        t0 = time.monotonic()
        await asyncio.to_thread(stop_broker)
        try:
            await asyncio.sleep(1.0)
            ready = (await http.get("/-/ready")).json()
            outage["ready_status"] = 1.0 if ready["status"] == "degraded" else 0.0
            outage["broker_degraded"] = 1.0 if ready["checks"]["broker"]["status"] == "degraded" \
                else 0.0
            while time.monotonic() - t0 < DOWN_FOR:
                await asyncio.sleep(0.5)
                outage["max_pending"] = max(outage.get("max_pending", 0.0),
                                            pending((await http.get("/-/metrics")).text))
        finally:
            await asyncio.to_thread(start_broker)
        outage["down_s"] = time.monotonic() - t0
        outage["done_when_back"] = done

    t0 = time.monotonic()
    try:
        # Idle connections are dropped well before the server's 5 s keep-alive timeout: at
        # httpx's default (also 5 s) a request can go out on a connection the server is
        # closing at that moment, and fail with no response.
        limits = httpx.Limits(max_connections=CLIENTS + 2, keepalive_expiry=1.0)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as http:
            await asyncio.gather(break_the_broker(http),
                                 *(client(c, http) for c in range(CLIENTS)))
            written_s = time.monotonic() - t0
            print(f"\nwrites done in {written_s:.1f}s", flush=True)
            # the outbox drains by itself once the broker is back
            deadline = time.monotonic() + 60
            while pending((await http.get("/-/metrics")).text) > 0 or (await asyncio.to_thread(
                    oracle.rows, db_url,
                    "SELECT count(*) FROM _headwater_outbox WHERE sent_at IS NULL"))[0][0]:
                assert time.monotonic() < deadline, "the outbox did not drain"
                await asyncio.sleep(0.25)
        expected = await asyncio.to_thread(oracle.rows, db_url,
                                           "SELECT CAST(id AS TEXT) FROM _headwater_outbox")
        got = await queue.drain(len(expected), idle=5)
    finally:
        await asyncio.to_thread(start_broker)
        await asyncio.to_thread(server.stop)
        await queue.delete()
        await _pg_execute(pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"\n{REQUESTS} writes in {written_s:.1f}s; outage {outage}; "
          f"{len(got)} messages for {len(expected)} events")

    assert failures == []  # writes were unaffected by the outage
    assert outage["broker_degraded"] == 1.0 and outage["ready_status"] == 1.0
    assert outage["max_pending"] > 0  # the outbox grew while the broker was down
    assert outage["done_when_back"] > STOP_AFTER + 100  # writes went on meanwhile
    # every committed event, and only those: one per committed insert and update
    assert len(expected) == len(committed) + updates
    first: dict[str, dict[str, object]] = {}
    for m in got:
        assert m.message_id == m.event["id"] and m.persistent
        first.setdefault(m.message_id, m.event)
    assert set(first) == {r[0] for r in expected}
    assert {e["pk"]["id"] for e in first.values()} == committed  # type: ignore[index]
    assert not rolled_back & {e["pk"]["id"] for e in first.values()}  # type: ignore[index]
    # order: each client's writes are sequential, so its events come in its order
    per_client: dict[int, list[int]] = defaultdict(list)
    seq_per_client: dict[int, list[int]] = defaultdict(list)
    for e in first.values():
        new = e["new"]
        assert isinstance(new, dict)
        per_client[new["client"]].append(new["n"])
        seq = e["seq"]
        assert isinstance(seq, int)
        seq_per_client[new["client"]].append(seq)
    for c in per_client:
        assert per_client[c] == sorted(per_client[c]), f"client {c} out of order"
        assert seq_per_client[c] == sorted(seq_per_client[c])
