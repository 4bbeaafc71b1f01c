"""Read replicas for real: a streaming replica of the local PostgreSQL server (made as
``scripts/cluster.sh`` makes its own), two Headwater nodes reading from it.

- a client that echoes the consistency token reads its writes, through either node;
- with replay paused, a principal's own node keeps read-your-writes for it (its window, shared
  by the node's worker processes), a token is served by the primary, and once the replica
  lags past ``max_replica_lag`` other principals' reads go to the primary too;
- the replica stopped under load: reads go on from the primary without a 5xx, and return
  to the replica once it is back.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from headwater.testing import PostgresReplica, ServerProcess
from tests.conftest import _pg_execute, pg_url_for

SECRET = "replica-test-secret-" + "x" * 32
SETTINGS = """
[auth]
jwt_secret = "{secret}"

[http]
metrics_roles = ["writer"]

[[policy]]
role = "writer"
table = "items"
actions = ["select", "insert", "update", "delete"]
"""
MAX_LAG = 0.5
CHECK_INTERVAL = 0.2
#: The window of the node that reads its own writes 40 times (long: a loaded machine may take
#: a while; the default is 2 s).
WINDOW = 15.0

pytestmark = pytest.mark.skipif(shutil.which("pg_basebackup") is None
                                and not os.path.isdir("/usr/lib/postgresql"),
                                reason="no PostgreSQL server binaries on this machine")


def bearer(sub: str) -> dict[str, str]:
    token = jwt.encode({"role": "writer", "sub": sub, "exp": int(time.time()) + 3600},
                       SECRET, algorithm="HS256")
    return {"Authorization": "Bearer " + token}


@dataclass
class Rig:
    replica: PostgresReplica
    primary_url: str
    replica_url: str
    nodes: list[ServerProcess]

    def sql(self, url: str, statement: str) -> Any:
        async def run() -> Any:
            conn = await asyncpg.connect(url, timeout=5)
            try:
                return await conn.fetchval(statement)
            finally:
                await conn.close()
        return asyncio.run(run())


@pytest.fixture(scope="module")
def rig(pg_admin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    name = "hw_repl_" + secrets.token_hex(4)
    asyncio.run(_pg_execute(pg_admin, f'CREATE DATABASE "{name}"'))
    primary = pg_url_for(name)
    asyncio.run(_pg_execute(primary, "CREATE TABLE items (id serial PRIMARY KEY, "
                                     "v integer NOT NULL, who text)"))
    replica = PostgresReplica()
    nodes: list[ServerProcess] = []
    try:
        replica.start()
        rig = Rig(replica, primary, replica.url(name), nodes)
        deadline = time.monotonic() + 20
        while True:  # the replica has replayed the database and its table
            try:
                rig.sql(rig.replica_url, "SELECT count(*) FROM items")
                break
            except (OSError, asyncpg.PostgresError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        config = Path(tmp_path_factory.mktemp("replicas")) / "headwater.toml"
        config.write_text(SETTINGS.format(secret=SECRET))
        # The default worker count (2 on two cores): the read-your-writes window without a
        # token is the node's, whichever worker answers (README, Scaling out).
        env = {"HEADWATER_CONFIG": str(config), "HEADWATER_MAX_REPLICA_LAG": str(MAX_LAG),
               "HEADWATER_DB_BREAKER_RESET": "0.5",
               "HEADWATER_REPLICA_CHECK_INTERVAL": str(CHECK_INTERVAL)}
        for _ in range(2):
            nodes.append(ServerProcess(primary, env=env,
                                       args=("--replica", rig.replica_url)).start())
        yield rig
    finally:
        for node in nodes:
            node.stop()
        replica.destroy()
        asyncio.run(_pg_execute(pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def ready(node: ServerProcess) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(node.url + "/-/ready", timeout=5).json()
    return body


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)


def replica_ok(node: ServerProcess) -> bool:
    return bool(ready(node)["checks"]["replicas"]["replica1"]["status"] == "ok")


def test_echoed_token_reads_every_write_across_nodes(rig: Rig) -> None:
    """1,000 write-then-read pairs, every write on one node and every read on the other
    (which, having seen no write of this principal, has no window to lean on): each read
    presents the write's token, and sees the write. The read's query is the same every time, so the cache is
    exercised too (every write moves the version; a stale entry would show)."""
    a, b = rig.nodes
    wait_for(lambda: replica_ok(a) and replica_ok(b), 10, "replica usable")
    served: dict[str, int] = {}
    with httpx.Client(timeout=10, headers=bearer("echo")) as client:
        token = None
        for i in range(1000):
            writer, reader = a, b
            w = client.post(writer.url + "/items", json={"v": i, "who": "echo"},
                            headers={"Prefer": "return=representation",
                                     **({"Headwater-LSN": token} if token else {})})
            assert w.status_code == 201, w.text
            token = w.headers["headwater-lsn"]
            assert w.cookies.get("hw_lsn") == token
            written = w.json()[0]["id"]
            r = client.get(reader.url + "/items?who=eq.echo&order=id.desc&limit=1",
                           headers={"Headwater-LSN": token})
            assert r.status_code == 200, r.text
            assert r.json() == [{"id": written, "v": i, "who": "echo"}], (i, r.headers)
            by = r.headers.get("headwater-served-by", "cache")
            served[by] = served.get(by, 0) + 1
    # The reader never wrote on its own node within the window: the replicas answered
    # (a token they had not replayed within the wait goes to the primary, rarely).
    assert served.get("replica", 0) > 500, served


def test_bad_token_is_a_400(rig: Rig) -> None:
    r = httpx.get(rig.nodes[0].url + "/items?limit=1", timeout=5,
                  headers={**bearer("x"), "Headwater-LSN": "not-an-lsn"})
    assert r.status_code == 400
    assert r.json()["message"] == "Invalid consistency token"
    # A cookie is ignored when it is not an LSN (a browser's jar is not the caller's input).
    r = httpx.get(rig.nodes[0].url + "/items?limit=1", timeout=5,
                  headers={**bearer("x"), "Cookie": "hw_lsn=garbage"})
    assert r.status_code == 200


def workers(node: ServerProcess) -> list[int]:
    stats: dict[str, Any] = httpx.get(node.url + "/-/stats", headers=bearer("ops"),
                                      timeout=5).json()
    return list(stats["workers"])


def every_worker_sampled() -> None:
    """Each worker samples the replica on its own clock: after one worker reports a change,
    the others have seen it within an interval (two, to be safe)."""
    time.sleep(2 * CHECK_INTERVAL + 0.1)


def test_paused_replay_window_token_and_lag(rig: Rig) -> None:
    a, _ = rig.nodes
    wait_for(lambda: len(workers(a)) >= 2, 10, "two workers on the node")
    wait_for(lambda: replica_ok(a), 10, "replica usable")
    every_worker_sampled()
    rig.sql(rig.replica_url, "SELECT pg_wal_replay_pause()")
    try:
        alice, bob = bearer("alice"), bearer("bob")
        w = httpx.post(a.url + "/items", json={"v": 1, "who": "alice"}, timeout=5,
                       headers={**alice, "Prefer": "return=representation"})
        assert w.status_code == 201
        written, token = w.json()[0]["id"], w.headers["headwater-lsn"]
        query = f"/items?id=eq.{written}"
        # Alice, no token, same node: her window sends her to the primary.
        r = httpx.get(a.url + query, headers=alice, timeout=5)
        assert r.json() == [{"id": written, "v": 1, "who": "alice"}]
        assert r.headers["headwater-served-by"] == "primary"
        # Bob with Alice's token: the replica cannot reach it, the primary answers.
        r = httpx.get(a.url + query + "&select=id", headers={**bob, "Headwater-LSN": token},
                      timeout=5)
        assert r.json() == [{"id": written}]
        assert r.headers["headwater-served-by"] == "primary"
        # Bob without a token: once the lag passes max_replica_lag, the primary answers him.
        wait_for(lambda: ready(a)["checks"]["replicas"]["replica1"]["status"] == "lagging",
                 MAX_LAG + 3, "replica reported lagging")
        every_worker_sampled()
        report = ready(a)
        assert report["status"] == "degraded"
        assert report["checks"]["replicas"]["replica1"]["replay_paused"] is True
        r = httpx.get(a.url + query + "&select=id,v", headers=bob, timeout=5)
        assert r.json() == [{"id": written, "v": 1}]
        assert r.headers["headwater-served-by"] == "primary"
        # The other worker's figures in a scrape are up to a second old.
        wait_for(lambda: 'headwater_replica_usable{replica="replica1"} 0.0'
                 in httpx.get(a.url + "/-/metrics", headers=bob, timeout=5).text,
                 3, "the replica unusable in the metrics")
    finally:
        rig.sql(rig.replica_url, "SELECT pg_wal_replay_resume()")
    wait_for(lambda: replica_ok(a), 5, "replica caught up")
    every_worker_sampled()
    r = httpx.get(a.url + "/items?select=id&limit=1&v=eq.-7", headers=bearer("carol"),
                  timeout=5)
    assert r.headers["headwater-served-by"] == "replica"


def pause_replay_in_use(rig: Rig, node: ServerProcess, headers: dict[str, str]) -> None:
    """Replay paused once the node uses the replica, its lag counted from a transaction
    replayed just now (with ``max_replica_lag`` high, it stays in use)."""
    made = httpx.post(node.url + "/items", json={"v": 2, "who": "setup"}, timeout=5,
                      headers={**headers, "Prefer": "return=representation"})
    row = made.json()[0]["id"]
    wait_for(lambda: rig.sql(rig.replica_url, f"SELECT count(*) FROM items WHERE id = {row}")
             == 1, 10, "the row replayed")
    wait_for(lambda: replica_ok(node), 10, "replica usable")
    every_worker_sampled()
    rig.sql(rig.replica_url, "SELECT pg_wal_replay_pause()")


def test_the_window_is_the_nodes_whichever_worker_answers(rig: Rig, tmp_path: Path) -> None:
    """A node of two workers, replay paused, lag tolerated (so the replica stays in use):
    after Alice's write, 40 reads of hers without a token, each on a fresh connection (so
    both workers answer some) and a new query (so the cache answers none), are all served by
    the primary and see her write; Bob's, meanwhile, by the replica."""
    config = tmp_path / "headwater.toml"
    config.write_text(SETTINGS.format(secret=SECRET))
    env = {"HEADWATER_CONFIG": str(config), "HEADWATER_MAX_REPLICA_LAG": "30",
           "HEADWATER_READ_YOUR_WRITES_WINDOW": str(WINDOW)}
    with ServerProcess(rig.primary_url, env=env, args=("--replica", rig.replica_url)) as node:
        wait_for(lambda: len(workers(node)) >= 2, 10, "two workers on the node")
        pause_replay_in_use(rig, node, bearer("dave"))
        try:
            alice = bearer("alice")
            w = httpx.post(node.url + "/items", json={"v": 3, "who": "alice"}, timeout=5,
                           headers={**alice, "Prefer": "return=representation"})
            wrote_at = time.monotonic()
            written = w.json()[0]["id"]
            served = []
            for i in range(40):
                assert time.monotonic() - wrote_at < WINDOW, f"read {i} after the window"
                r = httpx.get(node.url + f"/items?id=eq.{written}&v=neq.{-1000 - i}",
                              headers=alice, timeout=5)
                assert r.json() == [{"id": written, "v": 3, "who": "alice"}], (i, r.headers)
                served.append(r.headers["headwater-served-by"])
            assert served == ["primary"] * 40, served
            r = httpx.get(node.url + f"/items?id=eq.{written}&select=id", headers=bearer("bob"),
                          timeout=5)
            assert r.headers["headwater-served-by"] == "replica"
            assert r.json() == []  # not replayed: a token-less reader may see the past
        finally:
            rig.sql(rig.replica_url, "SELECT pg_wal_replay_resume()")


