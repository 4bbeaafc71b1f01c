"""``headwater serve`` with its default worker count (``auto``: one per core, two or more on
the CI machine) keeps every guarantee across its worker processes, without Redis: cache
coherence, rate limits per machine, every acknowledged write and each event once, SIGHUP and
SIGTERM reaching every worker, metrics for the whole server, API-key revocation."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from headwater.cores import available_cores
from headwater.demo import build_demo
from headwater.testing import ServerProcess
from tests.conftest import _pg_execute, pg_url_for
from tests.integration import oracle
from tests.integration.events_rabbit import ProbeQueue
from tests.integration.test_events_outbox import customer, eventually

pytestmark = pytest.mark.skipif(available_cores().count < 2,
                                reason="needs two cores for two workers by default")


def make_database(dialect: str, tmp: Path, request: pytest.FixtureRequest) -> str:
    if dialect == "sqlite":
        url = f"sqlite:///{tmp / f'w{secrets.token_hex(3)}.db'}"
    else:
        admin = request.getfixturevalue("pg_admin")
        name = "hw_workers_" + secrets.token_hex(4)
        asyncio.run(_pg_execute(admin, f'CREATE DATABASE "{name}"'))
        request.addfinalizer(lambda: asyncio.run(
            _pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))
        url = pg_url_for(name)
    asyncio.run(build_demo(url, scale=0.05))
    return url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_database(request.param, tmp_path_factory.mktemp("workers"), request)


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> str:
    return make_database("sqlite", tmp_path_factory.mktemp("workers"), request)


@pytest.fixture(scope="module")
def pg_db(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> str:
    return make_database("postgresql", tmp_path_factory.mktemp("workers"), request)


def fresh(url: str, path: str, **kw: Any) -> httpx.Response:
    """One request on a connection of its own: the kernel spreads new connections over the
    workers (SO_REUSEPORT), so consecutive calls land on different ones."""
    with httpx.Client(base_url=url, timeout=30) as c:
        return c.request(kw.pop("method", "GET"), path, **kw)


def workers(url: str) -> list[int]:
    pids: list[int] = fresh(url, "/-/stats").json()["workers"]
    return pids


def all_started(url: str) -> list[int]:
    """The workers' pids once every one of them has loaded the catalog (``/-/ready`` answers
    as soon as the first has)."""
    count = available_cores().count

    def done() -> bool:
        text = fresh(url, "/-/metrics").text
        return (len(workers(url)) == count and
                metric(text, "headwater_catalog_reloads_total", '{result="ok"}') >= count)

    eventually(done, 30)
    pids = workers(url)
    assert len(pids) >= 2
    return pids


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = rf"^{re.escape(name)}{re.escape(labels)} (\S+)$" if labels else \
        rf"^{re.escape(name)} (\S+)$"
    m = re.search(pattern, text, re.M)
    return float(m.group(1)) if m else 0.0


def answered_by(url: str) -> dict[str, float]:
    """Requests answered by each worker pid (from the server-wide metrics)."""
    text = fresh(url, "/-/metrics").text
    return {pid: float(n) for pid, n in
            re.findall(r'^headwater_worker_requests_total\{pid="(\d+)"\} (\S+)$', text, re.M)}


def test_auto_starts_one_worker_per_core_and_says_so(sqlite_db: str) -> None:
    cores = available_cores()
    server = ServerProcess(sqlite_db)
    env = {**os.environ, "HEADWATER_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "headwater", "serve", sqlite_db, "--port", str(server.port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        text=True)
    try:
        assert proc.stderr is not None
        banner = ""
        deadline = time.monotonic() + 30
        while "Headwater serving" not in banner and time.monotonic() < deadline:
            banner = proc.stderr.readline()
        assert f"with {cores.count} workers (auto: {cores.reason})" in banner
        def all_up() -> bool:
            try:
                return len(workers(server.url)) == cores.count
            except httpx.TransportError:
                return False

        eventually(all_up, 30)
        seen = {fresh(server.url, "/-/stats").json()["pid"] for _ in range(30)}
        assert len(seen) >= 2
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(20) == 0
        assert proc.stderr is not None
        proc.stderr.close()
    with ServerProcess(sqlite_db, args=("--workers", "1")) as one:
        assert len(workers(one.url)) == 1


def test_a_write_through_one_worker_is_never_read_stale_through_another(database: str) -> None:
    with ServerProcess(database) as s:
        all_started(s.url)
        before = answered_by(s.url)
        stale = 0
        for i in range(1, 151):
            assert fresh(s.url, "/products?id=eq.7", method="PATCH",
                         json={"price": i}).status_code == 204
            # Twice: the first read may fill a worker's cache, the second may hit it.
            for _ in range(2):
                stale += fresh(s.url, "/products?select=price&id=eq.7").json()[0]["price"] != i
        after = answered_by(s.url)
    assert stale == 0
    served = [pid for pid, n in after.items() if n - before.get(pid, 0) >= 1]
    assert len(served) >= 2, after  # the pairs really crossed workers


def test_a_rate_limit_holds_for_the_whole_server(sqlite_db: str, tmp_path: Path) -> None:
    config = tmp_path / "limits.toml"
    config.write_text('[[rate_limits.override]]\ntable = "products"\naction = "select"\n'
                      'limit = "40/hour"\n')
    while time.time() % 3600 > 3600 - 30:  # not across the hour's window boundary
        time.sleep(1)
    with ServerProcess(sqlite_db, args=("--config", str(config))) as s:
        all_started(s.url)
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: fresh(s.url, "/products?id=eq.1").status_code,
                                  range(120)))
        by_worker = answered_by(s.url)
    assert codes.count(200) == 40, codes  # exactly the limit, not 40 per worker
    assert codes.count(429) == 80
    assert sum(1 for n in by_worker.values() if n >= 1) >= 2, by_worker


@pytest.fixture
def events_log(tmp_path: Path) -> Path:
    log = tmp_path / "handled.jsonl"
    log.touch()
    return log


def test_every_acknowledged_write_lands_and_each_event_is_handled_once(
        database: str, events_log: Path) -> None:
    env = {"HW_TEST_EVENTS_LOG": str(events_log),
           "HW_TEST_QUEUE_SUFFIX": "w" + secrets.token_hex(3)}
    ids = sorted(secrets.SystemRandom().sample(range(2_000_000, 3_000_000), 240))
    with ServerProcess(database, env=env, args=("--app", "tests.integration.events_app:app")) \
            as s:
        all_started(s.url)
        with ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(
                lambda i: fresh(s.url, "/customers", method="POST", json=customer(i)).status_code,
                ids))
        acknowledged = [i for i, c in zip(ids, codes, strict=True) if c == 201]
        assert len(acknowledged) == len(ids), codes

        def handled() -> list[str]:
            lines = [json.loads(x) for x in events_log.read_text().splitlines() if x]
            return [x["id"] for x in lines if x["kind"] == "record" and x["pk"]["id"] in ids]

        eventually(lambda: len(handled()) >= len(ids), 30)
        time.sleep(1.5)  # a second delivery would show up here
        by_worker = answered_by(s.url)
    in_list = ",".join(map(str, ids))
    rows = oracle.rows(database, f"SELECT id FROM customers WHERE id IN ({in_list})")
    assert sorted(r[0] for r in rows) == ids
    outbox = oracle.rows(database, "SELECT CAST(id AS TEXT), CAST(pk AS TEXT) FROM "
                                   "_headwater_outbox WHERE tbl = 'customers' AND op = 'insert'")
    recorded = {r[0]: json.loads(r[1])["id"] for r in outbox}
    mine = sorted(pk for pk in recorded.values() if pk in set(ids))
    assert mine == ids  # each write's event recorded once
    got = handled()
    assert len(got) == len(set(got)) == len(ids)  # and handled once
    assert set(got) <= set(recorded)
    assert sum(1 for n in by_worker.values() if n >= 1) >= 2, by_worker


async def test_each_event_is_published_once_to_rabbitmq(database: str, amqp_url: str) -> None:
    tag = secrets.token_hex(4)
    queue = ProbeQueue(amqp_url, "hwtest-workers-" + tag, ["customers.insert"])
    await queue.declare()
    server = ServerProcess(database, env={"HEADWATER_AMQP_URL": amqp_url})
    await asyncio.to_thread(server.start)
    # Apart from the ids of the other tests on this database.
    ids = sorted(secrets.SystemRandom().sample(range(3_000_000, 4_000_000), 150))
    try:
        await asyncio.to_thread(all_started, server.url)

        def post(i: int) -> int:
            body = {**customer(i), "name": f"W{tag} {i}"}
            return fresh(server.url, "/customers", method="POST", json=body).status_code

        with ThreadPoolExecutor(10) as pool:
            codes = list(await asyncio.to_thread(lambda: list(pool.map(post, ids))))
        assert codes == [201] * len(ids)
        # Other tests publish customers.insert to the same exchange: keep only ours.
        await queue.drain(10**6, idle=3)
        by_worker = await asyncio.to_thread(answered_by, server.url)
    finally:
        await asyncio.to_thread(server.stop)
        await queue.delete()
    mine = [m for m in queue.got if str(m.event["new"]["name"]).startswith(f"W{tag} ")]
    assert sorted(m.event["pk"]["id"] for m in mine) == ids  # each exactly once
    assert len({m.message_id for m in mine}) == len(ids)
    assert sum(1 for n in by_worker.values() if n >= 1) >= 2, by_worker


def test_sighup_reloads_the_catalog_of_every_worker_in_place(tmp_path: Path,
                                                             request: pytest.FixtureRequest,
                                                             ) -> None:
    db = make_database("sqlite", tmp_path, request)
    with ServerProcess(db) as s:
        pids = all_started(s.url)
        oracle.execute(db, "CREATE TABLE hup_notes (id integer PRIMARY KEY, body text)")
        assert fresh(s.url, "/hup_notes").status_code == 404
        assert s.proc is not None
        os.kill(s.proc.pid, signal.SIGHUP)  # the supervisor only, as an operator would

        def reloaded() -> bool:
            text = fresh(s.url, "/-/metrics").text
            return metric(text, "headwater_catalog_reloads_total",
                          '{result="ok"}') == 2 * len(pids)

        eventually(reloaded, 10)
        codes = [fresh(s.url, "/hup_notes").status_code for _ in range(30)]
        assert codes == [200] * 30
        assert workers(s.url) == pids  # reloaded in place, not restarted


def test_sigterm_drains_every_worker(pg_db: str, tmp_path: Path) -> None:
    # PostgreSQL: a Python RPC runs in a transaction, and SQLite's are one at a time.
    started = tmp_path / "started"
    started.touch()
    server = ServerProcess(pg_db, env={"HW_TEST_SLOW_LOG": str(started)},
                           args=("--app", "tests.integration.workers_app:app"))

    def call() -> httpx.Response:
        while True:  # a 503 from admission control (a loaded machine) is not in flight: again
            r = fresh(server.url, "/rpc/slow", method="POST", json={"seconds": 2})
            if r.status_code != 503:
                return r
            time.sleep(0.05)

    with server:
        all_started(server.url)
        assert server.proc is not None
        proc = server.proc
        with ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(call) for _ in range(12)]
            eventually(lambda: len(started.read_text().split()) == 12, 10)
            os.kill(proc.pid, signal.SIGTERM)  # the supervisor, while all 12 are in flight
            answers = [f.result() for f in futures]
        assert proc.wait(20) == 0
    assert [a.status_code for a in answers] == [200] * 12
    pids = {a.json() for a in answers}
    assert pids == {int(p) for p in started.read_text().split()}
    assert len(pids) >= 2  # in flight on several workers, and every one drained


def test_metrics_count_every_workers_requests(database: str) -> None:
    with ServerProcess(database) as s:
        all_started(s.url)
        for _ in range(60):
            assert fresh(s.url, "/no_such_table").status_code == 404

        def counted() -> bool:
            text = fresh(s.url, "/-/metrics").text
            return metric(text, "headwater_requests_total",
                          '{method="GET",status="404"}') == 60
        eventually(counted, 5)
        by_worker = answered_by(s.url)
        text = fresh(s.url, "/-/metrics").text
        assert metric(text, "headwater_workers") == len(workers(s.url))
        stats = fresh(s.url, "/-/stats").json()
        assert stats["requests_by_status"]["404"] == 60
        # The console charts successive polls, whichever worker answers each: never backwards.
        polls = [fresh(s.url, "/-/stats").json() for _ in range(12)]
        for earlier, later in itertools.pairwise(polls):
            assert later["uptime_s"] >= earlier["uptime_s"]
            assert later["requests_total"] >= earlier["requests_total"]
    assert sum(1 for n in by_worker.values() if n >= 1) >= 2, by_worker


def test_a_revoked_api_key_is_refused_by_every_worker_within_the_bound(
        sqlite_db: str, tmp_path: Path) -> None:
    config = tmp_path / "auth.toml"
    config.write_text('[auth]\napi_key_cache_seconds = 1\n\n[[policy]]\nrole = "reader"\n'
                      'table = "*"\nactions = ["select"]\n')
    made = subprocess.run(
        [sys.executable, "-m", "headwater", "keys", "create", "--role", "reader", sqlite_db],
        capture_output=True, text=True, check=True)
    key = made.stdout.strip()
    key_id = key.split("_")[1]
    with ServerProcess(sqlite_db, args=("--config", str(config))) as s:
        headers = {"apikey": key}
        assert [fresh(s.url, "/products?id=eq.1", headers=headers).status_code
                for _ in range(20)] == [200] * 20
        subprocess.run(
            [sys.executable, "-m", "headwater", "keys", "revoke", key_id, sqlite_db],
            capture_output=True, check=True)
        time.sleep(1.2)  # api_key_cache_seconds, and a little
        codes = [fresh(s.url, "/products?id=eq.1", headers=headers).status_code
                 for _ in range(30)]
    assert codes == [401] * 30
