"""Events in the embedded mode (no broker), on both databases, through a real server: the
outbox is written in the write's transaction, and the app's handlers run in-process with
retries, a dead-letter table and replay."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from headwater.config import Settings
from headwater.db.connect import open_database
from headwater.db.database import Database
from headwater.demo import build_demo
from headwater.events.bus import Envelope
from headwater.events.event import Event, Subscription
from headwater.events.memory_bus import MemoryBus
from headwater.events.outbox import Outbox
from headwater.events.recording import EventBuffer, Recorder
from headwater.events.relay import Relay
from headwater.events.worker import Worker
from headwater.observability.logging import make_logger
from headwater.observability.metrics import Metrics
from headwater.testing import ServerProcess
from tests.conftest import AUDIT_DDL, _pg_execute, pg_url_for
from tests.integration import oracle
from tests.integration.scrape import settled_queries

JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class EventServer:
    url: str
    database_url: str
    dialect: str
    log: Path
    fix: Path
    env: dict[str, str]


def make_database(dialect: str, tmp: Path, request: pytest.FixtureRequest) -> str:
    if dialect == "sqlite":
        url = f"sqlite:///{tmp / 'events.db'}"
    else:
        admin = request.getfixturevalue("pg_admin")
        name = "hw_ev_" + secrets.token_hex(4)
        asyncio.run(_pg_execute(admin, f'CREATE DATABASE "{name}"'))
        request.addfinalizer(lambda: asyncio.run(
            _pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))
        url = pg_url_for(name)
    asyncio.run(build_demo(url, scale=0.05))
    oracle.execute(url, AUDIT_DDL[dialect])
    oracle.execute(url, "CREATE TABLE ev_notes (id integer PRIMARY KEY, title text, body "
                        + ("json)" if dialect == "postgresql" else "JSON)"))
    return url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[EventServer]:
    tmp = Path(tmp_path_factory.mktemp("events"))
    db_url = make_database(request.param, tmp, request)
    log, fix = tmp / "handled.jsonl", tmp / "fixed"
    log.touch()
    # A 30 s poll: only the kick of each commit can wake the relay in time for these tests.
    env = {"HEADWATER_EVENTS_OLD_ROWS": "products", "HEADWATER_EVENTS_EXCLUDE": "order_items.*",
           "HEADWATER_WORKER_RETRY_DELAY": "0.1", "HEADWATER_WORKER_MAX_ATTEMPTS": "3",
           "HEADWATER_RELAY_POLL_INTERVAL": "30", "HW_TEST_EVENTS_LOG": str(log),
           "HW_TEST_FIX_FILE": str(fix), "HW_TEST_QUEUE_SUFFIX": "e" + secrets.token_hex(3)}
    with ServerProcess(db_url, env=env, args=("--app", "tests.integration.events_app:app")) as s:
        yield EventServer(s.url, db_url, request.param, log, fix, env)


@pytest.fixture(scope="module")
def client(server: EventServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def outbox(server: EventServer, where: str = "1=1") -> list[dict[str, Any]]:
    rows = oracle.rows(server.database_url,
                       f"SELECT CAST(id AS TEXT), tbl, op, CAST(pk AS TEXT), CAST(new AS TEXT), "
                       f"CAST(old AS TEXT), CAST(principal AS TEXT), txid, seq "
                       f"FROM _headwater_outbox WHERE {where} ORDER BY seq")
    return [{"id": r[0], "table": r[1], "op": r[2], "pk": json.loads(r[3]),
             "new": json.loads(r[4]) if r[4] is not None else None,
             "old": json.loads(r[5]) if r[5] is not None else None,
             "principal": json.loads(r[6]), "txid": int(r[7]), "seq": int(r[8])} for r in rows]


def events_for(server: EventServer, table: str, ids: list[int]) -> list[dict[str, Any]]:
    return [e for e in outbox(server, f"tbl = '{table}'") if e["pk"].get("id") in ids]


def handled(server: EventServer, kind: str | None = None) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in server.log.read_text().splitlines() if x]
    return [x for x in lines if kind is None or x["kind"] == kind]


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def new_id() -> int:
    return 700_000 + secrets.randbelow(10**6)


def customer(cid: int) -> dict[str, Any]:
    return {"id": cid, "name": f"Ev {cid}", "email": f"{uuid.uuid4().hex}@ev.example",
            "created_at": "2024-05-06T07:08:09"}



def test_one_row_inserts_each_have_their_own_transaction_id(server: EventServer,
                                                           client: httpx.Client) -> None:
    # On SQLite such a write's trigger draws the id itself (the tag stays as it was).
    ids = [new_id() for _ in range(4)]
    for i in ids:
        assert client.post("/customers", json=customer(i)).status_code == 201
    txids = [e["txid"] for e in events_for(server, "customers", ids)]
    assert len(txids) == 4 and len(set(txids)) == 4
    assert all(0 < t < 2**63 for t in txids)


def test_each_written_row_is_one_event_in_the_outbox(server: EventServer,
                                                     client: httpx.Client) -> None:
    ids = [new_id() for _ in range(3)]
    assert client.post("/customers", json=[customer(i) for i in ids]).status_code == 201
    inserted = events_for(server, "customers", ids)
    assert [e["op"] for e in inserted] == ["insert"] * 3
    assert [e["pk"] for e in inserted] == [{"id": i} for i in ids]
    assert [e["new"]["email"].endswith("@ev.example") for e in inserted] == [True] * 3
    assert all(e["old"] is None for e in inserted)
    assert inserted[0]["principal"] == {"role": "anonymous", "claims": {}}
    assert len({e["txid"] for e in inserted}) == 1  # one request, one transaction
    assert len({e["id"] for e in inserted}) == 3

    r = client.patch(f"/customers?id=in.({ids[0]},{ids[1]})", json={"country": "NO"})
    assert r.status_code == 204
    r = client.delete(f"/customers?id=eq.{ids[2]}")
    assert r.status_code == 204
    events = events_for(server, "customers", ids)
    assert [e["op"] for e in events] == ["insert"] * 3 + ["update"] * 2 + ["delete"]
    assert {e["pk"]["id"] for e in events[3:5]} == {ids[0], ids[1]}
    assert events[5]["pk"] == {"id": ids[2]}
    updated = events[3]
    assert updated["new"]["country"] == "NO" and updated["old"] is None  # not asked for
    deleted = events[5]
    assert deleted["new"] is None and deleted["old"]["id"] == ids[2]
    assert len({e["txid"] for e in events}) == 3

    # the app's handler for customers.* sees each of them once, in order
    want = [e["id"] for e in events]
    eventually(lambda: {h["id"] for h in handled(server, "record")} >= set(want))
    got = [h["id"] for h in handled(server, "record") if h["id"] in want]
    assert got == want


def test_rolled_back_requests_leave_no_events(server: EventServer, client: httpx.Client) -> None:
    before = len(outbox(server))
    cid = new_id()
    r = client.post("/customers", json=customer(cid), headers={"Prefer": "tx=rollback"})
    assert r.status_code == 201
    taken = customer(new_id())
    assert client.post("/customers", json=taken).status_code == 201
    # a bulk insert whose second row conflicts: nothing of it is kept
    other = new_id()
    r = client.post("/customers", json=[customer(other), {**customer(new_id()), "id": taken["id"]}])
    assert r.status_code == 409
    r = client.post("/rpc/rename_product", json={"product_id": 1, "name": "rollback"})
    assert r.status_code == 409
    after = outbox(server)
    assert len(after) == before + 1
    assert after[-1]["pk"] == {"id": taken["id"]}
    assert not [e for e in after if e["pk"].get("id") in (cid, other)]


def test_hook_and_rpc_writes_are_recorded_through_emit(server: EventServer,
                                                       client: httpx.Client) -> None:
    r = client.post("/orders", headers={**JSON, "Prefer": "return=representation"},
                    json={"customer_id": 1, "ordered_at": "2024-01-01T00:00:00"})
    assert r.status_code == 201
    order_id = r.json()[0]["id"]
    [order] = events_for(server, "orders", [order_id])
    [audit] = [e for e in outbox(server, "tbl = 'audit_log'") if e["new"]["ref"] == order_id]
    assert (audit["op"], audit["txid"]) == ("insert", order["txid"])
    assert audit["pk"] == {"id": audit["new"]["id"]}

    before = len(outbox(server, "tbl = 'products'"))
    r = client.post("/rpc/rename_product", json={"product_id": 2, "name": "Renamed"})
    assert r.json() == {"updated": 1}
    assert len(outbox(server, "tbl = 'products'")) == before + 1  # emitted, not also seen
    last = outbox(server, "tbl = 'products'")[-1]
    assert (last["op"], last["pk"], last["new"]) == ("update", {"id": 2},
                                                     {"id": 2, "name": "Renamed"})


def test_update_carries_the_old_row_when_asked_and_a_flaky_handler_runs_once(
        server: EventServer, client: httpx.Client) -> None:
    before = oracle.rows(server.database_url, "SELECT name FROM products WHERE id = 3")[0][0]
    r = client.patch("/products?id=eq.3", json={"name": "New name"})
    assert r.status_code == 204
    event = outbox(server, "tbl = 'products'")[-1]
    assert event["old"]["name"] == before
    assert event["new"]["name"] == "New name"
    assert event["old"]["sku"] == event["new"]["sku"]
    # fails twice, then succeeds: run three times, effect once
    eventually(lambda: any(h["id"] == event["id"] for h in handled(server, "flaky-ok")))
    time.sleep(0.5)  # nothing more comes
    runs = [(h["kind"], h["attempt"]) for h in handled(server) if h["id"] == event["id"]]
    assert runs == [("flaky-fail", 1), ("flaky-fail", 2), ("flaky-ok", 3)]


def test_a_table_with_events_off_costs_no_statement(server: EventServer,
                                                    client: httpx.Client) -> None:
    before_rows = len(outbox(server))
    before = settled_queries(client)  # the other worker's start-up counted
    r = client.post("/order_items", json={"id": new_id(), "order_id": 1, "product_id": 1,
                                          "quantity": 1, "unit_price": "1.00"})
    assert r.status_code == 201
    assert settled_queries(client) - before == 1
    assert len(outbox(server)) == before_rows


def cli(server: EventServer, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "headwater", "events", "dlq", *args,
                          server.database_url], capture_output=True, text=True, timeout=60,
                         check=True)
    return out.stdout


def test_failing_handler_dead_letters_and_replays(server: EventServer,
                                                  client: httpx.Client) -> None:
    r = client.post("/orders", headers={**JSON, "Prefer": "return=representation"},
                    json={"customer_id": 1, "ordered_at": "2024-01-01T00:00:00"})
    order_id = r.json()[0]["id"]
    assert client.delete(f"/orders?id=eq.{order_id}").status_code == 204
    [event] = events_for(server, "orders", [order_id])[1:]
    assert event["op"] == "delete"

    def dead() -> list[dict[str, Any]]:
        return [json.loads(x) for x in cli(server, "list", "--json").splitlines()
                if json.loads(x)["id"] == event["id"]]

    eventually(lambda: bool(dead()))
    [letter] = dead()
    assert letter["attempts"] == 3
    assert "always fails" in letter["error"]
    assert letter["event"]["old"]["id"] == order_id
    assert letter["queue"] == "headwater.broken-" + server.env["HW_TEST_QUEUE_SUFFIX"]
    assert len([h for h in handled(server, "broken-fail") if h["id"] == event["id"]]) == 3

    server.fix.touch()
    assert "1 replayed" in cli(server, "replay")
    eventually(lambda: any(h["id"] == event["id"] for h in handled(server, "broken-ok")))
    assert dead() == []


def test_stats_and_metrics_report_the_outbox(server: EventServer, client: httpx.Client) -> None:
    client.post("/customers", json=customer(new_id())).raise_for_status()
    eventually(lambda: client.get("/-/stats").json()["outbox_pending"] == 0)
    text = client.get("/-/metrics").text
    assert re.search(r"^headwater_outbox_pending 0\.0$", text, re.M)
    m = re.search(r"^headwater_events_published_total (\S+)$", text, re.M)
    assert m and float(m[1]) > 0
    assert 'headwater_events_handled_total{handler="record-' in text
    assert "broker" not in client.get("/-/ready").json()["checks"]


# --- processed ids: the worker on a real database, with a duplicate delivery --------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def worker_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'w.db'}"
        return
    admin = request.getfixturevalue("pg_admin")
    name = "hw_worker_" + secrets.token_hex(4)
    asyncio.run(_pg_execute(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield pg_url_for(name)
    finally:
        asyncio.run(_pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def test_duplicate_deliveries_have_their_effect_once(worker_db: str) -> None:
    settings = Settings(database_url=worker_db, worker_retry_delay=0.05, worker_max_attempts=3)
    db = open_database(settings)
    await db.start()
    box = Outbox(settings, db.dialect, db.schema)
    await box.ensure(db)
    effects: list[str] = []

    async def handler(event: Event) -> None:
        await asyncio.sleep(0.05)  # long enough for the duplicates to overlap
        effects.append(event.id)

    bus = MemoryBus()
    worker = Worker(settings, bus, db, box, [Subscription("once", ("t.*",), handler)],
                    log=make_logger("error"))
    await worker.start()
    try:
        body = (b'{"id":"%s","seq":1,"table":"t","op":"insert","pk":{"id":1},"new":{"id":1},'
                b'"principal":{"role":"anonymous","claims":{}},"txid":1,'
                b'"at":"2024-01-01T00:00:00Z"}')
        first, second = str(uuid.uuid4()), str(uuid.uuid4())
        await bus.publish([Envelope(first, "t.insert", body % first.encode())] * 3)
        await asyncio.sleep(0.3)
        await bus.publish([Envelope(first, "t.insert", body % first.encode()),
                           Envelope(second, "t.insert", body % second.encode())])
        await asyncio.sleep(0.3)
        assert sorted(effects) == sorted([first, second])
    finally:
        await bus.close()
        await db.close()


# --- the relay, in process: order, one publisher per row, pruning -------------------------------


class RecordingBus(MemoryBus):
    """Notes what is published, in publish order, into a list shared by several relays."""

    def __init__(self, shared: list[tuple[str, int, str]], name: str) -> None:
        super().__init__()
        self.shared = shared
        self.name = name

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        for e in envelopes:
            self.shared.append((e.routing_key.split(".")[0], json.loads(e.body)["seq"],
                                self.name))
            await asyncio.sleep(0)  # let the other relay run in between


async def test_relays_share_the_outbox_in_order_and_prune(worker_db: str) -> None:
    settings = Settings(database_url=worker_db, relay_batch=100, outbox_retention=0.0)
    db = open_database(settings)
    await db.start()
    try:
        await _relays_share_the_outbox(settings, db)
    finally:
        await db.close()


async def _relays_share_the_outbox(settings: Settings, db: Database) -> None:
    box = Outbox(settings, db.dialect, db.schema)
    await box.ensure(db)
    principal = {"role": "anonymous", "claims": {}}
    tables = ["t1", "t2", "t3"]
    for round_ in range(30):
        buf = EventBuffer(Recorder(box), principal)
        for i in range(30):
            table = tables[(round_ + i) % 3]
            buf.add(table, "insert", ("id",), new={"id": round_ * 100 + i})
        async with db.transaction() as tx:
            await buf.flush(tx)
    assert await box.pending(db) == 900
    shared: list[tuple[str, int, str]] = []
    # two nodes' relays at once (SQLite: one holds the lease, the other waits its turn)
    relays = [Relay(settings, db, box, RecordingBus(shared, n), metrics=Metrics(),
                    log=make_logger("error")) for n in ("a", "b")]
    published = sum(await asyncio.gather(*(r.drain() for r in relays)))
    assert published == 900 and await box.pending(db) == 0
    seqs = [s for _, s, _ in shared]
    assert len(seqs) == len(set(seqs)) == 900  # each row published once
    for t in tables:
        mine = [s for table, s, _ in shared if table == t]
        assert mine == sorted(mine), f"{t} out of order"
    assert await box.prune(db) == 900
    assert (await db.fetchrow(f"SELECT count(*) FROM {box.outbox}", ()))[0] == 0


def test_a_json_value_holding_a_nul_character_is_recorded(server: EventServer,
                                                          client: httpx.Client) -> None:
    # The API refuses \u0000 in bodies, but another program may have stored one in a json
    # column (PostgreSQL's json keeps it; jsonb and field extraction refuse it): a write
    # through the API that returns that row must still record its event.
    nid = new_id()
    oracle.execute(server.database_url, f"INSERT INTO ev_notes (id, title, body) VALUES "
                                        f"({nid}, 'a', '{{\"k\": \"a\\u0000b\"}}')")
    r = client.patch(f"/ev_notes?id=eq.{nid}", json={"title": "b"})
    assert r.status_code == 204, r.text
    [event] = events_for(server, "ev_notes", [nid])
    assert event["new"]["body"] == {"k": "a\u0000b"} and event["new"]["title"] == "b"
    # and the relay publishes it like any other
    eventually(lambda: oracle.rows(server.database_url, "SELECT count(*) FROM _headwater_outbox "
                                   "WHERE sent_at IS NULL")[0][0] == 0)


async def test_with_nobody_to_deliver_to_the_relay_only_marks_rows(worker_db: str) -> None:
    settings = Settings(database_url=worker_db, relay_batch=100)
    db = open_database(settings)
    await db.start()
    try:
        box = Outbox(settings, db.dialect, db.schema)
        await box.ensure(db)
        buf = EventBuffer(Recorder(box), {"role": "anonymous", "claims": {}})
        buf.add_rows("t", "insert", ("id",), [{"id": i} for i in range(250)])
        async with db.transaction() as tx:
            await buf.flush(tx)
        shared: list[tuple[str, int, str]] = []
        relay = Relay(settings, db, box, RecordingBus(shared, "a"), metrics=Metrics(),
                      log=make_logger("error"), eager=False)
        assert await relay.drain() == 250
        assert await box.pending(db) == 0 and shared == []
    finally:
        await db.close()