ANONYMOUS = """
[auth]
jwt_secret = "{secret}"
anonymous_role = "web"

[rate_limits]
trusted_proxies = ["127.0.0.1"]

[[policy]]
role = "web"
table = "items"
actions = ["select", "insert"]
"""


def test_anonymous_callers_are_told_apart_by_address(rig: Rig, tmp_path: Path) -> None:
    """Callers without a subject (the anonymous role here; every caller of a server without
    authentication) are one principal per client address: one's write keeps its own reads on
    the primary, not everyone's. Replay paused, lag tolerated, addresses as a trusted proxy
    forwards them."""
    config = tmp_path / "headwater.toml"
    config.write_text(ANONYMOUS.format(secret=SECRET))
    env = {"HEADWATER_CONFIG": str(config), "HEADWATER_MAX_REPLICA_LAG": "30",
           "HEADWATER_READ_YOUR_WRITES_WINDOW": str(WINDOW)}
    erin, frank = ({"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "198.51.100.9"})
    with ServerProcess(rig.primary_url, env=env, args=("--replica", rig.replica_url)) as node:
        pause_replay_in_use(rig, node, {})
        try:
            w = httpx.post(node.url + "/items", json={"v": 5, "who": "erin"}, timeout=5,
                           headers={**erin, "Prefer": "return=representation"})
            assert w.status_code == 201
            written = w.json()[0]["id"]
            for i in range(6):  # fresh connections: both workers answer some
                r = httpx.get(node.url + f"/items?id=eq.{written}&v=neq.{-2000 - i}",
                              headers=erin, timeout=5)
                assert r.json() == [{"id": written, "v": 5, "who": "erin"}]
                assert r.headers["headwater-served-by"] == "primary"
                r = httpx.get(node.url + f"/items?id=eq.{written}&v=neq.{-3000 - i}",
                              headers=frank, timeout=5)
                assert r.headers["headwater-served-by"] == "replica", i
                assert r.json() == []  # not replayed: a token-less reader may see the past
        finally:
            rig.sql(rig.replica_url, "SELECT pg_wal_replay_resume()")


def test_replica_stopped_under_load_then_back(rig: Rig) -> None:
    a, b = rig.nodes
    wait_for(lambda: replica_ok(a) and replica_ok(b), 10, "replica usable")
    statuses: dict[int, int] = {}
    served: list[str] = []
    stop = threading.Event()

    def load(node: ServerProcess, n: int) -> None:
        with httpx.Client(timeout=10, headers=bearer(f"load{n}")) as client:
            i = 0
            while not stop.is_set():
                i += 1
                # A new query each time: the cache does not answer, a server does.
                r = client.get(node.url + f"/items?id=gt.{-i}&v=gt.{-100 - n}&limit=1"
                                                 "&select=id")
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                served.append(r.headers.get("headwater-served-by", "?"))

    threads = [threading.Thread(target=load, args=(node, n))
               for n, node in enumerate((a, b, a, b))]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        rig.replica.stop("fast")
        mark = len(served)
        wait_for(lambda: not replica_ok(a) and not replica_ok(b), 5, "replica seen down")
        time.sleep(1.0)
        after_stop = [s for s in served[mark:] if s != "?"]
        assert after_stop and after_stop[-20:] == ["primary"] * 20, after_stop[-20:]
        rig.replica.start()
        wait_for(lambda: replica_ok(a) and replica_ok(b), 20, "replica back")
        mark = len(served)
        time.sleep(0.5)
        assert "replica" in served[mark:]
        assert served.count("?") < len(served) // 10
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert set(statuses) == {200}, statuses


def test_a_replica_read_older_than_another_nodes_write_is_never_cached(
        rig: Rig, tmp_path: Path) -> None:
    """Node B writes while the replica's replay is paused (and lag is tolerated long enough
    for node A to keep reading there): A may answer from the replica, but must not store that
    answer, since B's write moved the versions A read; once the replica has caught up, a read
    presenting B's token sees B's write."""
    config = tmp_path / "headwater.toml"
    config.write_text(SETTINGS.format(secret=SECRET))
    env = {"HEADWATER_CONFIG": str(config), "HEADWATER_MAX_REPLICA_LAG": "30",
           "HEADWATER_REPLICA_CHECK_INTERVAL": "3"}
    with ServerProcess(rig.primary_url, env=env, args=("--replica", rig.replica_url)) as a, \
            ServerProcess(rig.primary_url, env=env, args=("--replica", rig.replica_url)) as b:
        writer, reader = bearer("erin"), bearer("frank")
        made = httpx.post(b.url + "/items", json={"v": 1, "who": "erin"}, timeout=5,
                          headers={**writer, "Prefer": "return=representation"})
        row = made.json()[0]["id"]
        wait_for(lambda: rig.sql(rig.replica_url, f"SELECT count(*) FROM items WHERE id = {row}")
                 == 1, 10, "the row replayed")
        wait_for(lambda: replica_ok(a), 10, "replica usable")
        rig.sql(rig.replica_url, "SELECT pg_wal_replay_pause()")
        try:
            w = httpx.patch(b.url + f"/items?id=eq.{row}", json={"v": 2}, headers=writer,
                            timeout=5)
            assert w.status_code == 204
            token = w.headers["headwater-lsn"]
            query = f"/items?id=eq.{row}&select=id,v"
            first = httpx.get(a.url + query, headers=reader, timeout=5)
            if first.headers["headwater-served-by"] == "replica":
                assert first.json() == [{"id": row, "v": 1}]  # allowed: no token, lag < 30 s
            again = httpx.get(a.url + query, headers=reader, timeout=5)
            assert not (again.headers.get("x-cache") == "HIT"
                        and again.json() == [{"id": row, "v": 1}]), "a stale replica read was cached"
        finally:
            rig.sql(rig.replica_url, "SELECT pg_wal_replay_resume()")
        wait_for(lambda: rig.sql(rig.replica_url, f"SELECT v FROM items WHERE id = {row}") == 2,
                 10, "the update replayed")
        after = httpx.get(a.url + query, headers={**reader, "Headwater-LSN": token}, timeout=5)
        assert after.json() == [{"id": row, "v": 2}]
