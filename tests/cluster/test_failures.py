"""Failures on the rig, through HAProxy (issue #19's evidence): a Headwater node killed
(SIGKILL) or stopped (SIGTERM) under load, a write cut off between its commit and its response,
a Redis Cluster primary stopped, and the RabbitMQ node the relays use stopped while writes
commit.

Load comes from ``tests/faults/loadgen.py`` (open loop: a stalled node cannot slow the
schedule); each sample says when the request was scheduled, how long it took and its status
(0: a broken connection or a timeout). Run with ``-s`` to see the counts each test reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import re
import secrets
import signal
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest
import redis
from aio_pika.abc import AbstractIncomingMessage

from tests.cluster.conftest import Rig, wait_for
from tests.faults.conftest import Run, Sample, load

MIX = "cached=3,uncached=2,other_table=2,write=3"
RATE = 200
#: Requests scheduled this long after the kill's end are not in flight at the kill: the
#: generator's clock (another process) and the test's agree to a few milliseconds.
BOUND = 0.1


def failed(s: Sample) -> bool:
    return s.status == 0 or s.status >= 500


def counts(name: str, run: Run, **extra: int) -> str:
    statuses = Counter(s.status for s in run.samples)
    line = (f"{name}: {len(run.samples)} requests, "
            f"{sum(n for st, n in statuses.items() if 200 <= st < 300)} 2xx, "
            f"{sum(1 for s in run.samples if failed(s))} failed, statuses {dict(statuses)}")
    return line + "".join(f", {k.replace('_', ' ')} {v}" for k, v in extra.items())


def committed(rig: Rig, samples: list[Sample]) -> int:
    """How many of these writes' rows exist (the generator's marker is the row's email)."""
    emails = [s.marker + "@load.example" for s in samples if s.kind == "write"]
    found: int = rig.sql(rig.primary_url,
                         "SELECT count(*) FROM customers WHERE email = ANY($1::text[])", emails)
    return found


# --- a node killed or stopped under load -----------------------------------------------------


def test_sigkill_fails_only_the_requests_in_flight_on_the_killed_node(
        whole_rig: Rig, tmp_path: Path) -> None:
    def kill() -> None:
        whole_rig.script("kill", "node", str(whole_rig.node_ports[0]))

    run = load(whole_rig.lb, tmp_path / "kill.jsonl", rate=RATE, duration=8, mix=MIX,
               timeline=[(3.0, "kill", kill)])
    began, ended = run.offset("kill:begin"), run.offset("kill:done")

    def in_flight(s: Sample) -> bool:  # sent before the kill, not answered before it
        return s.at < ended + BOUND and s.at + s.latency >= began

    failures = [s for s in run.samples if not 200 <= s.status < 300]
    print(counts("SIGKILL", run, in_flight_at_the_kill=sum(map(in_flight, run.samples))))
    assert len(run.samples) == RATE * 8
    # A failure is a broken request (0 or 5xx), never a wrong answer (a 4xx: a write sent
    # twice meeting its own row, say), and only ever one the killed node held.
    assert all(failed(s) for s in failures), failures
    assert [s for s in failures if not in_flight(s)] == []
    assert all(200 <= s.status < 300 for s in run.samples if s.at >= ended + BOUND)
    assert whole_rig.haproxy_up() == {f"node{whole_rig.node_ports[1]}"}
    # Every write answered 2xx is in the database.
    ok_writes = [s for s in run.samples if s.kind == "write" and 200 <= s.status < 300]
    assert committed(whole_rig, ok_writes) == len(ok_writes)


def test_sigterm_fails_no_request(whole_rig: Rig, tmp_path: Path) -> None:
    def stop() -> None:
        whole_rig.script("stop", "node", str(whole_rig.node_ports[0]))

    run = load(whole_rig.lb, tmp_path / "term.jsonl", rate=RATE, duration=8, mix=MIX,
               timeline=[(2.0, "stop", stop)])
    print(counts("SIGTERM", run, stop_took_ms=int(1000 * (run.offset("stop:done")
                                                           - run.offset("stop:begin")))))
    assert len(run.samples) == RATE * 8
    assert [s for s in run.samples if not 200 <= s.status < 300] == []
    ok_writes = [s for s in run.samples if s.kind == "write"]
    assert committed(whole_rig, ok_writes) == len(ok_writes)


