"""The cache seen from outside: headers, exact invalidation across nodes and workers,
single-flight, bounded lag, and Redis failing underneath."""

from __future__ import annotations

import asyncio
import gzip
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import brotli
import httpx
import pytest
import zstandard

from headwater.testing import ServerProcess
from tests.conftest import Served
from tests.integration import oracle

REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port",
               "6379", "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
               "--logfile", "/var/log/redis/ci.log"]


def queries(client: httpx.Client) -> float:
    m = re.search(r"^headwater_db_queries_total (\S+)$", client.get("/-/metrics").text, re.M)
    assert m
    return float(m[1])


@pytest.fixture(scope="module")
def pg_db(fresh_pg_database: str) -> str:
    return fresh_pg_database


@pytest.fixture(scope="module")
def strict_pair(demo_postgres: str, redis_url: str) -> Iterator[tuple[str, str]]:
    """Two nodes on one PostgreSQL database, sharing Redis in strict mode (one worker each:
    single flight is per process, and the query counts read are the node's own)."""
    env = {"HEADWATER_REDIS_URL": redis_url, "HEADWATER_MAX_INFLIGHT": "1000",
           "HEADWATER_WORKERS": "1",
           "HEADWATER_CACHE_NAMESPACE": "t" + secrets.token_hex(4)}
    with ExitStack() as stack:
        a = stack.enter_context(ServerProcess(demo_postgres, env=env))
        b = stack.enter_context(ServerProcess(demo_postgres, env=env))
        yield a.url, b.url


