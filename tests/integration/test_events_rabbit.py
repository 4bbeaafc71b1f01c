"""Events on real RabbitMQ: the relay publishes committed writes, and ``headwater worker`` runs
the app's handlers with retries, dead letters, replay, exactly-once effects and webhooks."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest

from headwater.events.webhook import SIGNATURE, verify
from headwater.testing import ServerProcess, free_port, queue_consumers
from tests.integration.events_rabbit import ProbeQueue, delete_queues
from tests.integration.test_events_outbox import customer, eventually, make_database, new_id

SECRET = "s3cret"


# --- the relay ---------------------------------------------------------------------------------


@pytest.mark.parametrize("relay", ["server", "process"])
@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
async def test_relay_publishes_committed_writes(dialect: str, relay: str, amqp_url: str,
                                                tmp_path: Path,
                                                request: pytest.FixtureRequest) -> None:
    """The server's relay, or (``relay_in_server=false``) a ``headwater relay`` process."""
    db_url = await asyncio.to_thread(make_database, dialect, tmp_path, request)
    queue = ProbeQueue(amqp_url, "hwtest-relay-" + secrets.token_hex(4), ["customers.*"])
    await queue.declare()
    env = {"HEADWATER_AMQP_URL": amqp_url, "HEADWATER_RELAY_IN_SERVER": str(relay == "server")}
    server = ServerProcess(db_url, env=env)
    await asyncio.to_thread(server.start)
    publisher = None if relay == "server" else await asyncio.create_subprocess_exec(
        sys.executable, "-m", "headwater", "relay", db_url, "--amqp-url", amqp_url,
        "--poll-interval", "0.05")
    try:
        async with httpx.AsyncClient(base_url=server.url) as c:
            ids = [new_id() for _ in range(20)]
            for i in ids:
                assert (await c.post("/customers", json=customer(i))).status_code == 201
            gone = new_id()
            r = await c.post("/customers", json=customer(gone), headers={"Prefer": "tx=rollback"})
            assert r.status_code == 201
            assert (await c.delete(f"/customers?id=eq.{ids[0]}")).status_code == 204
            ready = (await c.get("/-/ready")).json()
            if publisher is None:
                assert ready["checks"]["broker"] == {"status": "ok"}
            else:  # this server never talks to the broker
                assert "broker" not in ready["checks"]
        got = await queue.drain(21, idle=3)
    finally:
        await asyncio.to_thread(server.stop)
        if publisher is not None:
            publisher.terminate()
            assert await asyncio.wait_for(publisher.wait(), 30) == 0  # stops cleanly
        await queue.delete()
    assert [(m.routing_key, m.event["pk"]["id"]) for m in got] == [
        *(("customers.insert", i) for i in ids), ("customers.delete", ids[0])]
    assert all(m.persistent and m.message_id == m.event["id"] for m in got)
    seqs = [m.event["seq"] for m in got]
    assert seqs == sorted(seqs)
    assert got[0].event["new"]["name"] == f"Ev {ids[0]}"
    assert got[-1].event["old"]["id"] == ids[0] and got[-1].event["new"] is None


# --- the worker --------------------------------------------------------------------------------