def versions_node(rig: Rig) -> int:
    """The Redis port holding the cache's table versions (one hash: one slot, one node)."""
    for port in rig.redis_ports:
        with redis.Redis(host="127.0.0.1", port=port) as r:
            if next(r.scan_iter(match="hw:*:versions"), None) is not None:
                return port
    raise AssertionError("no versions hash in the rig's Redis Cluster")


async def committed_row(url: str, email: str, timeout: float) -> None:
    """Return as soon as the row with this email is committed (polled every few ms)."""
    conn = await asyncpg.connect(url, timeout=5)
    try:
        async with asyncio.timeout(timeout):
            while not await conn.fetchval("SELECT count(*) FROM customers WHERE email = $1",
                                          email):
                await asyncio.sleep(0.005)
    finally:
        await conn.close()


def test_a_write_cut_off_after_its_commit_is_not_sent_again(whole_rig: Rig) -> None:
    """The node commits, then dies before it answers: the balancer must not send the write
    to the other node (which would apply it twice, or, with a unique key, answer 409 for a
    write that succeeded); the client is told 502 (the outcome is unknown), one row exists.

    The window between commit and response is held open by pausing writes on the Redis node
    with the versions: the write's version bump waits there (up to the store's deadline,
    twice ``redis_timeout``); the node is killed as soon as the row is seen committed."""
    email = f"cutoff-{secrets.token_hex(6)}@rig.example"
    answer: list[bytes] = []
    body = json.dumps({"name": "cut off", "email": email, "created_at": "2024-01-01T00:00:00"})
    # In one segment, head and body, as small requests mostly arrive: HAProxy can send such a
    # request again (it holds all of it), one whose body came later it cannot.
    request = (f"POST /customers HTTP/1.1\r\nHost: rig\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}").encode()

    def write() -> None:
        with socket.create_connection(("127.0.0.1", 8080 + whole_rig.offset), 20) as s:
            s.sendall(request)
            answer.append(b"".join(iter(lambda: s.recv(65536), b"")))

    with redis.Redis(host="127.0.0.1", port=versions_node(whole_rig)) as versions:
        versions.client_pause(5000, all=False)  # writes only: the node's pings go on
        try:
            sender = threading.Thread(target=write)
            sender.start()
            asyncio.run(committed_row(whole_rig.primary_url, email, 5))
            serving = re.findall(r" be=headwater srv=node(\d+) ",
                                 whole_rig.haproxy("show sess"))
            assert len(serving) == 1, serving  # the write, still waiting for its answer
            # As ``cluster.sh kill node`` does (its supervisor's group), without a shell.
            os.killpg(whole_rig.node_pid(int(serving[0])), signal.SIGKILL)
            sender.join(20)
        finally:
            versions.client_unpause()
    assert answer[0].startswith(b"HTTP/1.1 502 "), answer[0]
    assert whole_rig.sql(whole_rig.primary_url,
                         "SELECT count(*) FROM customers WHERE email = $1", email) == 1


# --- a Redis Cluster primary stopped ---------------------------------------------------------


