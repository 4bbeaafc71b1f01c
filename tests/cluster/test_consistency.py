"""Read-your-writes on the rig (issue #19's evidence): a client that echoes the consistency token
sees its writes through the load balancer; without one, a node's own window covers its
principal while replay is paused, and other principals leave a replica that lags past
``max_replica_lag``; a replica stopped under load hands its reads to the primary and gets them
back when it returns.

Every read here names a row no read named before (a fresh e-mail, or a fresh ``limit``): a cache
hit answers without saying who served it, and would prove nothing about routing.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx

from tests.cluster.conftest import Rig, wait_for
from tests.faults.conftest import load

MAX_REPLICA_LAG = 1.0  # the nodes' default ``max_replica_lag``
T = TypeVar("T")


def _customer(tag: str) -> dict[str, str]:
    return {"name": tag, "email": f"{tag}@consistency.example", "created_at": "2024-01-01T00:00:00"}


def _by_email(email: str) -> dict[str, str]:
    # a filter on the written value: only the written row can answer it
    return {"email": f"eq.{email}", "select": "id,name,email"}


def _no_cookies() -> CookieJar:
    """A jar that refuses every cookie: a client for which only the header carries the token."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


@dataclass(frozen=True)
class Read:
    served_by: str  # "replica", "primary", or "" (a cache hit names no server)
    sees: bool  # the read returned the row just written, as written


def _read(r: httpx.Response, row: dict[str, Any]) -> Read:
    assert r.status_code == 200, r.text
    return Read(r.headers.get("headwater-served-by", ""), r.json() == [row])


def _split(reads: list[Read]) -> str:
    return ", ".join(f"{k or 'cache'}={v}" for k, v in sorted(Counter(r.served_by for r in reads).items()))


# --- 1. the token, echoed through the load balancer ---------------------------------------------

async def _pairs(rig: Rig, n: int, *, header: bool) -> list[Read]:
    """``n`` write-then-read pairs from one client. Each pair is a subject of its own: the node
    that took a write keeps that principal's reads on the primary for its window, so a single
    subject writing every few milliseconds would find the primary on every node, and the
    replica reads (the ones the token routes) would be few."""
    reads = []
    jar = _no_cookies() if header else CookieJar()
    async with httpx.AsyncClient(base_url=rig.lb, timeout=10, cookies=jar) as c:
        for _ in range(n):
            tag = "ryw-" + secrets.token_hex(8)
            auth = rig.bearer(tag)
            w = await c.post("/customers", json=_customer(tag),
                             headers={**auth, "Prefer": "return=representation"})
            assert w.status_code == 201, w.text
            (written,) = w.json()
            row = {k: written[k] for k in ("id", "name", "email")}
            token = {"Headwater-LSN": w.headers["headwater-lsn"]} if header else {}
            r = await c.get("/customers", params=_by_email(row["email"]), headers={**auth, **token})
            sent = r.request.headers
            if header:
                assert "cookie" not in sent, "the header-only client sent a cookie"
            else:
                assert "headwater-lsn" not in sent
                assert "hw_lsn=" in sent.get("cookie", ""), "the cookie client sent no hw_lsn"
            reads.append(_read(r, row))
    return reads


@contextlib.contextmanager
def _apply_delay(rig: Rig, delay: str) -> Iterator[None]:
    """The replica applies each commit ``delay`` late (``recovery_min_apply_delay``): still well
    within ``max_replica_lag`` and ``replica_token_wait``, but a read that reaches it right after
    the write without waiting for the token's position finds the row missing. On an idle
    loopback replica replay is quicker than the next request, and would hide that."""
    rig.sql(rig.replica_url, f"ALTER SYSTEM SET recovery_min_apply_delay = '{delay}'")
    rig.sql(rig.replica_url, "SELECT pg_reload_conf()")
    try:
        yield
    finally:
        rig.sql(rig.replica_url, "ALTER SYSTEM RESET recovery_min_apply_delay")
        rig.sql(rig.replica_url, "SELECT pg_reload_conf()")


def _echo(rig: Rig, clients: int, pairs: int, *, header: bool) -> list[Read]:
    async def run() -> list[Read]:
        done = await asyncio.gather(*(_pairs(rig, pairs, header=header) for _ in range(clients)))
        return [r for d in done for r in d]
    with _apply_delay(rig, "80ms"):
        return asyncio.run(run())


