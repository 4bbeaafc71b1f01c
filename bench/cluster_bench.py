"""Cluster part of bench/run.py (``--parts cluster``): Headwater on the local cluster rig of
scripts/cluster.sh (a streaming replica of the local PostgreSQL server, a three-node Redis
Cluster, two Headwater nodes, HAProxy in front), on the rig's database (the demo data).

Two questions, with Headwater's defaults unless a row is labelled:

- **lb**, what the load balancer costs: wrk against one node directly, against HAProxy with
  both nodes behind it, and against HAProxy with the second node drained (the same single
  node as the direct row, plus HAProxy). The same requests in every row: ``id-hot`` (100
  ids, L1 hits), ``id-random`` (random ids over every order item: hits and misses, as a
  user's) and ``id-miss`` (every query string new, bench/cold.lua: every read misses the cache
  and reads from the replica). On one machine the nodes share its cores, so two nodes cannot
  beat one: HAProxy's share is its CPU per request, and the latency it adds.
- **replica**, replica reads vs primary reads: reads that miss the cache, from a node with
  the replica (``HEADWATER_REPLICA_URLS``, as the rig's nodes have it) and from a node on the
  same database without one, both started here as run.py starts servers
  (``python -m headwater serve URL``) with the rig's environment: ``id-miss`` with the
  defaults, and ``id-random`` with ``HEADWATER_CACHE_ENABLED=false``. A fresh read from the
  replica node must answer ``Headwater-Served-By: replica``, and its
  ``headwater_reads_served`` must count the run's reads as the replica's.

Every row gives each process group's CPU per request: the nodes that served it, HAProxy, the
PostgreSQL primary's work for the rig's database (its background processes and the backends
connected to that database), the replica, Redis. ``other CPU`` is everything else on the
machine (other rigs, tests): the noise.

The rig is the one ``HW_CLUSTER_STATE``, ``HW_CLUSTER_PORT_OFFSET`` and ``HW_CLUSTER_DB`` name,
as for the script. If no part of it runs, the part brings it up and takes it down at the end;
a rig that was up (or partly up) is completed and left up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import cache_bench
import httpx
import run as R

SCRIPT = R.REPO_DIR / "scripts" / "cluster.sh"
RANDOM_SCRIPT = R.BENCH_DIR / "random.lua"
DB = "cluster"  # the part's measurements are those of this db
SERVER = "uvicorn"  # the rig's nodes are `headwater serve`, so are the part's own
ITEM = "/order_items?id=eq.{id}"
MISS = ITEM + "&limit={n}"
HOT_IDS = 100
READY_TIMEOUT = 60.0
#: wrk connections at most: every worker's pool grows toward the requests it has in flight
#: (up to ``pool_max_size``, 20) and keeps its connections for minutes, so at -c32 the rig's
#: four workers and the part's own node exceed the replica's max_connections (100) and crowd a
#: primary that other work on the machine shares.
CONNECTIONS = 16
GROUPS = ("nodes", "haproxy", "primary", "replica", "redis")
TOKEN_ENV = "HW_BENCH_METRICS_TOKEN"
SERVED_BY_TARGET = 0.95  # the replica node: at least this share of its reads from the replica


# --- the rig --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rig:
    """scripts/cluster.sh's rig, as its environment variables place it."""

    state: Path
    offset: int
    db: str
    amqp_url: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Rig:
        return cls(Path(env.get("HW_CLUSTER_STATE", "/tmp/headwater-cluster")),
                   int(env.get("HW_CLUSTER_PORT_OFFSET", "0") or 0),
                   env.get("HW_CLUSTER_DB", "cluster_demo") or "cluster_demo",
                   env.get("HW_CLUSTER_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))

    @property
    def node_ports(self) -> tuple[int, int]:
        return 3001 + self.offset, 3002 + self.offset

    @property
    def lb_port(self) -> int:
        return 8080 + self.offset

    @property
    def redis_ports(self) -> tuple[int, int, int]:
        return 7000 + self.offset, 7001 + self.offset, 7002 + self.offset

    @property
    def primary_url(self) -> str:
        return f"{R.PG_SERVER_URL}/{self.db}"

    @property
    def replica_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{5433 + self.offset}/{self.db}"

    @property
    def redis_url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.redis_ports)

    @staticmethod
    def url(port: int) -> str:
        return f"http://{R.HOST}:{port}"

    def script(self, *args: str, timeout: float = 600) -> str:
        env = {**os.environ, "HW_CLUSTER_STATE": str(self.state),
               "HW_CLUSTER_PORT_OFFSET": str(self.offset), "HW_CLUSTER_DB": self.db,
               "PYTHON": sys.executable}
        done = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise R.BenchError(f"scripts/cluster.sh {' '.join(args)} failed ({done.returncode}): "
                               f"{(done.stderr or done.stdout).strip()[-600:]}")
        return done.stdout

    def pid(self, name: str) -> int | None:
        """The live process a PID file of the rig names, else None."""
        try:
            pid = int((self.state / name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:  # alive, another user's
            pass
        return pid

    def pid_files(self) -> dict[str, str]:
        return {"replica": "replica/data/postmaster.pid", "haproxy": "haproxy.pid",
                **{f"redis {p}": f"redis-{p}.pid" for p in self.redis_ports},
                **{f"node {p}": f"node-{p}.pid" for p in self.node_ports}}

    def alive(self) -> dict[str, bool]:
        return {part: self.pid(f) is not None for part, f in self.pid_files().items()}

    def node_pid(self, port: int) -> int:
        pid = self.pid(f"node-{port}.pid")
        if pid is None:
            raise R.BenchError(f"cluster: the rig's node {port} is not running")
        return pid

    def haproxy(self, command: str) -> str:
        """One command on HAProxy's runtime API (the rig's admin socket)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.state / "haproxy.sock"))
            s.sendall(command.encode() + b"\n")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return out.decode(errors="replace")

    def haproxy_up(self) -> set[str]:
        """The servers HAProxy holds as running (``node3001``...)."""
        up = set()
        for line in self.haproxy("show servers state headwater").splitlines()[2:]:
            fields = line.split()
            if len(fields) > 5 and fields[5] == "2":  # SRV_ST_RUNNING
                up.add(fields[3])
        return up

    def settings_text(self) -> str:
        return (self.state / "headwater.toml").read_text()

    def jwt_secret(self) -> str:
        return (self.state / "jwt-secret").read_text().strip()


def replicas_ok(url: str) -> bool:
    """The node at ``url`` reads from its replicas: every one ``ok`` in ``/-/ready``."""
    try:
        body = httpx.get(url + "/-/ready", timeout=5.0).json()
        states = body["checks"]["replicas"]
        return bool(states) and all(r.get("status") == "ok" for r in states.values())
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
        return False


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise R.BenchError(f"cluster: not within {timeout:.0f}s: {what}")
        time.sleep(0.2)


def nudge_replay(rig: Rig) -> None:
    """A write to replay: a replica that has replayed nothing since it started reports no lag
    (not usable) until the primary commits something."""
    sql(rig.primary_url, "select txid_current()")


def wait_whole(rig: Rig) -> None:
    nudge_replay(rig)
    for url in map(rig.url, rig.node_ports):
        wait_for(f"{url} reads from the replica", functools.partial(replicas_ok, url))
    wanted = {f"node{p}" for p in rig.node_ports}
    wait_for("HAProxy sends to both nodes", lambda: rig.haproxy_up() == wanted)


@contextlib.contextmanager
def drained(rig: Rig, port: int) -> Iterator[None]:
    """HAProxy sends no new request to the node on ``port`` meanwhile."""
    rig.haproxy(f"set server headwater/node{port} state drain")
    try:
        time.sleep(1.0)  # the connections it holds to the node finish their requests
        yield
    finally:
        rig.haproxy(f"set server headwater/node{port} state ready")


# --- PostgreSQL -------------------------------------------------------------------------------


def sql(url: str, statement: str) -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return await conn.fetchval(statement)
        finally:
            await conn.close()
    return asyncio.run(go())


def parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2:].split()[1])


def postmaster_of(url: str) -> int:
    """The PostgreSQL server's postmaster: the parent of a backend of ours."""
    async def go() -> int:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return parent_pid(int(await conn.fetchval("select pg_backend_pid()")))
        finally:
            await conn.close()
    return asyncio.run(go())


async def _dataset(rig: Rig) -> tuple[R.Dataset, R.IdRange]:
    stats = await R.pg_stats(rig.primary_url)
    if stats is None:
        raise R.BenchError(f"cluster: no demo tables in {rig.primary_url}")
    conn = await asyncpg.connect(rig.primary_url, timeout=10)
    try:
        items = R._range(await conn.fetchrow(R.RANGE_SQL.format(table="order_items")))
    finally:
        await conn.close()
    ds = R.Dataset("postgres", rig.primary_url, 0.0, stats.counts, stats.orders, stats.customers,
                   stats.busiest_customer, database=rig.db)
    return ds, items


# --- process groups ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pid:
    """A process wrk's requests reach that the bench did not start (a rig node, HAProxy)."""

    pid: int


def trees(*pids: int) -> Callable[[], list[int]]:
    return lambda: [p for pid in pids for p in R.process_tree(pid)]


def pg_group(postmaster: int, database: str | None) -> Callable[[], set[int]]:
    """A PostgreSQL server's processes working for ``database``: its background processes and
    the backends connected to it (``None``: every process of the server)."""
    def pids() -> set[int]:
        out = set()
        for pid in R.process_tree(postmaster):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace").strip()
            except OSError:
                continue
            if database is None or R._ours_pg("pg:" + title, database):
                out.add(pid)
        return out
    return pids


@dataclass(frozen=True)
class Groups:
    """The rig's processes, as the table's CPU columns group them."""

    rig: Rig
    primary: int  # postmasters
    replica: int

    @classmethod
    def of(cls, rig: Rig) -> Groups:
        replica = rig.pid("replica/data/postmaster.pid")
        if replica is None:
            raise R.BenchError("cluster: the rig's replica is not running")
        return cls(rig, postmaster_of(rig.primary_url), replica)

    def named(self, serving: Sequence[int]) -> dict[str, Callable[[], Collection[int]]]:
        """``serving``: the nodes (supervisor pids) that serve the row's requests."""
        redis = [p for p in (self.rig.pid(f"redis-{port}.pid") for port in self.rig.redis_ports)
                 if p is not None]
        haproxy = self.rig.pid("haproxy.pid")
        return {"nodes": trees(*serving),
                "haproxy": trees(haproxy) if haproxy is not None else list,
                "primary": pg_group(self.primary, self.rig.db),
                "replica": pg_group(self.replica, None),
                "redis": trees(*redis)}


def idle_nodes(rig: Rig, serving: Sequence[int]) -> list[int]:
    """The rig's nodes that serve none of the row's requests (health checks, replica lag
    samples): the bench's, so not in ``other CPU``, nor in the nodes' column."""
    pids = [rig.pid(f"node-{p}.pid") for p in rig.node_ports]
    return [p for pid in pids if pid is not None and pid not in serving
            for p in R.process_tree(pid)]


# --- rows -----------------------------------------------------------------------------------


@dataclass
class ClusterRow:
    part: str  # lb | replica
    setup: str  # what wrk talks to
    config: str  # "defaults" or what the row turns off
    m: R.Measurement
    served_by: str = "-"  # who answered a fresh read (and, with metrics, the run's share)


@dataclass
class Part:
    """One run of the part: what it measures with, and what it found."""

    rig: Rig
    ds: R.Dataset
    items: R.IdRange
    groups: Groups
    opts: R.Options
    results: R.Results
    cold: cache_bench.ColdBase
    rows: list[ClusterRow] = field(default_factory=list)

    def loads(self, url: str) -> dict[str, Callable[[float], str]]:
        """The scenarios, as wrk runs against ``url``."""
        items, conns = self.items, connections(self.opts)

        def hot(seconds: float) -> str:
            return R.wrk_script(url, RANDOM_SCRIPT, [ITEM, str(items.first),
                                                     str(items.first + HOT_IDS - 1)],
                                seconds, conns)

        def random(seconds: float) -> str:
            return R.wrk_script(url, RANDOM_SCRIPT, [ITEM, str(items.first), str(items.last)],
                                seconds, conns)

        def miss(seconds: float) -> str:
            return R.wrk_script(url, cache_bench.COLD_SCRIPT,
                                [MISS, str(items.first), str(items.last), str(self.cold.next())],
                                seconds, conns)

        return {"id-hot": hot, "id-random": random, "id-miss": miss}

    def fresh_read(self, url: str) -> str:
        """``Headwater-Served-By`` of a read no cache holds (``-``: none sent)."""
        path = MISS.replace("{id}", str(self.items.mid)).replace("{n}", str(self.cold.next()))
        r = httpx.get(url + path, timeout=10.0)
        if r.status_code != 200:
            raise R.BenchError(f"GET {path} -> HTTP {r.status_code}: {r.text[:200]}")
        return str(r.headers.get("headwater-served-by", "-"))

    def measure(self, part: str, setup: str, config: str, scenario: str, target: R.Served,
                url: str, serving: Sequence[int]) -> ClusterRow:
        template = {"id-hot": ITEM, "id-random": ITEM, "id-miss": MISS}[scenario]
        m = R.Measurement(DB, SERVER, f"{part}: {setup} ({config})", scenario, template)
        R.record(self.results, R.measure_load(
            target, m, self.loads(url)[scenario], self.opts, self.rig.db,
            duration=self.opts.part_duration, extra_pids=idle_nodes(self.rig, serving),
            groups=self.groups.named(serving)))
        row = ClusterRow(part, setup, config, m)
        self.rows.append(row)
        return row

    def problem(self, message: str) -> None:
        R.log("  " + message)
        self.results.problems.append("cluster: " + message)


LB_SCENARIOS = ("id-hot", "id-random", "id-miss")


def bench_lb(p: Part) -> None:
    rig = p.rig
    first, second = rig.node_ports
    node, lb = rig.url(first), rig.url(rig.lb_port)
    node_pid, second_pid = rig.node_pid(first), rig.node_pid(second)
    haproxy = rig.pid("haproxy.pid")
    if haproxy is None:
        raise R.BenchError("cluster: the rig's HAProxy is not running")
    setups: list[tuple[str, str, int, list[int], Callable[[], contextlib.AbstractContextManager[
        None]]]] = [
        (f"node {first}", node, node_pid, [node_pid], contextlib.nullcontext),
        ("haproxy, 2 nodes", lb, haproxy, [node_pid, second_pid], contextlib.nullcontext),
        ("haproxy, 1 node", lb, haproxy, [node_pid], lambda: drained(rig, second)),
    ]
    for setup, url, pid, serving, around in setups:
        R.log(f"cluster lb: {setup} ({url})")
        with around():
            served = p.fresh_read(url)
            if served != "replica":
                p.problem(f"lb {setup}: a fresh read answered Headwater-Served-By: {served} "
                          f"(the rig's nodes read from the replica)")
            for scenario in LB_SCENARIOS:
                row = p.measure("lb", setup, "defaults", scenario, Pid(pid), url, serving)
                row.served_by = served if scenario == "id-miss" else "-"


def metrics_served(url: str, token: str) -> dict[str, float]:
    """``headwater_reads_served`` of a node, by server (all its workers)."""
    r = httpx.get(url + "/-/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10.0)
    if r.status_code != 200:
        raise R.BenchError(f"GET /-/metrics -> HTTP {r.status_code}: {r.text[:200]}")
    return {server: float(n) for server, n in re.findall(
        r'^headwater_reads_served_total\{server="([^"]+)"\} (\S+)$', r.text, re.M)}


def node_settings(rig: Rig) -> Path:
    """The rig's settings file, plus a metrics token (the rig's has none, so its nodes answer
    ``/-/metrics`` to nobody): the part's own nodes report who served their reads."""
    text = rig.settings_text()
    line = f'metrics_token = "env:{TOKEN_ENV}"\n'
    text = text.replace("[http]\n", "[http]\n" + line) if "[http]\n" in text else (
        text.rstrip("\n") + "\n\n[http]\n" + line)
    R.DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = R.DATA_DIR / f"cluster-{rig.offset}-headwater.toml"
    path.write_text(text)
    return path


REPLICA_CONFIGS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("defaults", "id-miss", {}),
                   ("cache off", "id-random", {"HEADWATER_CACHE_ENABLED": "false"}))


def bench_replica(p: Part) -> None:
    rig = p.rig
    token = secrets.token_urlsafe(24)
    env = {"HEADWATER_REDIS_URL": rig.redis_url, "HEADWATER_CONFIG": str(node_settings(rig)),
           "HEADWATER_JWT_SECRET": rig.jwt_secret(), "HEADWATER_AMQP_URL": rig.amqp_url,
           TOKEN_ENV: token}
    for config, scenario, extra in REPLICA_CONFIGS:
        for setup, replica in (("node + replica", True), ("node, primary only", False)):
            R.log(f"cluster replica: {setup} ({config})")
            node_env = {**env, **extra}
            if replica:
                node_env["HEADWATER_REPLICA_URLS"] = rig.replica_url
            tag = f"cluster-{R.variant_tag(setup)}-{R.variant_tag(config)}"
            try:
                with R.running("headwater", SERVER, p.ds, p.opts, node_env, tag=tag) as run:
                    if replica:
                        nudge_replay(rig)
                        wait_for(f"{setup} reads from the replica",
                                 functools.partial(replicas_ok, run.base_url))
                    served = p.fresh_read(run.base_url)
                    want = "replica" if replica else "-"
                    if served != want:
                        p.problem(f"replica {setup} ({config}): a fresh read answered "
                                  f"Headwater-Served-By: {served}, expected {want}")
                    time.sleep(1.2)  # the other worker's metrics snapshot (1 s) is current
                    before = metrics_served(run.base_url, token)
                    row = p.measure("replica", setup, config, scenario, run, run.base_url,
                                    [run.pid])
                    time.sleep(1.2)
                    after = metrics_served(run.base_url, token)
                    row.served_by = served_share(served, before, after, replica, p, setup, config)
            except (R.BenchError, OSError, httpx.HTTPError) as exc:
                p.problem(f"replica {setup} ({config}): {str(exc).splitlines()[0]}")


def served_share(served: str, before: Mapping[str, float], after: Mapping[str, float],
                 replica: bool, p: Part, setup: str, config: str) -> str:
    """The row's ``served by``: the fresh read's header, and who answered the run's reads
    (warm-up included) by the node's ``headwater_reads_served``."""
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in {*before, *after}}
    total = sum(delta.values())
    if not replica:
        # No replica configured: every read is the primary's and none is counted by server.
        return "primary (no replica)" if total == 0 else f"{served}, reads_served {delta}"
    share = delta.get("replica", 0.0) / total if total else 0.0
    if share < SERVED_BY_TARGET:
        p.problem(f"replica {setup} ({config}): headwater_reads_served counted "
                  f"{delta} over the run: the replica answered {share:.0%}")
    return f"{served} ({share:.0%} of {total:,.0f})"


# --- the part ---------------------------------------------------------------------------------


def bench_cluster(opts: R.Options, results: R.Results) -> None:
    rig = Rig.from_env(os.environ)
    alive = rig.alive()
    started = not any(alive.values())
    info: dict[str, Any] = {
        "state": str(rig.state), "port_offset": rig.offset, "db": rig.db,
        "lb_port": rig.lb_port, "node_ports": list(rig.node_ports),
        "started_by_bench": started, "started_at": R._now(),
        "cpu_busy_pct_at_start": round(R.cpu_busy_pct(0.5), 1),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "duration_s": opts.part_duration, "warmup_s": opts.warmup,
        "connections": connections(opts), "cpus": os.cpu_count(),
    }
    results.cluster = {"meta": info, "rows": []}
    try:
        if not all(alive.values()):
            down = [k for k, v in alive.items() if not v]
            R.log(f"cluster: scripts/cluster.sh up (state {rig.state}, port offset {rig.offset}, "
                  f"database {rig.db}; down: {', '.join(down)})")
            rig.script("up")
        else:
            R.log(f"cluster: the rig in {rig.state} is up (port offset {rig.offset})")
        wait_whole(rig)
        info["rig_nodes_log_level"] = rig_log_level(rig)
        ds, items = asyncio.run(_dataset(rig))
        info["counts"] = ds.counts
        part = Part(rig, ds, items, Groups.of(rig), opts, results, fresh_cold())
        info["idle_cpu_pct"] = idle_cpu(rig, part.groups, opts.part_duration)
        results.cluster["rows"] = part.rows
        try:
            bench_lb(part)
        except (R.BenchError, OSError, httpx.HTTPError) as exc:
            part.problem(f"lb: {str(exc).splitlines()[0]}")
        bench_replica(part)
    except (R.BenchError, OSError, httpx.HTTPError, asyncpg.PostgresError,
            subprocess.SubprocessError) as exc:
        msg = f"cluster: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        R.log(msg)
        results.problems.append(msg)
    finally:
        info["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
        if started:
            R.log("cluster: scripts/cluster.sh down (the part brought the rig up)")
            take_down(rig, results)


def idle_cpu(rig: Rig, groups: Groups, seconds: float) -> dict[str, float]:
    """Each group's CPU with no load (% of one core; nodes: both of the rig's), which every
    row's CPU per request includes spread over its requests: replica lag samples, health
    checks, the relay's polls, Redis Cluster's bus, PostgreSQL's background work."""
    named = groups.named([rig.node_pid(p) for p in rig.node_ports])
    before = R.cpu_snapshot()
    time.sleep(seconds)
    after = R.cpu_snapshot()
    wall = after.at - before.at
    return {name: round(100.0 * R.group_cpu(before, after, set(pids())) / wall, 1)
            for name, pids in named.items()}


def take_down(rig: Rig, results: R.Results) -> None:
    """``cluster.sh down``, twice if need be: it removes a Redis node's directory right after
    signalling it, and a node still writing its files on the way out fails that ``rm -rf``
    (the script stops there, before the replica); a second ``down`` finishes the job."""
    for attempt in (1, 2):
        try:
            rig.script("down")
            return
        except (R.BenchError, OSError, subprocess.SubprocessError) as exc:
            if attempt == 2:
                results.problems.append(f"cluster: down failed: {exc}")
            else:
                R.log(f"cluster: down failed ({str(exc).splitlines()[0][:200]}): again")
                time.sleep(1.0)


def connections(opts: R.Options) -> int:
    return min(opts.connections, CONNECTIONS)


def fresh_cold() -> cache_bench.ColdBase:
    """Query strings no earlier run sent: the rig's Redis keeps cache entries between runs."""
    cold = cache_bench.ColdBase()
    cold.n = secrets.randbelow(1_000_000) * 1_000
    return cold


def rig_log_level(rig: Rig) -> str:
    """HEADWATER_LOG_LEVEL the rig gives its nodes (``warning`` turns the access log off)."""
    pid = rig.pid(f"node-{rig.node_ports[0]}.pid")
    with contextlib.suppress(OSError, TypeError):
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        for item in env:
            if item.startswith(b"HEADWATER_LOG_LEVEL="):
                return item.split(b"=", 1)[1].decode()
    return "info (default)"


# --- reporting --------------------------------------------------------------------------------


HEADERS = ("part", "setup", "config", "scenario", "rps", "p50", "p99", "x ref", *GROUPS,
           "all", "served by", "other CPU")


def rows_of(res: R.Results) -> list[ClusterRow]:
    rows: list[ClusterRow] = res.cluster.get("rows", [])
    return rows


def _ref(row: ClusterRow, rows: Sequence[ClusterRow]) -> R.Measurement | None:
    """lb rows: the direct node's run of the scenario; replica rows: the primary-only node's."""
    for r in rows:
        if r.part != row.part or r.m.scenario != row.m.scenario or r.config != row.config:
            continue
        if (row.part == "lb" and r.setup.startswith("node ")) or (
                row.part == "replica" and "primary only" in r.setup):
            return r.m
    return None


def ms_per_request(m: R.Measurement, group: str | None = None) -> float | None:
    if not m.group_cpu_s or not m.requests:
        return None
    cpu = sum(m.group_cpu_s.values()) if group is None else m.group_cpu_s.get(group, 0.0)
    return 1000.0 * cpu / m.requests


def cells(row: ClusterRow, rows: Sequence[ClusterRow]) -> list[str]:
    m, ref = row.m, _ref(row, rows)
    ratio = "-"
    if ref is not None and ref is not m and m.rps and ref.rps:
        ratio = f"{m.rps / ref.rps:.2f}"

    def cpu(group: str | None) -> str:
        v = ms_per_request(m, group)
        return "-" if v is None else f"{v:.3f}"

    return [row.part, row.setup, row.config, m.scenario,
            "error" if m.error else R.fmt_rps(m.rps), R.fmt_ms(m.p50_ms), R.fmt_ms(m.p99_ms),
            ratio, *(cpu(g) for g in GROUPS), cpu(None), row.served_by,
            "-" if m.other_cpu_pct is None else f"{m.other_cpu_pct:.0f}%"]


def table(res: R.Results) -> tuple[str, Sequence[str], list[list[str]]] | None:
    rows = rows_of(res)
    if not rows:
        return None
    info = res.cluster["meta"]
    title = (f"cluster: the rig's nodes, HAProxy, replica ({info['duration_s']:g} s runs, "
             f"wrk -c{info['connections']}): requests/s, p50/p99 ms, CPU ms per request of "
             f"each process group")
    return title, HEADERS, [cells(r, rows) for r in rows]


def _rps(rows: Sequence[ClusterRow], part: str, setup: str, scenario: str) -> float | None:
    return next((r.m.rps for r in rows if (r.part, r.setup, r.m.scenario)
                 == (part, setup, scenario) and r.m.rps), None)


def note(res: R.Results) -> str:
    rows = rows_of(res)
    info = res.cluster.get("meta", {})
    cpus = info.get("cpus") or os.cpu_count()
    direct = next((r.setup for r in rows if r.part == "lb" and r.setup.startswith("node ")), "")
    ratios = []
    for scenario in LB_SCENARIOS:
        one, two = _rps(rows, "lb", direct, scenario), _rps(rows, "lb", "haproxy, 2 nodes",
                                                            scenario)
        lb1 = _rps(rows, "lb", "haproxy, 1 node", scenario)
        if one and two:
            ratios.append(f"{scenario} {two / one:.2f}" + (f" (1 node behind it {lb1 / one:.2f})"
                                                          if lb1 else ""))
    idle = info.get("idle_cpu_pct") or {}
    idle_note = (" With no load the groups used " + ", ".join(f"{k} {v:g}%" for k, v in
                                                           idle.items())
                 + " of one core (nodes: both of the rig's): every row's CPU per request "
                 "includes that share." if idle else "")
    level = info.get("rig_nodes_log_level", "?")
    log_note = ("" if level.startswith("info") else
                f" The rig's nodes run with HEADWATER_LOG_LEVEL={level} (scripts/cluster.sh), "
                f"so the lb rows have no access log; the replica rows' nodes (started here) "
                f"have it, as `headwater serve` does by default.")
    return (
        f"cluster: the rig of scripts/cluster.sh on {cpus} CPUs (state {info.get('state')}, "
        f"port offset {info.get('port_offset')}, database {info.get('db')}, measured "
        f"{info.get('started_at')}, {info.get('cpu_busy_pct_at_start', 0):.0f}% busy at start). "
        f"Every process runs on the same {cpus} cores: two nodes behind HAProxy share the cores "
        f"one node had, so they cannot beat one node here; the ratio (haproxy, 2 nodes / node "
        f"direct: {', '.join(ratios) or '-'}) is what HAProxy costs on a shared machine, not "
        f"what a second machine adds. HAProxy's own price is its column: CPU ms per request. "
        f"Columns {', '.join(GROUPS)}: CPU ms per request of the nodes serving the row, "
        f"HAProxy, the PostgreSQL primary's work for the rig's database, the replica, the three "
        f"Redis Cluster nodes; `all` their sum (wrk's own CPU is not in it). `x ref`: lb rows "
        f"over the direct node, replica rows over the primary-only node. id-hot: {HOT_IDS} ids "
        f"(L1 hits); id-random: random ids over every order item (hits and misses, as a "
        f"user's, cache state carried from the previous row); id-miss: every query string new "
        f"(bench/cold.lua: no hit anywhere). `served by`: the `Headwater-Served-By` header of "
        f"a fresh read, and on the replica node the share of the run's reads "
        f"`headwater_reads_served` gives the replica.{idle_note}{log_note} `other CPU`: the rest of the "
        f"machine (other rigs, tests), the noise.")


def to_json(res: R.Results) -> dict[str, Any] | None:
    rows = rows_of(res)
    if not res.cluster:
        return None
    out_rows = []
    for r, line in zip(rows, (cells(r, rows) for r in rows), strict=True):
        m = r.m
        out_rows.append({
            "part": r.part, "setup": r.setup, "config": r.config, "scenario": m.scenario,
            "path": m.path, "rps": m.rps, "p50_ms": m.p50_ms, "p99_ms": m.p99_ms,
            "requests": m.requests, "x_ref": line[7],
            "cpu_ms_per_request": {g: _round(ms_per_request(m, g)) for g in GROUPS},
            "cpu_ms_per_request_all": _round(ms_per_request(m)),
            "cpu_s": {g: round(v, 3) for g, v in (m.group_cpu_s or {}).items()},
            "wall_s": _round(m.wall_s), "served_by": r.served_by,
            "other_cpu_pct": m.other_cpu_pct, "non_2xx": m.non_2xx,
            "socket_errors": m.socket_errors, "error": m.error})
    return {"meta": res.cluster.get("meta", {}), "rows": out_rows,
            "problems": [p for p in res.problems if p.startswith(DB)]}


def _round(v: float | None, digits: int = 4) -> float | None:
    return None if v is None else round(v, digits)


def markdown(res: R.Results) -> str:
    """The part's section of latest.md (run.py keeps it between its markers)."""
    found = table(res)
    parts = []
    if found is not None:
        title, headers, lines = found
        parts += [f"**{title}**", "", R.md_table(headers, lines), ""]
    parts.append(note(res))
    problems = [p for p in res.problems if p.startswith(DB)]
    if problems:
        parts += ["", *(f"- problem: {p}" for p in problems)]
    return "\n".join(parts)