class Coherence:
    """Rows written through one node and read on both, directly, by a connection to each
    worker process of each node (their L1 tiers differ); each read presents the latest write's
    consistency token, so a replica cannot be the reason for an old value: only a cache."""

    def __init__(self, rig: Rig, rows: int = 6) -> None:
        self.rig = rig
        self.writer = {n: httpx.Client(base_url=n, timeout=10) for n in rig.nodes}
        self.readers = {n: self._per_worker(n) for n in rig.nodes}
        self.token = ""
        self.value: dict[int, str] = {}
        self.stale: list[tuple[str, str, int, Any, str]] = []
        self.statuses: Counter[int] = Counter()
        for _ in range(rows):
            r = self.writer[rig.nodes[0]].post(
                "/customers", headers={"Prefer": "return=representation"},
                json={"name": "v0", "email": f"coherent-{secrets.token_hex(6)}@rig.example",
                      "created_at": "2024-01-01T00:00:00"})
            assert r.status_code == 201, r.text
            self.value[r.json()[0]["id"]] = "v0"
            self.token = r.headers["headwater-lsn"]

    @staticmethod
    def _per_worker(node: str) -> list[httpx.Client]:
        """One keep-alive connection to each worker process that answers (a response's
        request id starts with its worker's prefix)."""
        found: dict[str, httpx.Client] = {}
        for _ in range(32):
            c = httpx.Client(base_url=node, timeout=10)
            worker = c.get("/-/live").headers["x-request-id"][:16]
            if worker in found:
                c.close()
            else:
                found[worker] = c
        return list(found.values())

    def write(self, row: int, via: str, when: str) -> None:
        value = f"{when}-{secrets.token_hex(3)}"
        r = self.writer[via].patch(f"/customers?id=eq.{row}", json={"name": value})
        self.statuses[r.status_code] += 1
        assert r.status_code == 204, (when, r.status_code, r.text)
        self.value[row] = value
        self.token = r.headers["headwater-lsn"]

    def read(self, row: int, node: str, when: str) -> None:
        for c in self.readers[node]:
            r = c.get(f"/customers?id=eq.{row}&select=id,name",
                      headers={"Headwater-LSN": self.token})
            self.statuses[r.status_code] += 1
            assert r.status_code == 200, (when, r.status_code, r.text)
            got = r.json()
            if got != [{"id": row, "name": self.value[row]}]:
                self.stale.append((when, node, row, got, r.headers.get("x-cache", "")))

    def round(self, row: int, via: str, when: str) -> None:
        for n in self.rig.nodes:  # copies of the current value everywhere, then the write
            self.read(row, n, when)
        self.write(row, via, when)
        for n in self.rig.nodes:
            self.read(row, n, when)

    def close(self) -> None:
        for c in [*self.writer.values(), *(c for cs in self.readers.values() for c in cs)]:
            c.close()


def cluster_state(port: int) -> str:
    """``ok`` or ``fail`` as this Redis node sees its cluster; ``down`` when it does not answer."""
    try:
        with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1) as r:
            info = r.cluster("info")
    except redis.RedisError:
        return "down"
    return str(info["cluster_state"])  # redis-py parses CLUSTER INFO into a dict


def test_a_redis_primary_stopped_keeps_the_cache_coherent(whole_rig: Rig, tmp_path: Path,
                                                          ) -> None:
    """One primary of three, no replicas: its slots fail at once, and after
    cluster-node-timeout (2 s) the whole cluster refuses commands. Meanwhile the nodes fall
    back as when Redis is down (reads bypass the cache; a write whose version bump fails owes
    an epoch move, as does a worker that saw a read fail) and catch up when it is back.
    Reads-only load through HAProxy (writes would make every worker owe a move): no 5xx.

    Every write (through node A) is followed by reads on both nodes: while only the slots
    fail, A's bump must reach the node with the versions that B's reads still reach. The
    sharpest check comes after: rows written while the cluster was down and not read since,
    whose copies every worker held (L1, and L2 in Redis) at versions no bump has moved, read
    first on node B, whose workers wrote nothing."""
    with contextlib.closing(Coherence(whole_rig)) as coherence:
        run, rounds = outage(whole_rig, coherence, tmp_path / "redis.jsonl")
    print(counts("Redis primary stopped", run, coherence_rounds=rounds,
                 coherence_requests=sum(coherence.statuses.values()),
                 workers_read=sum(map(len, coherence.readers.values()))))
    assert [s for s in run.samples if failed(s)] == []
    assert coherence.stale == [], coherence.stale