def _assert_ryw(reads: list[Read], what: str) -> None:
    split = _split(reads)
    print(f"\n{what}: {len(reads)} reads, served by {split}")
    stale = [r for r in reads if not r.sees]
    assert not stale, f"{len(stale)} of {len(reads)} reads missed their own write ({split})"
    # Reads from the primary would see the write whatever the token said: the property is only
    # exercised by the replica's share.
    replica = sum(r.served_by == "replica" for r in reads)
    assert replica >= len(reads) * 0.15, f"too few reads reached the replica to tell: {split}"


def test_echoed_header_reads_its_writes_through_the_load_balancer(whole_rig: Rig) -> None:
    _assert_ryw(_echo(whole_rig, 8, 125, header=True), "Headwater-LSN header")


def test_cookie_reads_its_writes_through_the_load_balancer(whole_rig: Rig) -> None:
    _assert_ryw(_echo(whole_rig, 2, 100, header=False), "hw_lsn cookie")


# --- 2. replay paused: the node's window, other principals, tokens ------------------------------

async def _pause_after_a_fresh_commit(rig: Rig) -> None:
    """Replay paused on the replica just after it replayed a fresh commit: its lag, as the
    nodes measure it, starts near zero and passes ``max_replica_lag`` about a second later.
    That second is when the replica still answers reads that cannot see later writes."""
    primary = await asyncpg.connect(rig.primary_url, timeout=5)
    replica = await asyncpg.connect(rig.replica_url, timeout=5)
    try:
        await primary.fetchval("SELECT txid_current()")
        target = await primary.fetchval("SELECT pg_current_wal_lsn()::text")
        deadline = time.monotonic() + 10
        while not await replica.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                                         target):
            assert time.monotonic() < deadline, "the replica does not replay"
            await asyncio.sleep(0.005)
        await replica.execute("SELECT pg_wal_replay_pause()")
    finally:
        await primary.close()
        await replica.close()


def _paused(rig: Rig, scenario: Callable[[], Awaitable[T]]) -> T:
    """``scenario`` run with replay paused (see above), resumed whatever happens."""
    async def run() -> T:
        await _pause_after_a_fresh_commit(rig)
        return await scenario()
    try:
        return asyncio.run(run())
    finally:
        rig.sql(rig.replica_url, "SELECT pg_wal_replay_resume()")


async def _replica_lag(rig: Rig) -> float:
    conn = await asyncpg.connect(rig.replica_url, timeout=5)
    try:
        return float(await conn.fetchval(
            "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())"))
    finally:
        await conn.close()


def _clients(base: str) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    """A client for writes, and one for reads that opens a connection per request: with
    several in flight, every worker of a node accepts some."""
    return (httpx.AsyncClient(base_url=base, timeout=10, cookies=_no_cookies()),
            httpx.AsyncClient(base_url=base, timeout=10, cookies=_no_cookies(),
                              limits=httpx.Limits(max_keepalive_connections=0)))


async def _write(c: httpx.AsyncClient, tag: str, auth: dict[str, str]) -> tuple[dict[str, Any], str]:
    w = await c.post("/customers", json=_customer(tag),
                     headers={**auth, "Prefer": "return=representation"})
    assert w.status_code == 201, w.text
    (written,) = w.json()
    return {k: written[k] for k in ("id", "name", "email")}, w.headers["headwater-lsn"]


async def _burst(c: httpx.AsyncClient, row: dict[str, Any], who: list[dict[str, str]]) -> list[Read]:
    """One read of ``row`` per header set, all at once."""
    async def one(headers: dict[str, str]) -> Read:
        fresh = str(secrets.randbelow(10**9) + 1)
        r = await c.get("/customers", params={**_by_email(row["email"]), "limit": fresh},
                        headers=headers)
        return _read(r, row)
    return list(await asyncio.gather(*(one(h) for h in who)))


