"""Headwater on a Redis Cluster: two nodes share cache versions, L2 entries and rate limits
through ``redis+cluster://``, and stay coherent while a cluster node is down."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from redis.asyncio.cluster import RedisCluster

from headwater.cache.address import RedisAddress
from headwater.cache.redis import RedisStore
from headwater.errors import InvalidSetting, RedisUnavailable
from headwater.resilience.breaker import BreakerPolicy, CircuitBreaker
from headwater.testing import RedisClusterProcess, RedisNode, ServerProcess, free_port
from tests.conftest import _pg_execute, pg_url_for, unavailable
from tests.integration import oracle


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcess]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        unavailable("redis-server and redis-cli (Debian's redis-server package)")
    with RedisClusterProcess(str(tmp_path_factory.mktemp("redis-cluster"))) as c:
        yield c


@pytest.fixture(scope="module")
def pg_shop(pg_admin: str) -> Iterator[str]:
    from headwater.demo.dataset import build_demo

    name = "hw_rc_" + secrets.token_hex(4)
    asyncio.run(_pg_execute(pg_admin, f'CREATE DATABASE "{name}"'))
    url = pg_url_for(name)
    try:
        asyncio.run(build_demo(url, scale=0.02))
        yield url
    finally:
        asyncio.run(_pg_execute(pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def nodes(cluster: RedisClusterProcess, pg_shop: str) -> Iterator[tuple[str, str, str]]:
    """Two Headwater nodes on one database and one Redis Cluster, and their namespace."""
    namespace = "rc" + secrets.token_hex(4)
    env = {"HEADWATER_REDIS_URL": cluster.url, "HEADWATER_CACHE_NAMESPACE": namespace,
           "HEADWATER_REDIS_BREAKER_RESET": "1"}
    with ExitStack() as stack:
        a = stack.enter_context(ServerProcess(pg_shop, env=env))
        b = stack.enter_context(ServerProcess(pg_shop, env=env))
        yield a.url, b.url, namespace


def _write_then_read(a: httpx.Client, b: httpx.Client, rounds: int) -> list[str]:
    """Each round: warm both caches, write through one node, read through both. Returns the
    X-Cache values seen, and asserts no read is ever older than the write before it."""
    seen: list[str] = []
    for i in range(rounds):
        path = "/customers?id=eq.3&select=id,name"
        for c in (a, b):
            r = c.get(path)
            assert r.status_code == 200, r.text
            seen.append(r.headers.get("x-cache", ""))
        name = f"cluster-{secrets.token_hex(3)}-{i}"
        writer = (a, b)[i % 2]
        w = writer.patch("/customers?id=eq.3", json={"name": name})
        assert w.status_code == 204, w.text
        for c in (a, b, a, b):
            r = c.get(path)
            assert r.status_code == 200, r.text
            assert r.json() == [{"id": 3, "name": name}], "a read older than its write"
            seen.append(r.headers.get("x-cache", ""))
    return seen


def test_two_nodes_share_one_cluster_coherently(nodes: tuple[str, str, str]) -> None:
    with httpx.Client(base_url=nodes[0]) as a, httpx.Client(base_url=nodes[1]) as b:
        seen = _write_then_read(a, b, 20)
    assert "HIT" in seen  # the cache works through the cluster, not around it


def test_a_stopped_cluster_node_costs_no_error_and_no_stale_read(
        cluster: RedisClusterProcess, nodes: tuple[str, str, str]) -> None:
    # The node holding the versions hash is the one whose loss matters most.
    victim = cluster.node_for(f"hw:{nodes[2]}:versions")
    victim.stop()
    try:
        with httpx.Client(base_url=nodes[0]) as a, httpx.Client(base_url=nodes[1]) as b:
            _write_then_read(a, b, 10)
    finally:
        victim.start()
    # Back: the cache serves again once the breaker's probe finds the node.
    with httpx.Client(base_url=nodes[0]) as a, httpx.Client(base_url=nodes[1]) as b:
        for _ in range(100):
            if "HIT" in _write_then_read(a, b, 1):
                break
            asyncio.run(asyncio.sleep(0.2))
        else:
            pytest.fail("the cache never served a hit after the node came back")


async def test_calls_end_within_the_deadline_as_a_result_or_redis_unavailable(
        cluster: RedisClusterProcess) -> None:
    """A primary lost under concurrent calls: redis-py's cluster client rediscovers the slots,
    closing connections under calls still using them, and calls wait on each other's
    rediscovery. Every call still ends within the store's deadline, answered or as
    ``RedisUnavailable`` (which the cache falls back on), never as another error (a 500)."""
    never_opens = CircuitBreaker("redis", BreakerPolicy(consecutive_failures=10**6,
                                                        min_calls=10**6))
    store = RedisStore(cluster.url, never_opens, timeout=0.25)
    loop = asyncio.get_running_loop()
    took: list[float] = []
    failed = 0

    async def caller(until: float) -> None:
        nonlocal failed
        while loop.time() < until:
            began = loop.time()
            try:  # keys on every node, and the versions hash on one
                await store.get_with_fields(f"dl:{secrets.token_hex(4)}", "dl:versions", ["a"])
            except RedisUnavailable:
                failed += 1
            took.append(loop.time() - began)

    victim = cluster.nodes[1]
    await store.get("dl:warm")
    victim.stop()
    try:
        await asyncio.gather(*(caller(loop.time() + 3) for _ in range(30)))
    finally:
        victim.start()
        await store.close()
        await asyncio.to_thread(_cluster_ok, cluster)
    assert failed > 0  # the lost node's slots failed...
    assert max(took) < store.deadline + 0.25  # ...each call within its deadline


async def test_losing_the_first_node_of_the_slots_leaves_the_others_usable(
        cluster: RedisClusterProcess) -> None:
    """redis-py's cluster client rebuilds its node list from CLUSTER SLOTS after it closed its
    connections (as it does on a "cluster down" answer), and reloads the COMMAND table from the
    first primary listed: with that node lost, every rebuild, and so every command, failed, to
    the nodes still up too."""
    store = RedisStore(cluster.url, CircuitBreaker("redis", BreakerPolicy(
        consecutive_failures=10**6, min_calls=10**6)), timeout=0.25)
    assert isinstance(store.client, RedisCluster)
    await asyncio.to_thread(_cluster_ok, cluster)  # whole again after the tests before
    slots = await asyncio.to_thread(
        subprocess.run, ["redis-cli", "-p", str(cluster.nodes[0].port), "--json", "cluster",
                         "slots"], capture_output=True, text=True, timeout=5, check=True)
    victim = next(n for n in cluster.nodes if n.port == json.loads(slots.stdout)[0][2][1])
    kept = next(k for k in (f"dc:{i}" for i in range(1000))
                if cluster.node_for(k).port != victim.port)
    assert await store.bump(kept, ["a"], "dc:chan") == [1]  # connected, the script known
    victim.stop()
    try:
        await store.client.aclose()  # what the client does itself on "cluster down"
        # The rebuild may meet the lost node once (a refused connection: nothing sent); the
        # defect was that every command failed, to the nodes still up too.
        for attempt in range(3):
            try:
                value = await store.bump(kept, ["a"], "dc:chan")
                break
            except RedisUnavailable:
                if attempt == 2:
                    raise
                await asyncio.sleep(0.2)
        assert value == [2]
        assert await store.get_fields(kept, ["a"]) == [2]
        await store.client.delete(kept)
    finally:
        victim.start()
        await store.close()
        await asyncio.to_thread(_cluster_ok, cluster)


def _cluster_ok(cluster: RedisClusterProcess) -> None:
    """Every node sees every slot served again."""
    for _ in range(300):
        infos = [subprocess.run(["redis-cli", "-p", str(n.port), "cluster", "info"],
                                capture_output=True, text=True, timeout=5, check=False).stdout
                 for n in cluster.nodes]
        if all("cluster_state:ok" in i and "cluster_slots_fail:0" in i for i in infos):
            return
        time.sleep(0.1)
    raise AssertionError("the cluster did not recover")


def test_rate_limits_count_once_across_nodes(cluster: RedisClusterProcess, pg_shop: str,
                                             tmp_path: Path) -> None:
    policy = tmp_path / "limits.toml"
    policy.write_text('[rate_limits]\naddress = "6/minute"\n')
    env = {"HEADWATER_REDIS_URL": cluster.url, "HEADWATER_CACHE_NAMESPACE":
           "rl" + secrets.token_hex(4), "HEADWATER_CONFIG": str(policy)}
    with ServerProcess(pg_shop, env=env) as a, ServerProcess(pg_shop, env=env) as b, \
            httpx.Client() as c:
        statuses = [c.get(f"{(a, b)[i % 2].url}/products?id=eq.1").status_code
                    for i in range(10)]
    assert statuses.count(200) == 6 and statuses.count(429) == 4, statuses


def test_the_rows_written_are_in_the_database(pg_shop: str) -> None:
    # The coherence tests above wrote through Headwater; the database holds the last name.
    rows = oracle.rows(pg_shop, "SELECT name FROM customers WHERE id = 3")
    assert rows and str(rows[0][0]).startswith("cluster-")


@pytest.mark.parametrize(("url", "kind", "nodes", "master"), [
    ("redis://127.0.0.1:6379/0", "single", (), ""),
    ("redis+cluster://10.0.0.1:7000,10.0.0.2:7001", "cluster",
     (("10.0.0.1", 7000), ("10.0.0.2", 7001)), ""),
    ("redis+sentinel://s1:26379,s2:26379/mymaster/2", "sentinel",
     (("s1", 26379), ("s2", 26379)), "mymaster"),
    ("rediss+cluster://:secret@[::1]:7000", "cluster", (("::1", 7000),), ""),
])
def test_redis_urls(url: str, kind: str, nodes: tuple[tuple[str, int], ...],
                    master: str) -> None:
    address = RedisAddress.parse(url)
    assert (address.kind, address.nodes, address.master) == (kind, nodes, master)


@pytest.mark.parametrize("url", ["127.0.0.1:6379", "mysql://x", "redis+cluster://",
                                 "redis+cluster://h:99999", "redis+sentinel://h:26379",
                                 "redis+sentinel://h:1/m/x"])
def test_bad_redis_urls_are_one_clear_error(url: str) -> None:
    with pytest.raises(InvalidSetting):
        RedisAddress.parse(url)


def test_a_sentinel_url_finds_the_master(tmp_path: Path, pg_shop: str) -> None:
    """``redis+sentinel://``: Headwater asks the sentinel where the master is, then caches
    through it."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server (Debian's redis-server package)")
    master = RedisNode(str(tmp_path / "master"), cluster=False).start()
    sentinel_port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                    f"sentinel monitor primary 127.0.0.1 {master.port} 1\n")
    sentinel = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        env = {"HEADWATER_REDIS_URL": f"redis+sentinel://127.0.0.1:{sentinel_port}/primary",
               "HEADWATER_CACHE_NAMESPACE": "sn" + secrets.token_hex(4)}
        with ServerProcess(pg_shop, env=env) as s, httpx.Client(base_url=s.url) as c:
            path = f"/products?id=eq.2&limit={secrets.randbelow(10**6) + 1}"
            assert c.get(path).headers["x-cache"] == "MISS"
            assert c.get(path).headers["x-cache"] == "HIT"
            ready = c.get("/-/ready").json()
            assert ready["checks"]["redis"]["status"] == "ok", ready
        # The versions hash lives on the master the sentinel named.
        import redis

        keys = redis.Redis(port=master.port).keys(f"hw:{env['HEADWATER_CACHE_NAMESPACE']}:*")
        assert keys
    finally:
        sentinel.kill()
        sentinel.wait(10)
        master.stop()