def outage(rig: Rig, coherence: Coherence, out: Path) -> tuple[Run, int]:
    """Primary ``redis_ports[1]`` stopped under load, coherence rounds meanwhile, then back:
    the load's run and how many rounds were made while it was down."""
    a, b = rig.nodes
    rows = list(coherence.value)
    moving, held = rows[:3], rows[3:]
    for row in rows:
        for node in (a, b, a, b):
            coherence.read(row, node, "before")
    down = threading.Event()

    def stop() -> None:
        rig.script("stop", "redis", str(rig.redis_ports[1]))
        down.set()

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(load, rig.lb, out, rate=150, duration=9,
                              mix="cached=5,uncached=2,other_table=3",
                              timeline=[(1.0, "stop", stop)])
        assert down.wait(30)
        began = time.monotonic()
        n = 0
        while cluster_state(rig.redis_ports[0]) == "ok":  # only the stopped node's slots fail
            coherence.round(moving[n % len(moving)], a, "slots down")
            n += 1
            assert time.monotonic() - began < 15, "the cluster never left state ok"
        for row in held:
            coherence.write(row, a, "cluster down")
        while not running.done():
            coherence.round(moving[n % len(moving)], a, "cluster down")
            n += 1
        run = running.result()
    rig.script("up")  # the stopped primary rejoins with its slots
    wait_for(lambda: all(cluster_state(p) == "ok" for p in rig.redis_ports), 30, "cluster ok")
    for node in (b, a):
        for row in held:
            coherence.read(row, node, "back, held")
    for row in moving:
        for node in (b, a):
            coherence.read(row, node, "back")
    for i, row in enumerate(rows):
        coherence.round(row, (a, b)[i % 2], "back")
    return run, n


# --- a RabbitMQ node stopped ------------------------------------------------------------------


async def deliveries(url: str, queue: str, emails: set[str], timeout: float,
                     ) -> list[tuple[str, str]]:
    """``(message id, email)`` of every delivery of these rows' insert events, read until each
    was seen and one quiet second more (for duplicates), or ``timeout``."""
    got: list[tuple[str, str]] = []
    complete = asyncio.Event()
    connection = await aio_pika.connect(url, timeout=10)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=500)
        q = await channel.get_queue(queue, ensure=True)  # passive: declared by the test

        async def on_message(message: AbstractIncomingMessage) -> None:
            event = json.loads(message.body)
            email = (event.get("new") or {}).get("email")
            if email in emails:
                got.append((message.message_id or "", email))
                if {e for _, e in got} == emails:
                    complete.set()
            await message.ack()

        tag = await q.consume(on_message)
        try:
            await asyncio.wait_for(complete.wait(), timeout)
            await asyncio.sleep(1.0)
        except TimeoutError:
            pass
        await q.cancel(tag)
    finally:
        await connection.close()
    return got