def test_own_window_without_token_while_replay_paused(whole_rig: Rig) -> None:
    rig = whole_rig
    node = rig.nodes[0]  # the window is the node's own: write and read on the same node
    me = "window-" + secrets.token_hex(6)
    mine_auth = rig.bearer(me)
    other = rig.bearer("other-" + secrets.token_hex(6))
    writer, reader = _clients(node)

    async def scenario() -> tuple[list[Read], list[Read]]:
        async with writer, reader:
            row, _ = await _write(writer, me, mine_auth)
            mine: list[Read] = []
            theirs: list[Read] = []
            for _ in range(8):
                # Someone else's read alongside: served by the replica while its lag is under
                # the bound, it shows the window (not a lagging replica) kept mine right. Mine
                # in bursts, for every worker to serve some within that second.
                got = await _burst(reader, row, [other, *[mine_auth] * 8])
                theirs.append(got[0])
                mine.extend(got[1:])
            return mine, theirs

    mine, theirs = _paused(rig, scenario)
    print(f"\nown reads {_split(mine)}; others' {_split(theirs)}")
    assert all(r.sees for r in mine), \
        f"own reads missed the write: {_split(mine)}, {sum(not r.sees for r in mine)} stale"
    assert any(r.served_by == "replica" for r in theirs), \
        f"the replica answered no one during the pause (lag past the bound already?): {_split(theirs)}"
    assert not any(r.sees for r in theirs if r.served_by == "replica"), "replay was not paused"


def test_other_principals_and_tokens_while_replay_paused(whole_rig: Rig) -> None:
    rig = whole_rig
    writer_sub = "writer-" + secrets.token_hex(6)
    reader_auth = rig.bearer("reader-" + secrets.token_hex(6))
    writer, reader = _clients(rig.lb)

    async def scenario() -> tuple[list[Read], list[Read], list[Read], list[dict[str, Any]]]:
        async with writer, reader:
            row, token = await _write(writer, writer_sub, rig.bearer(writer_sub))
            with_token = {**reader_auth, "Headwater-LSN": token}
            plain: list[Read] = []
            tokened: list[Read] = []
            for _ in range(8):
                got = await _burst(reader, row, [reader_auth, with_token] * 2)
                plain += got[0::2]
                tokened += got[1::2]
            # Past the bound, with a check interval or two for every worker's monitor to see
            # it (the replica's own clock and replay timestamp: no guess at the node's view).
            while await _replica_lag(rig) <= MAX_REPLICA_LAG + 1.0:
                await asyncio.sleep(0.2)
            later = await _burst(reader, row, [reader_auth] * 8)
        ready = []
        for node in rig.nodes:
            async with _clients(node)[1] as direct:
                later += await _burst(direct, row, [reader_auth] * 8)
                ready.append((await direct.get("/-/ready")).json()["checks"]["replicas"]["replica1"])
        return plain, tokened, later, ready

    plain, tokened, later, ready = _paused(rig, scenario)
    print(f"\nduring the pause: plain reads {_split(plain)}; token reads {_split(tokened)}; "
          f"past the bound {_split(later)}")
    # The replica cannot replay past the token: the primary answers once the wait is over.
    assert all(r.sees and r.served_by == "primary" for r in tokened), _split(tokened)
    # Before the lag passes the bound a stale read is allowed; without one at least, the token
    # reads above would have gone to the primary whatever they presented.
    assert any(r.served_by == "replica" for r in plain), \
        f"the replica answered no plain read during the pause: {_split(plain)}"
    assert not any(r.sees for r in plain if r.served_by == "replica"), "replay was not paused"
    assert all(r.sees and r.served_by == "primary" for r in later), \
        f"{_split(later)}, {sum(not r.sees for r in later)} stale"
    assert all(r["status"] == "lagging" and r.get("replay_paused") for r in ready), ready


# --- 3. the replica stopped under load ----------------------------------------------------------

def _haproxy_stats(rig: Rig) -> dict[str, dict[str, int]]:
    """HAProxy's counters per node: 5xx responses, failed responses and connections, and
    retries (``retry-on ... 503`` sends a node's 503 to the other node: the client never sees
    it)."""
    lines = rig.haproxy("show stat").splitlines()
    names = lines[0].lstrip("# ").split(",")
    stats = {}
    for line in lines[1:]:
        row = dict(zip(names, line.split(","), strict=False))
        if row.get("pxname") == "headwater" and row.get("svname", "").startswith("node"):
            stats[row["svname"]] = {k: int(row[k] or 0) for k in
                                    ("hrsp_2xx", "hrsp_5xx", "eresp", "econ", "wretr", "wredis")}
    return stats


def _served_by(base: str) -> str:
    r = httpx.get(base + f"/products?id=eq.3&select=id&limit={secrets.randbelow(10**9) + 1}", timeout=10)
    assert r.status_code == 200, r.text
    return str(r.headers.get("headwater-served-by", ""))