class Hooks:
    """A webhook receiver: answers 500 to an event's first POST, 200 after."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes, int]] = []
        self.lock = threading.Lock()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with hooks.lock:
                    seen = any(h["x-headwater-event-id"] == headers["x-headwater-event-id"]
                               for h, _, _ in hooks.calls)
                    status = 200 if seen else 500
                    hooks.calls.append((headers, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class Stack:
    url: str
    database_url: str
    amqp_url: str
    log: Path
    fix: Path
    suffix: str
    env: dict[str, str]
    hooks: Hooks


@pytest.fixture(scope="module")
def stack(amqp_url: str, tmp_path_factory: pytest.TempPathFactory,
          request: pytest.FixtureRequest) -> Iterator[Stack]:
    """PostgreSQL, a server publishing to RabbitMQ, and a worker running events_app."""
    tmp = Path(tmp_path_factory.mktemp("rabbit"))
    db_url = make_database("postgresql", tmp, request)
    suffix = "r" + secrets.token_hex(3)
    log, fix = tmp / "handled.jsonl", tmp / "fixed"
    log.touch()
    hooks = Hooks()
    env = {"HEADWATER_AMQP_URL": amqp_url, "HEADWATER_WORKER_RETRY_DELAY": "0.2",
           "HEADWATER_WORKER_MAX_ATTEMPTS": "3", "HW_TEST_EVENTS_LOG": str(log),
           "HW_TEST_FIX_FILE": str(fix), "HW_TEST_QUEUE_SUFFIX": suffix,
           "HEADWATER_WEBHOOKS": json.dumps([{"name": f"hook-{suffix}",
                                              "pattern": "customers.insert", "url": hooks.url,
                                              "secret": SECRET}])}
    handlers = [f"record-{suffix}", f"flaky-{suffix}", f"broken-{suffix}", f"webhook.hook-{suffix}"]
    queues = [f"headwater.{h}" for h in handlers]
    worker_out = (tmp / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "headwater", "worker", "--app", "tests.integration.events_app:app",
         db_url], env={**os.environ, "HEADWATER_LOG_LEVEL": "warning", **env},
        stdout=worker_out, stderr=subprocess.STDOUT)
    try:
        with ServerProcess(db_url, env=env) as server:
            eventually(lambda: all(asyncio.run(queue_consumers(amqp_url, q)) for q in queues), 30)
            yield Stack(server.url, db_url, amqp_url, log, fix, suffix, env, hooks)
    finally:
        worker.terminate()
        worker.wait(10)
        worker_out.close()
        hooks.close()
        extra = [f"{q}.dlq" for q in queues] + [f"{q}.delay.{ms}" for q in queues
                                                 for ms in (200, 400)]
        asyncio.run(delete_queues(amqp_url, queues + extra))


def handled(stack: Stack, kind: str) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in stack.log.read_text().splitlines() if x]
    return [x for x in lines if x["kind"] == kind]


def dlq(stack: Stack, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "headwater", "events", "dlq", *args, "--app",
         "tests.integration.events_app:app", stack.database_url],
        env={**os.environ, **stack.env}, capture_output=True, text=True, timeout=60,
        check=True).stdout


def test_a_handler_that_fails_twice_runs_to_success_once(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url) as c:
        assert c.patch("/products?id=eq.4", json={"name": "Flaky"}).status_code == 204
    eventually(lambda: any(h["new"]["name"] == "Flaky" for h in handled(stack, "flaky-ok")))
    [ok] = [h for h in handled(stack, "flaky-ok") if h["new"]["name"] == "Flaky"]
    time.sleep(0.5)
    fails = [h["attempt"] for h in handled(stack, "flaky-fail") if h["id"] == ok["id"]]
    assert (fails, ok["attempt"]) == ([1, 2], 3)
    assert len([h for h in handled(stack, "flaky-ok") if h["id"] == ok["id"]]) == 1


def test_a_handler_that_always_fails_is_dead_lettered_then_replayed(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url) as c:
        r = c.post("/orders", headers={"Prefer": "return=representation"},
                   json={"customer_id": 1, "ordered_at": "2024-01-01T00:00:00"})
        order_id = r.json()[0]["id"]
        assert c.delete(f"/orders?id=eq.{order_id}").status_code == 204

    def letters() -> list[dict[str, Any]]:
        return [x for x in map(json.loads, dlq(stack, "list", "--json").splitlines())
                if x["event"]["pk"]["id"] == order_id]

    eventually(lambda: bool(letters()), 20)
    [letter] = letters()
    assert letter["attempts"] == 3 and "always fails" in letter["error"]
    assert letter["routing_key"] == "orders.delete"
    assert letter["queue"] == f"headwater.broken-{stack.suffix}"
    assert len([h for h in handled(stack, "broken-fail") if h["id"] == letter["id"]]) == 3
    assert len(letters()) == 1  # listing leaves it there

    stack.fix.touch()
    out = dlq(stack, "replay")
    assert f"headwater.broken-{stack.suffix}: 1 replayed" in out
    eventually(lambda: any(h["id"] == letter["id"] for h in handled(stack, "broken-ok")))
    assert letters() == []


def test_an_event_delivered_twice_has_its_effect_once(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url) as c:
        cid = new_id()
        assert c.post("/customers", json=customer(cid)).status_code == 201
    eventually(lambda: any(h["pk"]["id"] == cid for h in handled(stack, "record")))
    [first] = [h for h in handled(stack, "record") if h["pk"]["id"] == cid]
    # the same event (same id) published twice more, as a relay retry would
    body = json.dumps({"id": first["id"], "seq": first["seq"], "table": "customers",
                       "op": "insert", "pk": {"id": cid}, "new": first["new"],
                       "principal": {"role": "anonymous", "claims": {}}, "txid": 1,
                       "at": "2024-01-01T00:00:00Z"}).encode()

    async def republish() -> None:
        connection = await aio_pika.connect(stack.amqp_url)
        try:
            channel = await connection.channel()
            exchange = await channel.get_exchange("headwater")
            for _ in range(2):
                await exchange.publish(aio_pika.Message(body, message_id=first["id"]),
                                       "customers.insert")
        finally:
            await connection.close()

    asyncio.run(republish())
    marker = new_id()  # a later event on the same queue: once it is handled, so were those
    with httpx.Client(base_url=stack.url) as c:
        assert c.post("/customers", json=customer(marker)).status_code == 201
    eventually(lambda: any(h["pk"]["id"] == marker for h in handled(stack, "record")))
    assert len([h for h in handled(stack, "record") if h["id"] == first["id"]]) == 1


def test_webhooks_are_signed_and_retried(stack: Stack) -> None:
    cid = new_id()
    with httpx.Client(base_url=stack.url) as c:
        assert c.post("/customers", json=customer(cid)).status_code == 201

    def calls() -> list[tuple[dict[str, str], bytes, int]]:
        with stack.hooks.lock:
            return [x for x in stack.hooks.calls if json.loads(x[1])["pk"]["id"] == cid]

    eventually(lambda: any(status == 200 for _, _, status in calls()), 15)
    got = calls()
    assert [status for _, _, status in got] == [500, 200]
    for headers, body, _ in got:
        assert headers[SIGNATURE.lower()].startswith("sha256=")
        assert verify(SECRET, body, headers[SIGNATURE.lower()])
        assert headers["x-headwater-event"] == "customers.insert"
        event = json.loads(body)
        assert event["id"] == headers["x-headwater-event-id"]
        assert event["new"]["id"] == cid
    assert got[0][1] == got[1][1]
    assert not verify("wrong secret", got[0][1], got[0][0][SIGNATURE.lower()])
    uuid.UUID(json.loads(got[0][1])["id"])