async def declare_quorum_queue(url: str, name: str) -> None:
    """A quorum queue for the rows' insert events, its leader on the node of ``url``."""
    connection = await aio_pika.connect(url, timeout=10)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange("headwater", aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        queue = await channel.declare_queue(name, durable=True, arguments={
            "x-queue-type": "quorum", "x-queue-leader-locator": "client-local"})
        await queue.bind(exchange, "customers.insert")
    finally:
        await connection.close()


async def delete_queue(url: str, name: str) -> None:
    connection = await aio_pika.connect(url, timeout=10)
    try:
        channel = await connection.channel()
        await channel.queue_delete(name)
    finally:
        await connection.close()


def node_environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_the_relays_rabbitmq_node_stopped_loses_no_committed_event(
        whole_rig: Rig, tmp_path: Path) -> None:
    """Writes through HAProxy while the RabbitMQ node both relays publish to is stopped
    (``cluster.sh stop rabbit PORT``): each relay moves to another node of the cluster (every
    node's URL is in its ``amqp_url``), and every committed row's event reaches a consumer that
    records processed message ids exactly once, while the stopped node is still down. The
    events go to a quorum queue whose leader was on the stopped node: the messages it held
    then (published before the stop, not yet consumed) survive on the other two members."""
    rig = whole_rig
    if not rig.own_rabbit:
        pytest.skip("HW_CLUSTER_AMQP_URL: the rig runs no RabbitMQ cluster of its own")
    for port in rig.node_ports:
        env = node_environment(rig.node_pid(port))
        assert env["HEADWATER_AMQP_QUEUE_TYPE"] == "quorum"
        assert env["HEADWATER_AMQP_URL"].split(",") == [rig.amqp(p) for p in rig.rabbit_ports]
    used = rig.relay_brokers()
    assert set(used) == set(rig.node_ports), used
    target = used[rig.node_ports[0]]
    survivor = next(p for p in rig.rabbit_ports if p != target)
    name = "hwtest-rigevents-" + secrets.token_hex(4)
    asyncio.run(declare_quorum_queue(rig.amqp(target), name))
    stopped_at: list[float] = []
    began = datetime.datetime.now(datetime.UTC).isoformat()

    def stop() -> None:
        stopped_at.append(rig.sql(rig.primary_url, "SELECT extract(epoch FROM now())"))
        rig.script("stop", "rabbit", str(target))

    try:
        before = {q["name"]: q for q in rig.rabbitmqctl(target, "list_queues", "name", "type",
                                                        "leader", "members")}[name]
        run = load(rig.lb, tmp_path / "rabbit.jsonl", rate=100, duration=8, mix="write=1",
                   timeline=[(3.0, "stop", stop)])
        # Every row committed, answered or not (a 0 is an outcome unknown to the client).
        markers = [s.marker + "@load.example" for s in run.samples]
        emails = set(rig.sql(rig.primary_url, "SELECT coalesce(array_agg(email), '{}') FROM "
                             "customers WHERE email = ANY($1::text[])", markers))
        got = asyncio.run(deliveries(rig.amqp(survivor), name, emails, 60))
        still_down = not (rig.state / "rabbit" / rig.rabbit_node(target) / "pid").exists()
        moved = rig.relay_brokers()
        after = {q["name"]: q for q in rig.rabbitmqctl(survivor, "list_queues", "name", "type",
                                                       "leader", "members")}[name]
        waits = rig.sql(rig.primary_url, "SELECT json_build_object("
                        "'held', count(*) FILTER (WHERE sent_at < to_timestamp($2)), "
                        "'after', count(*) FILTER (WHERE at >= to_timestamp($2)), "
                        "'max_wait', max(extract(epoch FROM sent_at - at)), "
                        "'unsent', count(*) FILTER (WHERE sent_at IS NULL)) "
                        "FROM _headwater_outbox WHERE new->>'email' = ANY($1::text[])",
                        list(emails), stopped_at[0])
        waits = json.loads(waits)
    finally:
        # What each relay did, shown if an assertion below fails (pytest prints the output).
        for port in rig.node_ports:
            print("\n".join(rig.node_log(port, began[:26], ("broker", "relay", "aiormq"))))
        rig.script("up")  # the stopped node starts again and rejoins the cluster
        asyncio.run(delete_queue(rig.amqp(survivor), name))
    processed: dict[str, str] = {}  # a consumer's record of the message ids it handled
    duplicates = 0
    for message_id, email in got:
        if message_id in processed:
            duplicates += 1
        else:
            processed[message_id] = email
    print(counts("RabbitMQ node stopped", run, committed=len(emails), deliveries=len(got),
                 duplicates=duplicates, processed=len(processed),
                 held_by_the_stopped_leader=waits["held"], written_after_the_stop=waits["after"],
                 longest_outbox_wait_ms=int(1000 * (waits["max_wait"] or 0))))
    assert before["type"] == "quorum" and before["leader"] == rig.rabbit_node(target), before
    assert len(before["members"]) == 3, before
    assert after["type"] == "quorum" and after["leader"] != rig.rabbit_node(target), after
    assert len(run.samples) == 800
    assert waits["held"] > 0 and waits["after"] > 0 and waits["unsent"] == 0, waits
    # Every committed row's event arrived, while the node was down, and the consumer handled
    # each row once (a duplicate delivery carries the same message id: at-least-once).
    assert still_down
    assert sorted(processed.values()) == sorted(emails)
    assert target not in moved.values() and set(moved) == set(rig.node_ports), moved