def _replica_serves(node: str) -> bool:
    """Reads on fresh connections (any worker) all served by the replica: every worker of the
    node has it usable, breaker closed."""
    return all(_served_by(node) == "replica" for _ in range(6))


class _InFlight(threading.Thread):
    """Slow reads (three embeddings deep) straight at each node, three at a time per node, for
    ``seconds``: some are running on the replica when it stops, and none has HAProxy to retry
    it elsewhere if the node fails it."""

    def __init__(self, nodes: tuple[str, ...], seconds: float) -> None:
        super().__init__(daemon=True)
        self.nodes = nodes
        self.seconds = seconds
        #: (when it was sent, epoch seconds; status, 0 for no response; who served it)
        self.outcomes: list[tuple[float, int, str]] = []

    def run(self) -> None:
        asyncio.run(self._clients())

    async def _clients(self) -> None:
        until = time.monotonic() + self.seconds

        async def client(base: str) -> None:
            async with httpx.AsyncClient(base_url=base, timeout=10) as c:
                while time.monotonic() < until:
                    path = ("/orders?select=*,customer:customers(*),order_items(*,product:products(*))"
                            f"&order=id&limit=10&offset={secrets.randbelow(400)}"
                            f"&id=gt.-{secrets.randbelow(10**9) + 1}")  # never cached
                    sent = time.time()
                    try:
                        r = await c.get(path)
                    except httpx.HTTPError as exc:
                        self.outcomes.append((sent, 0, type(exc).__name__))
                    else:
                        self.outcomes.append((sent, r.status_code,
                                              r.headers.get("headwater-served-by", "")))

        await asyncio.gather(*(client(n) for n in self.nodes for _ in range(3)))


def test_replica_stopped_under_load_hands_reads_to_the_primary(whole_rig: Rig, tmp_path: Path) -> None:
    rig = whole_rig
    for node in rig.nodes:
        wait_for(partial(_replica_serves, node), 30, f"reads on {node} go to the replica")
    before = _haproxy_stats(rig)
    inflight = _InFlight(rig.nodes, 3.0)
    during: list[str] = []

    def stop() -> None:
        rig.script("stop", "replica")

    def probe() -> None:
        during.extend(_served_by(n) for n in rig.nodes for _ in range(4))

    # Reads only: the anonymous load is one principal, and a write would keep every one of its
    # reads on the primary for the node's window, replica or not.
    run = load(rig.lb, tmp_path / "load.jsonl", rate=100, duration=10,
               mix="uncached=5,other_table=3,cached=2",
               timeline=[(2, "in-flight", inflight.start), (3, "stop", stop), (7, "probe", probe)])
    inflight.join(30)
    after = _haproxy_stats(rig)
    statuses = Counter(s.status for s in run.samples)
    direct = Counter((status, by) for _, status, by in inflight.outcomes)
    # sent while the replica was the one serving reads: running on it, or queued for it
    early = [o for o in inflight.outcomes if o[0] < run.marks["stop:begin"]]
    print(f"\nreplica stopped at {run.offset('stop:begin'):.1f}s: load statuses {dict(statuses)}; "
          f"slow reads on the nodes {dict(direct)}, {len(early)} sent before the stop "
          f"({sum(by == 'primary' for *_, by in early)} of them answered by the primary); "
          f"HAProxy before {before} after {after}")
    assert run.between(run.offset("stop:done"), 11), "no load after the stop"
    assert set(statuses) == {200}, statuses
    # A read that failed on the stopping replica is answered by the primary (a fallback).
    assert early, "no slow read was sent before the stop"
    assert {status for status, _ in direct} == {200}, direct
    for name, b in before.items():
        delta = {k: after[name][k] - v for k, v in b.items()}
        # a node's failure retried on the other node counts as a retry, not as a 5xx
        assert delta["hrsp_5xx"] == delta["eresp"] == delta["econ"] == delta["wretr"] == 0, \
            (name, delta)
    assert during and set(during) == {"primary"}, during

    rig.script("up")
    # replayed past the primary's position again: usable, and the reads come back to it
    for node in rig.nodes:
        wait_for(partial(_replica_serves, node), 30, f"reads on {node} return to the replica",
                 every=0.3)