def test_miss_hit_etag_and_304(served_rw: Served) -> None:
    with httpx.Client(base_url=served_rw.url) as c:
        path = f"/products?select=id,name&id=lt.6&order=id&limit={secrets.randbelow(10**6) + 10}"
        first = c.get(path)
        assert first.headers["x-cache"] == "MISS"
        second = c.get(path)
        assert second.headers["x-cache"] == "HIT"
        assert second.content == first.content
        tag = first.headers["etag"]
        assert tag == second.headers["etag"]
        assert tag.startswith('"')
        assert "Accept" in second.headers["vary"]
        assert second.headers["cache-control"]
        r = c.get(path, headers={"If-None-Match": tag})
        assert (r.status_code, r.content) == (304, b"")
        # the same query written another way is the same entry
        again = c.get(path.replace("select=id,name", "select=id,%20name"))
        assert again.headers["x-cache"] == "HIT"
        # a different query with a known ETag also answers 304 on its miss
        other = "/products?select=id,name&id=lt.6&order=id&limit=999999999"
        tag2 = c.get(other).headers["etag"]
        c.patch("/products?id=eq.999999", json={"name": "x"})  # touches nothing
        assert c.get(other, headers={"If-None-Match": tag2}).status_code == 304


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_compression(served_rw: Served, encoding: str) -> None:
    with httpx.Client(base_url=served_rw.url) as c:
        plain = c.get("/products?limit=50", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        r = c.get("/products?limit=50", headers={"Accept-Encoding": encoding})
        assert r.headers["content-encoding"] == encoding
        raw = r.read() if encoding == "gzip" else None
        del raw
        small = c.get("/products?select=id&limit=1", headers={"Accept-Encoding": encoding})
        assert "content-encoding" not in small.headers
    # decode by hand, without httpx's transparent decoding
    with httpx.Client(base_url=served_rw.url) as c, c.stream(
            "GET", "/products?limit=50", headers={"Accept-Encoding": encoding}) as r:
        body = b"".join(r.iter_raw())
    decoded = {"gzip": gzip.decompress, "br": brotli.decompress,
               "zstd": lambda b: zstandard.ZstdDecompressor().decompress(b)}[encoding](body)
    assert decoded == plain.content


def test_embedded_table_write_invalidates(served_rw: Served) -> None:
    with httpx.Client(base_url=served_rw.url) as c:
        path = "/orders?select=id,order_items(id,quantity)&id=eq.3"
        c.get(path)
        assert c.get(path).headers["x-cache"] == "HIT"
        item = c.get(path).json()[0]["order_items"][0]
        r = c.patch(f"/order_items?id=eq.{item['id']}", json={"quantity": item["quantity"] + 7})
        assert r.status_code == 204
        after = c.get(path)
        assert after.headers["x-cache"] == "MISS"
        items = {i["id"]: i["quantity"] for i in after.json()[0]["order_items"]}
        assert items[item["id"]] == item["quantity"] + 7


def test_strict_two_nodes_never_stale(strict_pair: tuple[str, str], demo_postgres: str) -> None:
    a_url, b_url = strict_pair
    item = oracle.rows(demo_postgres, "SELECT id, order_id FROM order_items ORDER BY id "
                       "LIMIT 1")[0]
    path = f"/orders?select=id,order_items(id,quantity)&id=eq.{item[1]}"
    stale = 0
    hits = 0
    with httpx.Client(base_url=a_url) as a, httpx.Client(base_url=b_url) as b:
        b.get(path)
        for i in range(1, 1001):
            assert a.patch(f"/order_items?id=eq.{item[0]}", json={"quantity": i}).status_code \
                == 204
            r = b.get(path)
            got = {x["id"]: x["quantity"] for x in r.json()[0]["order_items"]}[item[0]]
            stale += got != i
            r2 = b.get(path)  # now it may hit
            hits += r2.headers["x-cache"] == "HIT"
    assert stale == 0
    assert hits > 900


async def _burst(url: str, path: str, n: int) -> list[int]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as c:
        rs = await asyncio.gather(*(c.get(path) for _ in range(n)))
    return [r.status_code for r in rs]


def test_single_flight_after_invalidation(strict_pair: tuple[str, str]) -> None:
    a_url, _ = strict_pair
    path = "/orders?select=*,order_items(*)&customer_id=eq.2"
    with httpx.Client(base_url=a_url) as a:
        a.get(path)
        a.patch("/orders?id=eq.-1", json={"note": "x"})  # matches nothing: no invalidation
        a.patch("/customers?id=eq.2", json={"country": "SE"})  # customers is not in the plan
        a.patch("/order_items?id=eq.1", json={"quantity": 3})
        before = queries(a)
        statuses = asyncio.run(_burst(a_url, path, 200))
        assert statuses == [200] * 200
        assert queries(a) - before <= 1


def test_bounded_mode_lag(demo_postgres: str, redis_url: str) -> None:
    env = {"HEADWATER_REDIS_URL": redis_url, "HEADWATER_CACHE_MODE": "bounded",
           "HEADWATER_CACHE_BOUNDED_LAG_MS": "100",
           "HEADWATER_CACHE_NAMESPACE": "b" + secrets.token_hex(4)}
    item = oracle.rows(demo_postgres, "SELECT id, order_id FROM order_items ORDER BY id DESC "
                       "LIMIT 1")[0]
    path = f"/orders?select=id,order_items(id,quantity)&id=eq.{item[1]}"
    lags: list[float] = []
    with ServerProcess(demo_postgres, env=env) as a, ServerProcess(demo_postgres, env=env) as b, \
            httpx.Client(base_url=a.url) as ca, httpx.Client(base_url=b.url) as cb:
        time.sleep(0.3)  # let both subscribe
        for i in range(1, 201):
            cb.get(path)
            ca.patch(f"/order_items?id=eq.{item[0]}", json={"quantity": i}).raise_for_status()
            written = time.perf_counter()
            while True:
                got = {x["id"]: x["quantity"] for x in cb.get(path).json()[0]["order_items"]}
                if got[item[0]] == i:
                    lags.append(time.perf_counter() - written)
                    break
                assert time.perf_counter() - written < 2, "bounded mode lagged beyond 2 s"
    lags.sort()
    worst, p99 = lags[-1] * 1000, lags[int(len(lags) * 0.99) - 1] * 1000
    print(f"\nbounded mode: worst lag {worst:.1f} ms, p99 {p99:.1f} ms, median "
          f"{lags[len(lags) // 2] * 1000:.2f} ms over {len(lags)} writes")
    assert p99 < 100 + 150  # the bound, plus scheduling slack on a 2-core machine
    # One write in 200 may meet a stall of the whole (shared, two-core) machine; a missed
    # invalidation would instead show as the 2 s ``ttl``-bound wait above.
    assert worst < 1000


def test_embedded_workers_stay_coherent(demo_sqlite: str, tmp_path_factory: pytest.TempPathFactory,
                                        ) -> None:
    import shutil

    path_db = tmp_path_factory.mktemp("workers") / "w.db"
    shutil.copy(demo_sqlite.removeprefix("sqlite:///"), path_db)
    url = f"sqlite:///{path_db}"
    stale = 0
    with ServerProcess(url, args=("--workers", "2")) as s:
        for i in range(1, 301):
            # New connections spread over both workers (SO_REUSEPORT).
            with httpx.Client(base_url=s.url) as w:
                w.patch("/products?id=eq.7", json={"price": i}).raise_for_status()
            with httpx.Client(base_url=s.url) as r:
                stale += r.get("/products?select=price&id=eq.7").json()[0]["price"] != i
                r.get("/products?select=price&id=eq.7")
    assert stale == 0


def test_redis_down_bypasses_and_recovers(demo_postgres: str, redis_url: str) -> None:
    env = {"HEADWATER_REDIS_URL": redis_url,
           "HEADWATER_CACHE_NAMESPACE": "d" + secrets.token_hex(4)}
    path = "/products?select=id,name&id=eq.9"
    with ServerProcess(demo_postgres, env=env) as s, httpx.Client(base_url=s.url) as c:
        c.get(path)
        assert c.get(path).headers["x-cache"] == "HIT"
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "shutdown", "nosave"], check=False,
                       capture_output=True)
        try:
            failures = 0
            for i in range(40):
                r = c.get(path)
                failures += r.status_code != 200
                if i == 20:
                    # a write during the outage must not leave stale entries behind
                    assert c.patch("/products?id=eq.9", json={"name": "during outage"}) \
                        .status_code == 204
            assert failures == 0
            assert c.get(path).json() == [{"id": 9, "name": "during outage"}]
            ready = c.get("/-/ready").json()
            assert ready["status"] == "degraded"
            assert ready["checks"]["redis"]["status"] == "unavailable"
        finally:
            subprocess.run(REDIS_START, check=True, capture_output=True)
        deadline = time.monotonic() + 15
        while True:
            r = c.get(path)
            assert r.json() == [{"id": 9, "name": "during outage"}]
            if r.headers.get("x-cache") == "HIT":
                break
            assert time.monotonic() < deadline, "cache did not come back after Redis returned"
            time.sleep(0.2)
        metrics = c.get("/-/metrics").text
        assert 'headwater_breaker_state{dependency="redis"} 0.0' in metrics
        assert 'headwater_cache_requests_total{result="hit",tier="l1"}' in metrics


def test_a_cached_view_follows_writes_to_the_tables_under_it(tmp_path: Path) -> None:
    """customer_totals counts a customer's orders: a new order must show in the next read of
    the view (seen failing first: a HIT with the old count). A server without hooks, whose
    writes name exactly the tables they wrote."""
    from headwater.demo.dataset import build_demo

    db = f"sqlite:///{tmp_path / 'views.db'}"
    asyncio.run(build_demo(db, scale=0.02))
    with ServerProcess(db) as s, httpx.Client(base_url=s.url) as c:
        path = "/customer_totals?customer_id=eq.9"
        before = c.get(path).json()[0]["order_count"]
        assert c.get(path).headers["x-cache"] == "HIT"
        r = c.post("/orders", json={"customer_id": 9, "ordered_at": "2024-05-01T10:00:00",
                                    "total": 1000})
        assert r.status_code == 201, r.text
        assert c.get(path).json()[0]["order_count"] == before + 1
        assert c.get(path).headers["x-cache"] == "HIT"  # cached again, at its new version
