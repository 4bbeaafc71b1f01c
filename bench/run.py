"""Headwater benchmark harness: Headwater vs hand-written baseline vs the server's ceiling.

    .venv/bin/python bench/run.py [--quick] [--duration 10] [--scenarios A,B,C]
                                  [--servers uvicorn,granian] [--dbs postgres,sqlite]
                                  [--out bench/results] [--rebuild] [--export-scale 100]

One run: build (or reuse) the demo data at scale 10 in PostgreSQL and SQLite; for each
database x ASGI server start the baseline (bench/baseline.py) and Headwater as separate
processes on free loopback ports; drive every endpoint with wrk (one thread, 32 connections,
a Lua script that asks for a different row on every request); measure Headwater's peak RSS
while it streams a large export; print and save the results. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import asyncpg
import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
SRC_DIR = REPO_DIR / "src"
DATA_DIR = BENCH_DIR / ".data"
LOG_DIR = DATA_DIR / "logs"
MANIFEST = DATA_DIR / "manifest.json"
LUA_SCRIPT = BENCH_DIR / "ids.lua"

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_SERVER_URL = "postgresql://postgres@127.0.0.1:5432"
PG_DB_NAME = "headwater_bench"
SQLITE_NAME = "demo"
DEMO_TABLES = ("customers", "products", "orders", "order_items")

HEADWATER_TARGET = "headwater.app:create_app_from_env"
BASELINE_TARGET = "baseline:create_app"

HOST = "127.0.0.1"
THREADS = 1
CONNECTIONS = 32
WARMUP_S = 2.0
RSS_SAMPLE_S = 0.05
IDLE_BUSY_PCT = 15.0
NOISY_OTHER_PCT = 10.0
RATIO_TARGET = 0.6
C_OVER_B_TARGET = 2.0

DbKind = Literal["postgres", "sqlite"]
AppName = Literal["headwater", "baseline", "pocketbase"]
ALL_DBS: tuple[DbKind, ...] = ("postgres", "sqlite")
ALL_SERVERS = ("uvicorn", "granian")
ALL_PARTS = ("reads", "export", "cache", "big", "peer", "cluster", "writes")
#: Run when --parts is not given: every part but ``cluster``, which brings up (and needs) the
#: cluster rig of scripts/cluster.sh (a replica, Redis Cluster, HAProxy).
DEFAULT_PARTS = tuple(p for p in ALL_PARTS if p != "cluster")
#: Headwater configurations besides its defaults: each is an extra, labelled row.
VARIANTS: dict[str, dict[str, str]] = {
    "defaults": {},
    "log off": {"HEADWATER_LOG_LEVEL": "warning"},
    "cache off": {"HEADWATER_CACHE_ENABLED": "false"},
    "admission off": {"HEADWATER_CACHE_ADMISSION": "false"},
    "1 worker": {"HEADWATER_WORKERS": "1"},
    # An L1 that fills within a short run: the miss path with evictions (and admission).
    "L1 4 MiB": {"HEADWATER_CACHE_L1_BYTES": str(4 << 20)},
    "L1 4 MiB no admission": {"HEADWATER_CACHE_L1_BYTES": str(4 << 20),
                                "HEADWATER_CACHE_ADMISSION": "false"},
}


class BenchError(Exception):
    """A step failed in a way the harness reports and (usually) continues past."""


# --- options ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    duration: float
    warmup: float
    connections: int
    scenarios: tuple[str, ...]
    servers: tuple[str, ...]
    dbs: tuple[DbKind, ...]
    out: Path
    scale: float
    rebuild: bool
    export: bool
    export_scale: float | None
    start_timeout: float
    quick: bool
    headwater_env: tuple[tuple[str, str], ...] = ()
    wait_idle: float = 0.0
    retry_noisy: int = 0
    variants: tuple[str, ...] = ("defaults",)
    big_variants: tuple[str, ...] = ("defaults", "cache off", "log off")
    rows: int = 1_000_000
    peer_rows: int = 1_000_000
    src: Path | None = None
    parts: tuple[str, ...] = DEFAULT_PARTS
    part_duration: float = 5.0  # seconds per measured run in the cache and writes parts
    cache_db: DbKind = "postgres"


def _csv_list(raw: str, allowed: Sequence[str], what: str, upper: bool = False) -> tuple[str, ...]:
    items = tuple(s.strip().upper() if upper else s.strip().lower() for s in raw.split(","))
    items = tuple(s for s in items if s)
    bad = [s for s in items if s not in allowed]
    if bad or not items:
        raise SystemExit(f"--{what}: expected a comma list of {','.join(allowed)}, got {raw!r}")
    return items


def parse_options(argv: Sequence[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 s runs, uvicorn only")
    p.add_argument("--duration", type=float, default=None, help="seconds per measured run (10)")
    p.add_argument("--warmup", type=float, default=WARMUP_S, help="seconds of warm-up per run")
    p.add_argument("--connections", type=int, default=CONNECTIONS, help="wrk connections (32)")
    p.add_argument("--parts", default=",".join(DEFAULT_PARTS),
                   help=f"comma list of {','.join(ALL_PARTS)}\n(all but cluster; writes run last)")
    p.add_argument("--part-duration", type=float, default=None, metavar="S",
                   help="seconds per measured run in the cache, big, peer, cluster and writes\n"
                        "parts (5; 3 with --quick)")
    p.add_argument("--cache-db", default=None,
                   help="database for the cache part (the first of --dbs)")
    p.add_argument("--scenarios", default="A,B,C", help="comma list of A,B,C")
    p.add_argument("--servers", default=None, help="comma list of uvicorn,granian")
    p.add_argument("--dbs", default="postgres,sqlite", help="comma list of postgres,sqlite")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results", help="results directory")
    p.add_argument("--scale", type=float, default=10.0, help="demo data scale (10)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the demo data even if present")
    p.add_argument("--no-export", action="store_true", help="skip the export/RSS measurement")
    p.add_argument("--export-scale", type=float, default=None,
                   help="build a separate demo at this scale for the export measurement")
    p.add_argument("--start-timeout", type=float, default=60.0, help="seconds to wait for a server")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                   help="wait up to S seconds for other work on the machine to stop first")
    p.add_argument("--variants", default="defaults,cache off",
                   help="Headwater configurations of the reads part, each a labelled row:\n"
                        + ", ".join(VARIANTS) + " (defaults,cache off)")
    p.add_argument("--big-variants", default="defaults,cache off,log off",
                   help="the same for the big and peer parts (defaults,cache off,log off)")
    p.add_argument("--rows", type=int, default=1_000_000,
                   help="rows of the big part's products table (1,000,000)")
    p.add_argument("--peer-rows", type=int, default=1_000_000,
                   help="rows of the peer part's products (1,000,000; 100,000 if slow)")
    p.add_argument("--src", type=Path, default=None,
                   help="measure Headwater from another checkout's src/ (e.g. a 'before')")
    p.add_argument("--retry-noisy", type=int, default=0, metavar="N",
                   help="rerun a measured run up to N times while other work disturbs it\n"
                        f"(other CPU > {NOISY_OTHER_PCT:g}%%), keeping the quietest")
    p.add_argument("--headwater-env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra environment for the Headwater process (repeatable), e.g.\n"
                        "--headwater-env HEADWATER_POOL_MAX_SIZE=20")
    a = p.parse_args(argv)
    duration = a.duration if a.duration is not None else (3.0 if a.quick else 10.0)
    default_servers = "uvicorn" if a.quick else "uvicorn,granian"
    servers_raw = a.servers if a.servers is not None else default_servers
    dbs = tuple(d for d in ALL_DBS if d in _csv_list(a.dbs, ALL_DBS, "dbs"))
    parts = tuple(x for x in ALL_PARTS if x in _csv_list(a.parts, ALL_PARTS, "parts"))
    if a.no_export:
        parts = tuple(x for x in parts if x != "export")
    cache_db = dbs[0]
    if a.cache_db is not None:
        cache_db = next(d for d in ALL_DBS if d == _csv_list(a.cache_db, ALL_DBS, "cache-db")[0])
    part_duration = a.part_duration if a.part_duration is not None else (3.0 if a.quick else 5.0)
    return Options(
        duration=duration,
        warmup=a.warmup,
        connections=a.connections,
        scenarios=_csv_list(a.scenarios, tuple(SCENARIOS), "scenarios", upper=True),
        servers=_csv_list(servers_raw, ALL_SERVERS, "servers"),
        dbs=dbs,
        out=a.out.resolve(),
        scale=a.scale,
        rebuild=a.rebuild,
        export="export" in parts,
        export_scale=a.export_scale,
        start_timeout=a.start_timeout,
        quick=a.quick,
        headwater_env=tuple(_env_pair(e) for e in a.headwater_env),
        wait_idle=a.wait_idle,
        retry_noisy=max(0, a.retry_noisy),
        variants=_variants(a.variants),
        big_variants=_variants(a.big_variants),
        rows=a.rows,
        peer_rows=a.peer_rows,
        src=a.src.resolve() if a.src else None,
        parts=parts,
        part_duration=part_duration,
        cache_db=cache_db,
    )


def _variants(raw: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(v.strip() for v in raw.split(",") if v.strip()))
    bad = [v for v in items if v not in VARIANTS]
    if bad or not items:
        raise SystemExit(f"--variants: expected a comma list of {', '.join(VARIANTS)}, got {raw!r}")
    return items


def _env_pair(raw: str) -> tuple[str, str]:
    name, sep, value = raw.partition("=")
    if not sep or not name:
        raise SystemExit(f"--headwater-env: expected NAME=VALUE, got {raw!r}")
    return name, value


def use_working_tree(src: Path | None = None) -> None:
    """Import headwater from this checkout's src/ (here and in the servers we start), so the
    bench measures the working tree even if the venv's editable install is missing or stale;
    ``src``: another checkout's instead (``--src``, to measure a "before")."""
    src = src or SRC_DIR
    if (src / "headwater").is_dir():
        if str(src) not in sys.path:
            sys.path.insert(0, str(src))
        parts = [str(src), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
        os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in parts if p))


def cpu_busy_pct(interval: float = 1.0) -> float:
    """Share of all CPUs busy over ``interval`` seconds, from /proc/stat."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    total = total1 - total0
    return 100.0 * (total - (idle1 - idle0)) / total if total > 0 else 0.0


def wait_for_idle(max_wait: float, quiet_samples: int = 5) -> float:
    """Wait up to ``max_wait`` seconds until the CPUs stay quiet for ``quiet_samples``
    consecutive one-second samples; return the last busy %."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy_pct()
    quiet = 1 if busy <= IDLE_BUSY_PCT else 0
    reported = 0.0
    while quiet < quiet_samples and max_wait > 0 and time.monotonic() < deadline:
        if busy > IDLE_BUSY_PCT and time.monotonic() - reported > 15:
            log(f"waiting for the machine to be idle: CPUs {busy:.0f}% busy")
            reported = time.monotonic()
        busy = cpu_busy_pct()
        quiet = quiet + 1 if busy <= IDLE_BUSY_PCT else 0
    return busy


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- scenarios --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    headwater: str  # path template, "{id}" is replaced per request
    baseline: str
    ids: Literal["orders", "customers"]


SCENARIOS: dict[str, Scenario] = {
    "A": Scenario("A", "one order by primary key", "/orders?id=eq.{id}", "/a?id={id}", "orders"),
    "B": Scenario(
        "B",
        "a customer's 20 latest orders",
        "/orders?customer_id=eq.{id}&order=ordered_at.desc&limit=20",
        "/b?customer_id={id}",
        "customers",
    ),
    "C": Scenario(
        "C",
        "B + customer and order_items embedded",
        "/orders?select=*,customer:customers(*),order_items(*)"
        "&customer_id=eq.{id}&order=ordered_at.desc&limit=20",
        "/c?customer_id={id}",
        "customers",
    ),
}
CEILING = Scenario("ceiling", "constant JSON, no database", "", "/ceiling?id={id}", "orders")


# --- demo data --------------------------------------------------------------------------


@dataclass(frozen=True)
class IdRange:
    first: int
    last: int

    @property
    def mid(self) -> int:
        return (self.first + self.last) // 2


@dataclass(frozen=True)
class Dataset:
    kind: DbKind
    url: str
    scale: float
    counts: dict[str, int]
    orders: IdRange
    customers: IdRange
    busiest_customer: int
    database: str | None = None  # the PostgreSQL database, when not the demo's
    probe: str = "/orders?limit=1"  # a read that answers once Headwater serves

    @property
    def pg_database(self) -> str | None:
        if self.kind != "postgres":
            return None
        return self.database or pg_db_name(self.scale)

    def ids(self, which: Literal["orders", "customers"]) -> IdRange:
        return self.orders if which == "orders" else self.customers


def sqlite_file(scale: float) -> Path:
    suffix = "" if scale == 10 else f"-s{scale:g}"
    return DATA_DIR / f"{SQLITE_NAME}{suffix}.db"


def pg_db_name(scale: float) -> str:
    return PG_DB_NAME if scale == 10 else f"{PG_DB_NAME}_s{scale:g}".replace(".", "_")


def db_url(kind: DbKind, scale: float) -> str:
    if kind == "postgres":
        return f"{PG_SERVER_URL}/{pg_db_name(scale)}"
    return f"sqlite:///{sqlite_file(scale)}"


async def pg_ensure_database(name: str, *, recreate: bool) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    try:
        if recreate:
            await conn.execute(f'drop database if exists "{name}" with (force)')
        exists = await conn.fetchval("select 1 from pg_database where datname = $1", name)
        if not exists:
            await conn.execute(f'create database "{name}"')
    finally:
        await conn.close()


@dataclass(frozen=True)
class Stats:
    counts: dict[str, int]
    orders: IdRange
    customers: IdRange
    busiest_customer: int  # the customer with the most orders: B and C return a full page


RANGE_SQL = 'select min(id), max(id) from "{table}"'
BUSIEST_SQL = "select customer_id from orders group by customer_id order by count(*) desc, " \
              "customer_id limit 1"


def _range(row: Any) -> IdRange:
    """(min, max) from a tuple or an asyncpg Record; None -> 0..0."""
    lo, hi = (row[0], row[1]) if row is not None else (None, None)
    return IdRange(int(lo or 0), int(hi or 0))


async def pg_stats(url: str) -> Stats | None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        counts: dict[str, int] = {}
        for table in DEMO_TABLES:
            if await conn.fetchval("select to_regclass($1)", f"public.{table}") is None:
                return None
            counts[table] = int(await conn.fetchval(f'select count(*) from "{table}"'))
        orders = _range(await conn.fetchrow(RANGE_SQL.format(table="orders")))
        customers = _range(await conn.fetchrow(RANGE_SQL.format(table="customers")))
        busiest = int(await conn.fetchval(BUSIEST_SQL) or customers.first)
        return Stats(counts, orders, customers, busiest)
    finally:
        await conn.close()


def sqlite_stats(path: Path) -> Stats | None:
    import sqlite3

    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
        if not set(DEMO_TABLES) <= names:
            return None
        counts = {t: int(conn.execute(f'select count(*) from "{t}"').fetchone()[0])
                  for t in DEMO_TABLES}
        orders = _range(conn.execute(RANGE_SQL.format(table="orders")).fetchone())
        customers = _range(conn.execute(RANGE_SQL.format(table="customers")).fetchone())
        row = conn.execute(BUSIEST_SQL).fetchone()
        return Stats(counts, orders, customers, int(row[0]) if row else customers.first)
    finally:
        conn.close()


async def db_stats(kind: DbKind, scale: float) -> Stats | None:
    if kind == "postgres":
        return await pg_stats(db_url(kind, scale))
    return sqlite_stats(sqlite_file(scale))


def read_manifest() -> dict[str, Any]:
    try:
        data = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_manifest_entry(url: str, scale: float, counts: Mapping[str, int]) -> None:
    data = read_manifest()
    data[url] = {"scale": scale, "counts": dict(counts), "built_at": _now()}
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    MANIFEST.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def remove_sqlite_files(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for extra in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{extra}").unlink(missing_ok=True)


async def build_demo_data(kind: DbKind, scale: float) -> None:
    """Wipe the bench database of this kind/scale and build the demo into it."""
    try:
        build_demo = importlib.import_module("headwater.demo").build_demo
    except (ImportError, AttributeError) as exc:
        raise BenchError(f"cannot import headwater.demo.build_demo ({exc})") from exc
    url = db_url(kind, scale)
    if kind == "postgres":
        await pg_ensure_database(pg_db_name(scale), recreate=True)
    else:
        path = sqlite_file(scale)
        remove_sqlite_files(path)
    started = time.perf_counter()
    log(f"building the demo at scale {scale:g} into {url} ...")
    await build_demo(url, scale=scale)
    log(f"  built in {time.perf_counter() - started:.1f}s")


async def ensure_dataset(kind: DbKind, scale: float, *, rebuild: bool) -> Dataset:
    """Reuse the demo data when the manifest's counts match the database, else build it."""
    url = db_url(kind, scale)
    if kind == "postgres":
        await pg_ensure_database(pg_db_name(scale), recreate=False)
    stats = None if rebuild else await db_stats(kind, scale)
    entry = read_manifest().get(url)
    fresh = (
        stats is not None
        and isinstance(entry, dict)
        and entry.get("scale") == scale
        and entry.get("counts") == stats.counts
    )
    if not fresh:
        await build_demo_data(kind, scale)
        stats = await db_stats(kind, scale)
        if stats is None:
            raise BenchError(f"build_demo ran but the demo tables are missing in {url}")
        write_manifest_entry(url, scale, stats.counts)
    else:
        log(f"reusing the demo data in {url}")
    assert stats is not None
    counts, orders, customers = stats.counts, stats.orders, stats.customers
    for table, rng in (("orders", orders), ("customers", customers)):
        if rng.last - rng.first + 1 != counts[table]:
            log(f"  note: {table} ids {rng.first}..{rng.last} have gaps ({counts[table]} rows)")
    return Dataset(kind, url, scale, counts, orders, customers, stats.busiest_customer)


# --- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def default_workers(env: Mapping[str, str] | None = None) -> int:
    """The worker count ``headwater serve`` uses when not told: its setting's value from
    ``env`` (HEADWATER_WORKERS) or default; a non-positive or non-number one ("auto") means
    one per core."""
    try:
        from headwater.config import Settings

        workers: object = Settings.from_env(dict(env or {})).workers
    except Exception:  # an older or newer Settings: take the documented meaning of auto
        workers = (env or {}).get("HEADWATER_WORKERS", "auto")
    if isinstance(workers, int) and workers > 0:
        return workers
    if isinstance(workers, str) and workers.isdigit() and int(workers) > 0:
        return int(workers)
    return os.cpu_count() or 1


def server_command(server: str, target: str, port: int, workers: int = 1,
                   database_url: str | None = None) -> list[str]:
    """Headwater on uvicorn is ``headwater serve URL`` itself (its defaults: server, loop,
    workers, connection limits, access log); the baseline and granian get the same number of
    workers."""
    py = sys.executable
    if server == "uvicorn" and target == HEADWATER_TARGET and database_url is not None:
        return [py, "-m", "headwater", "serve", database_url, "--host", HOST, "--port", str(port)]
    if server == "uvicorn":
        return [py, "-m", "uvicorn", "--factory", target, "--host", HOST, "--port", str(port),
                "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                "--log-level", "warning", "--lifespan", "on", "--workers", str(workers)]
    if server == "granian":
        return [py, "-m", "granian", "--interface", "asgi", "--factory", "--host", HOST,
                "--port", str(port), "--workers", str(workers), "--loop", "uvloop",
                "--no-access-log", "--log-level", "warning", target]
    raise ValueError(f"unknown server {server!r}")


def trim_log(path: Path, keep: int = 200) -> None:
    """Headwater's access log (on by default) writes a line per request: keep the tail."""
    with contextlib.suppress(OSError):
        if path.stat().st_size > 1 << 20:
            lines = path.read_bytes().splitlines(keepends=True)
            path.write_bytes(b"".join([b"[... trimmed by the bench ...]\n", *lines[-keep:]]))


@dataclass
class Running:
    app: str  # AppName, or a Headwater variant's label
    server: str
    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("    | " + line for line in text.splitlines()[-lines:])


def wait_ready(run: Running, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    url = run.base_url + path
    last = "no answer"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            code = run.proc.poll()
            if code is not None:
                raise BenchError(f"{run.app} ({run.server}) exited with code {code} at start:\n"
                                 + log_tail(run.log_path))
            try:
                r = client.get(url)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.1)
    raise BenchError(f"{run.app} ({run.server}) not ready after {timeout:.0f}s at {url} "
                     f"({last}):\n" + log_tail(run.log_path))


def wait_serving(run: Running, path: str, timeout: float) -> None:
    """Live is not ready: give the schema cache a moment to load. Not fatal: a read that
    still fails is reported by the measurement itself."""
    deadline = time.monotonic() + timeout
    status = 0
    while time.monotonic() < deadline and run.proc.poll() is None:
        with contextlib.suppress(httpx.HTTPError):
            status = httpx.get(run.base_url + path, timeout=5.0).status_code
            if status == 200:
                return
        time.sleep(0.2)
    log(f"  {run.app} ({run.server}) answers GET {path} with HTTP {status or 'nothing'} after "
        f"{timeout:.0f}s; going on (see {run.log_path})")


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it lingers."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # Workers (granian) live in the same group: make sure none outlived the parent.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def running(app: AppName, server: str, db: Dataset, opts: Options,
            extra_env: Mapping[str, str] | None = None, tag: str = "") -> Iterator[Running]:
    """Start ``app`` on ``server`` with its defaults (Headwater as ``headwater serve URL``
    gives them); ``extra_env`` goes last (a variant's settings, over --headwater-env),
    ``tag`` names its log file."""
    port = free_port()
    timeout = opts.start_timeout
    env = dict(os.environ)
    if app == "headwater":
        target, ready = HEADWATER_TARGET, "/-/live"
        env["HEADWATER_DATABASE_URL"] = db.url
        env.update(opts.headwater_env)
    else:
        target, ready = BASELINE_TARGET, "/ceiling"
        env["BASELINE_DATABASE_URL"] = db.url
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(BENCH_DIR), env.get("PYTHONPATH", "")) if p
        )
    env.update(extra_env or {})
    workers = default_workers({k: v for k, v in env.items() if k.startswith("HEADWATER_")})
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{db.kind}-s{db.scale:g}-{server}-{app}{'-' + tag if tag else ''}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            server_command(server, target, port, workers,
                           db.url if app == "headwater" else None),
            cwd=REPO_DIR, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    run = Running(app, server, proc, f"http://{HOST}:{port}", log_path)
    try:
        wait_ready(run, ready, timeout)
        if app == "headwater":
            wait_serving(run, db.probe, min(timeout, 15.0))
        yield run
    finally:
        stop(proc)
        trim_log(log_path)


# --- RSS --------------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (granian runs its worker in a child process)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in task.read_text().split())
    return pids


def vm_rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_rss_bytes(pid: int) -> int:
    return sum(vm_rss_bytes(p) for p in process_tree(pid))


class RssSampler:
    """Samples the RSS of a process tree every RSS_SAMPLE_S seconds in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = tree_rss_bytes(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.pid))
            self._stop.wait(RSS_SAMPLE_S)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss_bytes(self.pid))


# --- interference: CPU used by anything other than the measured processes ---------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSnapshot:
    at: float
    busy_s: float  # all CPUs, user + nice + system, since boot
    procs: dict[int, tuple[str, float]]  # pid -> (comm or "pg:" + title, user + sys seconds)
    children_s: float  # CPU of our reaped children (wrk)


def cpu_snapshot() -> CpuSnapshot:
    import resource

    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    busy = sum(int(x) for x in first[:3]) / CLK_TCK
    procs: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.find("(") + 1 : raw.rfind(")")]
        if comm == "postgres":  # its title says which database a backend serves
            with contextlib.suppress(OSError):
                comm = "pg:" + (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace").strip()
        rest = raw[raw.rfind(")") + 2 :].split()
        procs[int(entry.name)] = (comm, (int(rest[11]) + int(rest[12])) / CLK_TCK)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return CpuSnapshot(time.monotonic(), busy, procs, usage.ru_utime + usage.ru_stime)


def _ours_pg(title: str, database: str | None) -> bool:
    """A PostgreSQL server process working for this run: a background process (checkpointer,
    WAL writer...) or a backend connected to the bench database. Other databases' backends
    (another session's tests) are interference."""
    if not title.startswith("pg:"):
        return False
    client = "(" in title or "[local]" in title
    return not client or (database is not None and f" {database} " in f"{title} ")


def other_cpu_pct(before: CpuSnapshot, after: CpuSnapshot, ours: set[int],
                  database: str | None) -> float:
    """Share of the machine's CPU (0-100) used by anything but the server tree, wrk, this
    harness and PostgreSQL's work for the bench database, between two snapshots: how much
    the run was disturbed."""
    elapsed = after.at - before.at
    if elapsed <= 0:
        return 0.0
    own = after.children_s - before.children_s
    for pid, (comm, cpu) in after.procs.items():
        if pid in ours or _ours_pg(comm, database):
            own += cpu - before.procs.get(pid, (comm, 0.0))[1]
    other = max(0.0, (after.busy_s - before.busy_s) - own)
    return 100.0 * other / (elapsed * (os.cpu_count() or 1))


# --- wrk --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int


_TIME_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_SUFFIX = {"": 1.0, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9}
_NUM = r"(\d+(?:\.\d+)?)"
_RE_RPS = re.compile(rf"^\s*Requests/sec:\s*{_NUM}\s*([kKmMgG]?)\s*$", re.M)
_RE_PCT = re.compile(rf"^\s*(\d+(?:\.\d+)?)%\s+{_NUM}\s*(us|ms|s|m|h)\s*$", re.M)
_RE_TOTAL = re.compile(r"^\s*(\d+)\s+requests in\s", re.M)
_RE_SOCKET = re.compile(
    r"Socket errors:\s*connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_RE_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)")


def to_ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS_MS[unit]


def parse_wrk(text: str) -> WrkResult:
    """Parse wrk's --latency report: Requests/sec, the 50% and 99% rows, errors."""
    rps_m = _RE_RPS.search(text)
    if rps_m is None:
        raise BenchError("wrk output has no 'Requests/sec' line:\n" + text[-800:])
    rps = float(rps_m.group(1)) * _SUFFIX[rps_m.group(2)]
    pct = {float(p): to_ms(v, u) for p, v, u in _RE_PCT.findall(text)}
    if 50.0 not in pct or 99.0 not in pct:
        raise BenchError("wrk output has no latency distribution (was --latency given?)")
    total_m = _RE_TOTAL.search(text)
    sock_m = _RE_SOCKET.search(text)
    non2xx_m = _RE_NON2XX.search(text)
    return WrkResult(
        rps=rps,
        p50_ms=pct[50.0],
        p99_ms=pct[99.0],
        requests=int(total_m.group(1)) if total_m else 0,
        non_2xx=int(non2xx_m.group(1)) if non2xx_m else 0,
        socket_errors=sum(int(g) for g in sock_m.groups()) if sock_m else 0,
    )


def wrk(base_url: str, template: str, ids: IdRange, duration: float, connections: int) -> str:
    return wrk_script(base_url, LUA_SCRIPT, [template, str(ids.first), str(ids.last)], duration,
                      connections)


def wrk_script(base_url: str, script: Path, args: Sequence[str], duration: float,
               connections: int) -> str:
    """One wrk run (one thread) of ``script`` with ``args`` after ``--``; its raw output."""
    cmd = ["wrk", f"-t{THREADS}", f"-c{connections}", f"-d{max(1, round(duration))}s",
           "--latency", "--timeout", "10s", "-s", str(script), base_url + "/", "--", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    return done.stdout


# --- measurements -----------------------------------------------------------------------


@dataclass
class Measurement:
    db: str
    server: str
    app: str
    scenario: str
    path: str
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests: int = 0
    non_2xx: int = 0
    socket_errors: int = 0
    other_cpu_pct: float | None = None  # CPU used by other work on the machine meanwhile
    error: str | None = None
    #: CPU seconds of the server's process tree over the measured run (from /proc/<pid>/stat),
    #: and the run's wall seconds.
    server_cpu_s: float | None = None
    wall_s: float | None = None
    #: CPU seconds over the measured run per named process group (the cluster part: nodes,
    #: HAProxy, PostgreSQL primary and replica, Redis).
    group_cpu_s: dict[str, float] | None = None

    @property
    def cpu_pct(self) -> float | None:
        """The server's CPU as a share of one core (200% = both of two cores)."""
        if self.server_cpu_s is None or not self.wall_s:
            return None
        return 100.0 * self.server_cpu_s / self.wall_s

    @property
    def cpu_ms_per_request(self) -> float | None:
        if self.server_cpu_s is None or not self.requests:
            return None
        return 1000.0 * self.server_cpu_s / self.requests


def fetch_json(base_url: str, path: str) -> Any:
    r = httpx.get(base_url + path, timeout=30.0)
    if r.status_code != 200:
        raise BenchError(f"GET {path} -> HTTP {r.status_code}: {r.text[:300]}")
    return r.json()


def measure(run: Running, db: Dataset, scenario: Scenario, opts: Options) -> Measurement:
    """Warm up, then run wrk; with --retry-noisy, rerun a disturbed run and keep the quietest."""
    template = scenario.headwater if run.app.startswith("headwater") else scenario.baseline
    ids = db.ids(scenario.ids)
    m = Measurement(db.kind, run.server, run.app, scenario.key, template)

    def load(seconds: float) -> str:
        return wrk(run.base_url, template, ids, seconds, opts.connections)

    try:
        fetch_json(run.base_url, template.replace("{id}", str(ids.first)))  # fail fast
    except (BenchError, OSError, httpx.HTTPError, ValueError) as exc:
        m.error = str(exc).splitlines()[0][:300]
        log(f"  {run.app:9} {scenario.key:7} FAILED: {m.error}")
        return m
    return measure_load(run, m, load, opts, db.pg_database)


class Served(Protocol):
    """What wrk's requests reach: a server we started (``Running``) or one we did not."""

    @property
    def pid(self) -> int: ...


def group_cpu(before: CpuSnapshot, after: CpuSnapshot, pids: Collection[int]) -> float:
    """CPU seconds ``pids`` used between two snapshots (a process born in between: all of
    its CPU)."""
    return sum(after.procs[p][1] - before.procs.get(p, ("", 0.0))[1] for p in pids
               if p in after.procs)


def measure_load(run: Served, m: Measurement, load: Callable[[float], str], opts: Options,
                 database: str | None, *, duration: float | None = None,
                 warmup: float | None = None, extra_pids: Sequence[int] = (),
                 groups: Mapping[str, Callable[[], Collection[int]]] | None = None,
                 ) -> Measurement:
    """Fill ``m`` from ``load`` (one wrk run of the given seconds, its raw output): a warm-up,
    then the measured run; with --retry-noisy, rerun a disturbed run and keep the quietest.
    ``extra_pids`` are more processes working for the bench (e.g. redis-server); ``groups``
    name more of them, listed after the run (a pool may open connections meanwhile), whose
    CPU is kept per group in ``m.group_cpu_s``."""
    seconds = opts.duration if duration is None else duration
    warm = opts.warmup if warmup is None else warmup
    label = f"  {m.app:9} {m.scenario:7}"
    best: tuple[float, WrkResult, str, float, float, dict[str, float]] | None = None
    try:
        if warm > 0:
            load(warm)
        for attempt in range(1 + opts.retry_noisy):
            tree = process_tree(run.pid)
            ours = {os.getpid(), *tree, *extra_pids}
            before = cpu_snapshot()
            output = load(seconds)
            after = cpu_snapshot()
            members = {name: set(pids()) for name, pids in (groups or {}).items()}
            ours.update(*members.values())
            other = other_cpu_pct(before, after, ours, database)
            server_cpu = sum(after.procs[p][1] - before.procs[p][1] for p in tree
                             if p in after.procs and p in before.procs)
            by_group = {name: group_cpu(before, after, pids) for name, pids in members.items()}
            result = parse_wrk(output)
            if best is None or other < best[0]:
                best = (other, result, output, server_cpu, after.at - before.at, by_group)
            if other <= NOISY_OTHER_PCT:
                break
            if attempt < opts.retry_noisy:
                log(f"{label} {result.rps:9.0f} req/s but other CPU {other:.0f}%: again")
    except (BenchError, OSError, httpx.HTTPError, ValueError, subprocess.TimeoutExpired) as exc:
        m.error = str(exc).splitlines()[0][:300]
        log(f"{label} FAILED: {m.error}")
        return m
    assert best is not None
    other, result, output, m.server_cpu_s, m.wall_s, by_group = best
    m.group_cpu_s = by_group if groups is not None else None
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"wrk-{m.db}-{m.server}-{m.app}-{m.scenario}.txt")
    (LOG_DIR / safe).write_text(output)
    m.rps, m.p50_ms, m.p99_ms = result.rps, result.p50_ms, result.p99_ms
    m.requests, m.non_2xx, m.socket_errors = result.requests, result.non_2xx, result.socket_errors
    m.other_cpu_pct = round(other, 1)
    flag = ""
    if result.non_2xx or result.socket_errors:
        flag = f"  (!) non-2xx {result.non_2xx}, socket errors {result.socket_errors}"
    log(f"{label} {result.rps:9.0f} req/s  p50 {result.p50_ms:7.2f} ms"
        f"  p99 {result.p99_ms:7.2f} ms  server CPU {m.cpu_pct or 0:4.0f}%"
        f"  other CPU {other:4.0f}%{flag}")
    return m


# --- answer check: Headwater and the baseline must return the same data ------------------


def normalize(value: Any) -> Any:
    """Numbers compare by value (12.5 == 12.50 == 12.5e0); bools stay bools."""
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def _sorted_embeds(value: Any, top: bool = True) -> Any:
    """Embedded arrays have no defined order: sort them by id (the top level keeps its)."""
    if isinstance(value, dict):
        return {k: _sorted_embeds(v, top=False) for k, v in value.items()}
    if isinstance(value, list):
        items = [_sorted_embeds(v, top=False) for v in value]
        if not top and all(isinstance(v, dict) and "id" in v for v in items):
            items.sort(key=lambda v: str(v["id"]))
        return items
    return value


def first_difference(a: Any, b: Any, where: str = "$") -> str | None:
    if type(a) is not type(b):
        return f"{where}: {a!r} vs {b!r}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                side = "headwater" if k not in a else "baseline"
                return f"{where}.{k}: missing on the {side} side"
            d = first_difference(a[k], b[k], f"{where}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} items vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = first_difference(x, y, f"{where}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{where}: {a!r} vs {b!r}"


def sample_ids(db: Dataset, scenario: Scenario) -> list[int]:
    """The ids the answer check compares on: the first of the range, the middle, and for
    per-customer scenarios the customer with the most orders (a full, ordered page)."""
    ids = db.ids(scenario.ids)
    extra = [db.busiest_customer] if scenario.ids == "customers" else []
    return [ids.first, ids.mid, *extra]


def collect_answers(run: Running, db: Dataset, keys: Sequence[str]) -> dict[str, list[Any]]:
    answers: dict[str, list[Any]] = {}
    for key in keys:
        sc = SCENARIOS[key]
        template = sc.headwater if run.app.startswith("headwater") else sc.baseline
        try:
            answers[key] = [fetch_json(run.base_url, template.replace("{id}", str(i)))
                            for i in sample_ids(db, sc)]
        except (BenchError, httpx.HTTPError, ValueError) as exc:
            log(f"  answer check: {run.app} {key}: {exc}")
    return answers


def cache_status(run: Running, db: Dataset) -> str | None:
    """The X-Cache header of a repeated read, if Headwater sends one (None: no cache)."""
    path = SCENARIOS["B"].headwater.replace("{id}", str(db.busiest_customer))
    value = None
    with contextlib.suppress(httpx.HTTPError):
        for _ in range(2):
            value = httpx.get(run.base_url + path, timeout=10.0).headers.get("x-cache")
    return value


def compare_answers(hw: Mapping[str, list[Any]], base: Mapping[str, list[Any]]) -> dict[str, str]:
    """Per scenario: "same" or the first difference (Headwater vs baseline)."""
    out: dict[str, str] = {}
    for key in sorted(set(hw) & set(base)):
        verdict = "same"
        for h, b in zip(hw[key], base[key], strict=True):
            d = first_difference(_sorted_embeds(normalize(h)), _sorted_embeds(normalize(b)))
            if d:
                verdict = d[:300]
                break
        out[key] = verdict
    return out


# --- export: peak RSS while streaming ---------------------------------------------------


@dataclass
class ExportResult:
    db: str
    server: str
    scale: float
    format: str
    expected_rows: int
    rows: int = 0
    bytes: int = 0
    seconds: float = 0.0
    rss_before_mb: float = 0.0
    rss_peak_mb: float = 0.0
    status: int = 0
    error: str | None = None


def count_rows(fmt: str, tail: bytes, body_bytes: int, counted: int) -> int:
    """JSON: one '}' per row (order_items has only numeric columns); CSV: lines - header."""
    if fmt == "json":
        return counted
    lines = counted + (1 if body_bytes and not tail.endswith(b"\n") else 0)
    return max(0, lines - 1)


def stream_export(run: Running, db: Dataset, fmt: str) -> ExportResult:
    accept = "text/csv" if fmt == "csv" else "application/json"
    res = ExportResult(db.kind, run.server, db.scale, fmt, db.counts["order_items"])
    needle = b"}" if fmt == "json" else b"\n"
    time.sleep(0.5)
    res.rss_before_mb = tree_rss_bytes(run.pid) / 2**20
    counted, tail = 0, b""
    started = time.perf_counter()
    try:
        with RssSampler(run.pid) as sampler, httpx.stream(
            "GET", run.base_url + "/order_items",
            headers={"Accept": accept, "Accept-Encoding": "identity"}, timeout=300.0,
        ) as r:
            res.status = r.status_code
            for chunk in r.iter_bytes():
                res.bytes += len(chunk)
                counted += chunk.count(needle)
                tail = chunk[-1:] or tail
        res.seconds = time.perf_counter() - started
        res.rss_peak_mb = sampler.peak / 2**20
    except httpx.HTTPError as exc:
        res.error = f"{type(exc).__name__}: {exc}"
        return res
    if res.status != 200:
        res.error = f"HTTP {res.status}"
    res.rows = count_rows(fmt, tail, res.bytes, counted)
    return res


def run_exports(db: Dataset, server: str, opts: Options) -> list[ExportResult]:
    results: list[ExportResult] = []
    log(f"export on {db.kind} (scale {db.scale:g}, {db.counts['order_items']} order_items), "
        f"headwater on {server}")
    with running("headwater", server, db, opts) as run:
        with contextlib.suppress(BenchError, httpx.HTTPError):
            fetch_json(run.base_url, "/order_items?limit=1")  # catalog and pool warmed
        for fmt in ("json", "csv"):
            r = stream_export(run, db, fmt)
            results.append(r)
            mismatch = "" if r.rows == r.expected_rows else f" (expected {r.expected_rows})"
            log(f"  {fmt:4} {r.rows} rows{mismatch}, {r.bytes / 2**20:.1f} MiB in {r.seconds:.2f}s;"
                f" RSS {r.rss_before_mb:.0f} -> peak {r.rss_peak_mb:.0f} MiB"
                + (f"  ERROR {r.error}" if r.error else ""))
    return results


# --- orchestration ----------------------------------------------------------------------


@dataclass
class Results:
    meta: dict[str, Any]
    datasets: list[dict[str, Any]] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    checks: list[dict[str, str]] = field(default_factory=list)
    exports: list[ExportResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    cache_samples: list[dict[str, Any]] = field(default_factory=list)  # X-Cache seen per row
    write_checks: list[dict[str, Any]] = field(default_factory=list)
    #: The cluster part's rig, checks and notes (its measurements are those of db "cluster").
    cluster: dict[str, Any] = field(default_factory=dict)


def headwater_importable() -> str | None:
    """None when the factory's module can be found, else why not."""
    module = HEADWATER_TARGET.split(":")[0]
    try:
        if importlib.util.find_spec(module) is None:
            return f"module {module} does not exist yet"
    except (ImportError, ValueError) as exc:
        return f"cannot find {module}: {exc}"
    return None


def record(results: Results, m: Measurement) -> None:
    results.measurements.append(m)
    where = f"{m.db}/{m.server}/{m.app}/{m.scenario}"
    if m.error:
        results.problems.append(f"{where}: {m.error}")
    elif m.non_2xx or m.socket_errors:
        results.problems.append(f"{where}: {m.non_2xx} non-2xx responses, "
                                f"{m.socket_errors} socket errors (of {m.requests})")


def bench_pair(db: Dataset, server: str, opts: Options, results: Results) -> None:
    keys = opts.scenarios
    base_answers: dict[str, list[Any]] = {}
    log(f"{db.kind} x {server}: baseline")
    try:
        with running("baseline", server, db, opts) as run:
            base_answers = collect_answers(run, db, keys)
            for sc in [*(SCENARIOS[k] for k in keys), CEILING]:
                record(results, measure(run, db, sc, opts))
    except (BenchError, OSError) as exc:
        msg = f"{db.kind}/{server}: baseline did not start: {exc}"
        log(msg)
        results.problems.append(msg.splitlines()[0])

    log(f"{db.kind} x {server}: headwater")
    why = headwater_importable()
    if why is not None:
        msg = f"{db.kind}/{server}: headwater skipped: {why} ({HEADWATER_TARGET})"
        log("  " + msg)
        results.problems.append(msg)
        return
    for variant in opts.variants:
        app = hw_app(variant)
        log(f"{db.kind} x {server}: {app}")
        try:
            with running("headwater", server, db, opts, VARIANTS[variant],
                         tag=variant_tag(variant)) as run:
                run.app = app  # the row's label
                hw_answers = collect_answers(run, db, keys)
                cache = cache_status(run, db)
                if cache and "HIT" in cache.upper():
                    log(f"  {app}: a repeated read answers X-Cache: {cache} (ids repeat within "
                        f"a run: its numbers include cache hits, as a user's would)")
                check = compare_answers(hw_answers, base_answers)
                for key, verdict in check.items():
                    if verdict != "same":
                        log(f"  answer check {key}: {app} differs from baseline: {verdict}")
                    if variant == opts.variants[0]:
                        results.checks.append({"db": db.kind, "server": server,
                                               "scenario": key, "verdict": verdict})
                for key in keys:
                    record(results, measure(run, db, SCENARIOS[key], opts))
        except (BenchError, OSError) as exc:
            msg = f"{db.kind}/{server}: {app} did not start: {exc}"
            log(msg)
            results.problems.append(msg.splitlines()[0])


def hw_app(variant: str) -> str:
    """A Headwater row's app label: ``headwater`` with its defaults, else the variant."""
    return "headwater" if variant == "defaults" else f"headwater ({variant})"


def variant_tag(variant: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", variant).strip("-")


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def wrk_version() -> str:
    try:
        done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0].split(" [")[0] if first else "?"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def make_meta(opts: Options) -> dict[str, Any]:
    return {
        "started_at": _now(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "cpu_busy_pct_at_start": round(cpu_busy_pct(0.5), 1),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "uvicorn": package_version("uvicorn"),
        "granian": package_version("granian"),
        "starlette": package_version("starlette"),
        "wrk_version": wrk_version(),
        "wrk": f"wrk -t{THREADS} -c{opts.connections} -d{opts.duration:g}s --latency "
               f"-s bench/ids.lua (warm-up {opts.warmup:g}s)",
        "connections": opts.connections,
        "duration_s": opts.duration,
        "scale": opts.scale,
        "quick": opts.quick,
        "headwater_env": dict(opts.headwater_env),
        "retry_noisy": opts.retry_noisy,
        "variants": list(opts.variants),
        "rows": opts.rows,
        "peer_rows": opts.peer_rows,
        "big_variants": list(opts.big_variants),
        "headwater_workers": default_workers({k: v for k, v in os.environ.items()
                                              if k.startswith("HEADWATER_")}),
        "headwater_src": str(opts.src or SRC_DIR),
        "parts": list(opts.parts),
        "part_duration_s": opts.part_duration,
        "cache_db": opts.cache_db,
        "servers": list(opts.servers),
        "dbs": list(opts.dbs),
        "scenarios": {k: {"title": SCENARIOS[k].title, "headwater": SCENARIOS[k].headwater,
                          "baseline": SCENARIOS[k].baseline} for k in opts.scenarios},
    }


def run_all(opts: Options) -> Results:
    results = Results(meta=make_meta(opts))
    started = time.perf_counter()
    datasets: dict[DbKind, Dataset] = {}
    # The big, peer and cluster parts bring their own data: the demo is built for the others.
    demo_dbs = opts.dbs if set(opts.parts) - {"big", "peer", "cluster"} else ()
    for kind in demo_dbs:
        try:
            datasets[kind] = asyncio.run(ensure_dataset(kind, opts.scale, rebuild=opts.rebuild))
        except Exception as exc:  # build_demo may raise anything; the other db still runs
            msg = f"{kind}: no demo data: {type(exc).__name__}: {exc}"
            log(msg)
            results.problems.append(msg)
            continue
        ds = datasets[kind]
        results.datasets.append({"db": kind, "url": ds.url, "scale": ds.scale,
                                 "counts": ds.counts, "busiest_customer": ds.busiest_customer,
                                 "orders": dataclasses.asdict(ds.orders),
                                 "customers": dataclasses.asdict(ds.customers)})
    hw_missing = headwater_importable()
    if "reads" in opts.parts:
        for ds in datasets.values():
            for server in opts.servers:
                bench_pair(ds, server, opts, results)
    if opts.export and hw_missing is None:
        for kind, ds in datasets.items():
            try:
                export_ds = ds
                if opts.export_scale is not None and opts.export_scale != opts.scale:
                    export_ds = asyncio.run(
                        ensure_dataset(kind, opts.export_scale, rebuild=opts.rebuild))
                results.exports.extend(run_exports(export_ds, opts.servers[0], opts))
            except Exception as exc:  # report it; the measurements so far are still saved
                msg = f"{kind}: export measurement failed: {type(exc).__name__}: {exc}"
                log(msg)
                results.problems.append(msg.splitlines()[0])
    elif opts.export:
        results.problems.append("export skipped: headwater is not available")
    for part in ("cache", "cluster", "writes"):
        if part in opts.parts and hw_missing is not None:
            results.problems.append(f"{part} skipped: headwater is not available")
    if "cache" in opts.parts and hw_missing is None:
        import cache_bench

        if opts.cache_db in datasets:
            cache_bench.bench_cache(datasets[opts.cache_db], opts.servers[0], opts, results)
        else:
            results.problems.append(f"cache skipped: no {opts.cache_db} data (see --dbs)")
    if "big" in opts.parts and hw_missing is None:
        import products_bench

        products_bench.bench_big(opts.servers[0], opts, results)
    if "peer" in opts.parts and hw_missing is None:
        import products_bench

        products_bench.bench_peer(opts.servers[0], opts, results)
    if "cluster" in opts.parts and hw_missing is None:
        import cluster_bench

        cluster_bench.bench_cluster(opts, results)
    if "writes" in opts.parts and hw_missing is None:  # last: it adds (then deletes) rows
        import writes_bench

        for ds in datasets.values():
            writes_bench.bench_writes(ds, opts.servers[0], opts, results)
    results.meta["elapsed_s"] = round(time.perf_counter() - started, 1)
    results.meta["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    return results


# --- reporting --------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the summary table: one scenario on one server on one database."""

    db: str
    scenario: str
    server: str
    hw: Measurement | None
    base: Measurement | None
    ceiling: float | None
    ratio: float | None
    c_over_b: float | None  # Headwater's C p50 / B p50, on the C row
    check: str | None


def _find(ms: Sequence[Measurement], db: str, server: str, app: str, sc: str) -> Measurement | None:
    for m in ms:
        if (m.db, m.server, m.app, m.scenario) == (db, server, app, sc):
            return m
    return None


def summary_rows(res: Results, db: str) -> list[Row]:
    ms = res.measurements
    rows: list[Row] = []
    for key in res.meta["scenarios"]:
        for server, variant in ((s, v) for s in res.meta["servers"]
                                for v in res.meta.get("variants", ["defaults"])):
            hw = _find(ms, db, server, hw_app(variant), key)
            base = _find(ms, db, server, "baseline", key)
            ceil = _find(ms, db, server, "baseline", "ceiling")
            if hw is None and base is None:
                continue
            ratio = hw.rps / base.rps if hw and base and hw.rps and base.rps else None
            c_over_b = None
            if key == "C":
                hb = _find(ms, db, server, hw_app(variant), "B")
                if hw and hb and hw.p50_ms and hb.p50_ms:
                    c_over_b = hw.p50_ms / hb.p50_ms
            check = next((c["verdict"] for c in res.checks
                          if (c["db"], c["server"], c["scenario"]) == (db, server, key)), None)
            label = server if variant == "defaults" else f"{server}, {variant}"
            rows.append(Row(db, key, label, hw, base, ceil.rps if ceil else None, ratio,
                            c_over_b, check))
    return rows


def fmt_rps(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.1f}")


def target_mark(row: Row) -> str:
    if row.scenario in ("A", "B") and row.ratio is not None:
        return "ok" if row.ratio >= RATIO_TARGET else "MISS"
    if row.scenario == "C" and row.c_over_b is not None:
        return "ok" if row.c_over_b <= C_OVER_B_TARGET else "MISS"
    return "-"


TABLE_HEADERS = ("scenario", "server", "hw rps", "hw p50", "hw p99", "base rps", "base p50",
                 "base p99", "ceiling rps", "hw/base", "C/B p50", "target", "same answer",
                 "other CPU")


def row_cells(row: Row) -> list[str]:
    hw, base = row.hw, row.base
    check = "-" if row.check is None else ("yes" if row.check == "same" else "NO")
    return [
        row.scenario, row.server,
        fmt_rps(hw.rps if hw else None) if not (hw and hw.error) else "error",
        fmt_ms(hw.p50_ms if hw else None), fmt_ms(hw.p99_ms if hw else None),
        fmt_rps(base.rps if base else None) if not (base and base.error) else "error",
        fmt_ms(base.p50_ms if base else None), fmt_ms(base.p99_ms if base else None),
        fmt_rps(row.ceiling),
        "-" if row.ratio is None else f"{row.ratio:.2f}",
        "-" if row.c_over_b is None else f"{row.c_over_b:.2f}",
        target_mark(row), check, fmt_other(row),
    ]


def fmt_other(row: Row) -> str:
    """The worst interference over this row's two runs (see other_cpu_pct)."""
    values = [m.other_cpu_pct for m in (row.hw, row.base) if m and m.other_cpu_pct is not None]
    return f"{max(values):.0f}%" if values else "-"


EXPORT_HEADERS = ("db", "server", "scale", "format", "rows", "MiB", "seconds", "rows/s",
                  "RSS before MiB", "RSS peak MiB", "growth MiB")


def export_cells(e: ExportResult) -> list[str]:
    rate = f"{e.rows / e.seconds:,.0f}" if e.seconds else "-"
    rows = f"{e.rows:,}" + ("" if e.rows == e.expected_rows else f" (of {e.expected_rows:,})")
    if e.error:
        rows += f" ERROR {e.error}"
    return [e.db, e.server, f"{e.scale:g}", e.format, rows, f"{e.bytes / 2**20:.1f}",
            f"{e.seconds:.2f}", rate, f"{e.rss_before_mb:.0f}", f"{e.rss_peak_mb:.0f}",
            f"{e.rss_peak_mb - e.rss_before_mb:+.0f}"]


def print_report(res: Results) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    for db in res.meta["dbs"]:
        rows = summary_rows(res, db)
        if not rows:
            continue
        conns = res.meta["connections"]
        table = Table(title=f"{db}: requests/s, latency p50/p99 in ms (wrk -c{conns})")
        for h in TABLE_HEADERS:
            table.add_column(h, justify="left" if h in ("scenario", "server") else "right")
        for row in rows:
            table.add_row(*row_cells(row))
        console.print(table)
    if res.exports:
        table = Table(title="Headwater streaming GET /order_items: peak RSS (MiB)")
        for h in EXPORT_HEADERS:
            table.add_column(h, justify="right")
        for e in res.exports:
            table.add_row(*export_cells(e))
        console.print(table)
    for title, headers, cells in [*extra_tables(res), *separate_tables(res)]:
        table = Table(title=title)
        for i, h in enumerate(headers):
            table.add_column(h, justify="left" if i < 3 else "right")
        for line in cells:
            table.add_row(*line)
        console.print(table)
    if "cluster" in res.meta.get("parts", []):
        import cluster_bench as clb

        console.print(clb.note(res))
    for c in res.checks:
        if c["verdict"] != "same":
            console.print(f"[yellow]answer differs[/] {c['db']}/{c['server']}/{c['scenario']}: "
                          f"{c['verdict']}")
    for p in res.problems:
        console.print(f"[red]problem:[/] {p}")
    worst = max((m.other_cpu_pct or 0.0 for m in res.measurements), default=0.0)
    if worst > NOISY_OTHER_PCT:
        console.print(f"[yellow]noisy:[/] other work used up to {worst:.0f}% of the machine's "
                      f"CPU during a run (column 'other CPU'): rerun on a quiet machine before "
                      f"trusting small differences")
    console.print(f"Headwater: `headwater serve URL` defaults ({res.meta['headwater_workers']} "
                  f"worker(s), access log on, cache on); labelled rows turn something off")
    console.print(f"targets: headwater/baseline >= {RATIO_TARGET} on A and B; "
                  f"C p50 <= {C_OVER_B_TARGET:g} x B p50.  elapsed {res.meta['elapsed_s']}s")


def extra_tables(res: Results) -> list[tuple[str, Sequence[str], list[list[str]]]]:
    """The cache and writes parts' tables: (title, headers, rows), when they ran."""
    out: list[tuple[str, Sequence[str], list[list[str]]]] = []
    m = res.meta
    if "cache" in m.get("parts", []):
        import cache_bench as cb

        rows = cb.cache_rows(res)
        if rows:
            out.append((f"Result cache on {m['cache_db']} ({m['servers'][0]}, "
                        f"{m['part_duration_s']:g} s runs): requests/s, p50/p99 ms",
                        cb.CACHE_HEADERS, [cb.cache_cells(r, rows) for r in rows]))
    if {"big", "peer"} & set(m.get("parts", [])):
        import products_bench as pb

        out.extend(pb.tables(res))
    if "writes" in m.get("parts", []):
        import writes_bench as wb

        wrows = wb.write_rows(res)
        if wrows:
            out.append((f"Writes: POST order_items ({m['servers'][0]}, {m['part_duration_s']:g} s "
                        f"runs)", wb.WRITE_HEADERS, wrows))
    return out


def separate_tables(res: Results) -> list[tuple[str, Sequence[str], list[list[str]]]]:
    """The tables of SEPARATE_PARTS that ran (not plotted: their columns are their own)."""
    if "cluster" not in res.meta.get("parts", []):
        return []
    import cluster_bench as clb

    found = clb.table(res)
    return [found] if found else []


def extra_notes(res: Results) -> list[str]:
    notes = []
    if "cache" in res.meta.get("parts", []):
        import cache_bench as cb

        notes.append(cb.CACHE_NOTE)
    if {"big", "peer"} & set(res.meta.get("parts", [])):
        import products_bench as pb

        notes.append(pb.NOTE)
    if "writes" in res.meta.get("parts", []):
        import writes_bench as wb

        notes.append(wb.writes_note(res.meta["connections"]))
    return notes


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = ["---" if i < 2 else "---:" for i in range(len(headers))]
    return "\n".join([line(headers), line(align), *(line(r) for r in rows)])


def markdown_report(res: Results) -> str:
    m = res.meta
    parts = [
        f"Measured {m['started_at']} on {m['cpus']} CPUs ({m['cpu_busy_pct_at_start']:.0f}% busy "
        f"with other work at start), Python {m['python']}, uvicorn {m['uvicorn']}, granian {m['granian']}, "
        f"{m['wrk_version']}: `{m['wrk']}`; demo scale {m['scale']:g}; "
        f"{m['headwater_workers']} worker(s) per server, "
        f"wrk on loopback; Headwater as `headwater serve URL` gives it ({m['headwater_workers']} "
        f"worker(s), access log on, result cache on; rows labelled otherwise turn that off).",
        "",
        "Scenarios: "
        + "; ".join(f"**{k}** {v['title']} (`{v['headwater']}`)" for k, v in m["scenarios"].items())
        + ". Ceiling: a constant JSON endpoint (no database) on the same server.",
    ]
    for db in m["dbs"]:
        rows = summary_rows(res, db)
        if rows:
            parts += ["", f"**{db}**", "", md_table(TABLE_HEADERS, [row_cells(r) for r in rows])]
    for title, headers, cells in extra_tables(res):
        parts += ["", f"**{title}**", "", md_table(headers, cells)]
    if res.exports:
        parts += ["", "**Streaming export** (`GET /order_items`, JSON and `Accept: text/csv`; "
                  "RSS of the Headwater process tree, sampled every 50 ms)", "",
                  md_table(EXPORT_HEADERS, [export_cells(e) for e in res.exports])]
    parts += ["", f"Targets: hw/base ≥ {RATIO_TARGET} on A and B; "
              f"C p50 ≤ {C_OVER_B_TARGET:g} x B p50 (Headwater). 'other CPU': share of the "
              f"machine's CPU used by unrelated processes during the row's runs (noise)."]
    parts += [n for note in extra_notes(res) for n in ("", note)]
    # (a separate part lists its own in its section)
    problems = [p for p in res.problems if not p.startswith(SEPARATE_PARTS)]
    if problems:
        parts += ["", *(f"- problem: {p}" for p in problems)]
    for part in SEPARATE_PARTS:
        if part in m.get("parts", []):
            parts += ["", md_section(part, _separate_module(part).markdown(res))]
    return "\n".join(parts) + "\n"


#: Parts with a section of their own in latest.md (between markers) and a key of their own in
#: latest.json: a run without them keeps their previous results, and a run of nothing else
#: replaces only their section, keeping the other parts' results (and latest.png).
SEPARATE_PARTS = ("cluster",)


def _separate_module(part: str) -> Any:
    return importlib.import_module({"cluster": "cluster_bench"}[part])


def _markers(part: str) -> tuple[str, str]:
    return f"<!-- bench part {part}: begin -->", f"<!-- bench part {part}: end -->"


def md_section(part: str, body: str) -> str:
    begin, end = _markers(part)
    return f"{begin}\n{body.strip()}\n{end}"


def find_section(md: str, part: str) -> str | None:
    """The part's section of a latest.md, markers included."""
    begin, end = _markers(part)
    start = md.find(begin)
    stop = md.find(end, start)
    return md[start:stop + len(end)] if start >= 0 and stop >= 0 else None


def put_section(md: str, part: str, section: str) -> str:
    """``md`` with the part's section replaced by ``section`` (appended if it has none)."""
    old = find_section(md, part)
    if old is not None:
        return md.replace(old, section)
    return md.rstrip("\n") + "\n\n" + section + "\n"


def merge_previous(data: dict[str, Any], md: str, parts: Sequence[str],
                   prev_data: Mapping[str, Any], prev_md: str) -> tuple[dict[str, Any], str, bool]:
    """What to write after a run of ``parts``, given the previous latest.json and latest.md:
    (json, markdown, whether to redraw latest.png)."""
    ran = set(parts)
    if ran and ran <= set(SEPARATE_PARTS) and prev_data:
        merged = dict(prev_data)
        for part in SEPARATE_PARTS:
            if part in ran:
                merged[part] = data.get(part)
                section = find_section(md, part)
                if section is not None:
                    prev_md = put_section(prev_md, part, section)
        return merged, prev_md, False
    for part in SEPARATE_PARTS:
        if part not in ran and prev_data.get(part):
            data[part] = prev_data[part]
            section = find_section(prev_md, part)
            if section is not None:
                md = put_section(md, part, section)
    return data, md, True


def plot(res: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dbs = [db for db in res.meta["dbs"] if summary_rows(res, db)]
    extra = [t for t in extra_tables(res) if t[2]]
    if not dbs and not extra:
        return
    n = len(dbs) + len(extra)
    fig, axes = plt.subplots(1, n, figsize=(6.5 * n, 4.8), squeeze=False)
    series: list[tuple[str, Callable[[Row], float], str]] = [
        ("headwater", lambda r: (r.hw.rps or 0.0) if r.hw else 0.0, "#1f77b4"),
        ("baseline", lambda r: (r.base.rps or 0.0) if r.base else 0.0, "#ff7f0e"),
        ("ceiling", lambda r: r.ceiling or 0.0, "#bbbbbb"),
    ]
    width = 0.27
    for ax, db in zip(axes[0], dbs, strict=False):
        rows = summary_rows(res, db)
        xs = list(range(len(rows)))
        for i, (label, value, color) in enumerate(series):
            heights = [value(r) for r in rows]
            bars = ax.bar([x + (i - 1) * width for x in xs], heights, width, label=label,
                          color=color)
            ax.bar_label(bars, labels=[f"{h / 1000:.1f}k" if h else "" for h in heights],
                         fontsize=7, padding=1)
        top = max([v(r) for r in rows for _, v, _ in series] + [1.0])
        ax.set_ylim(0, top * 1.22)
        ax.set_xticks(xs, [f"{r.scenario}\n{r.server}" for r in rows])
        ax.set_title(db)
        ax.set_ylabel("requests/s")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", ncols=3)
    for ax, (title, headers, cells) in zip(axes[0][len(dbs):], extra, strict=True):
        if headers[0] == "setup":
            _plot_cache(ax, cells)
        elif "x ref" in headers:
            _plot_products(ax, cells)
        else:
            _plot_writes(ax, cells)
        ax.set_title(title.split(":")[0], fontsize=10)
    fig.suptitle(f"Headwater vs hand-written baseline (wrk -c{res.meta['connections']}, 1 worker, "
                 f"{res.meta['cpus']} CPUs)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _num(cell: str) -> float:
    try:
        return float(cell.replace(",", ""))
    except ValueError:
        return 0.0


def _plot_cache(ax: Any, cells: Sequence[Sequence[str]]) -> None:
    """requests/s per setup x scenario (cache table cells), with the targets as lines."""
    colors = {"reference": "#bbbbbb", "embedded": "#1f77b4", "strict": "#d62728",
              "bounded": "#2ca02c"}
    heights = [_num(c[2]) for c in cells]
    bars = ax.bar(range(len(cells)), heights, color=[colors.get(c[0], "#888888") for c in cells])
    ax.bar_label(bars, labels=[f"{h / 1000:.1f}k" if h else "" for h in heights], fontsize=6,
                 padding=1)
    ceiling = heights[0] if cells and cells[0][1] == "ceiling" else 0.0
    if ceiling:
        for share, style in ((0.6, "--"), (0.35, ":")):
            ax.axhline(ceiling * share, color="#555555", linestyle=style, linewidth=0.8,
                       label=f"{share} x ceiling")
        ax.legend(fontsize=7, loc="upper right")
    ax.set_xticks(range(len(cells)), [f"{c[0]}\n{c[1].replace('naive Redis ', 'naive ')}"
                                      for c in cells], fontsize=6, rotation=90)
    ax.set_ylim(0, max([*heights, 1.0]) * 1.2)
    ax.set_ylabel("requests/s")
    ax.grid(axis="y", alpha=0.3)


def _plot_products(ax: Any, cells: Sequence[Sequence[str]]) -> None:
    """requests/s per row of a big/peer table: scenario, server and config."""
    heights = [_num(c[3]) for c in cells]
    colors = ["#1f77b4" if c[1].startswith("headwater") else "#ff7f0e" for c in cells]
    bars = ax.bar(range(len(cells)), heights, color=colors)
    ax.bar_label(bars, labels=[f"{h / 1000:.1f}k" if h else "" for h in heights], fontsize=6,
                 padding=1)
    ax.set_xticks(range(len(cells)), [f"{c[0]}\n{c[1].split(' (')[0]} {c[2]}" for c in cells],
                  fontsize=6, rotation=90)
    ax.set_ylim(0, max([*heights, 1.0]) * 1.2)
    ax.set_ylabel("requests/s")
    ax.grid(axis="y", alpha=0.3)


def _plot_writes(ax: Any, cells: Sequence[Sequence[str]]) -> None:
    """rows/s per db x scenario (writes table cells): baseline, headwater, no events."""
    groups = list(dict.fromkeys((c[0], c[1]) for c in cells))
    apps = list(dict.fromkeys(c[2] for c in cells))
    colors = ["#ff7f0e", "#1f77b4", "#9ecae1"]
    width = 0.8 / max(1, len(apps))
    for i, app in enumerate(apps):
        heights = [next((_num(c[4]) for c in cells if (c[0], c[1], c[2]) == (*g, app)), 0.0)
                   for g in groups]
        bars = ax.bar([x + (i - (len(apps) - 1) / 2) * width for x in range(len(groups))],
                      heights, width, label=app, color=colors[i % len(colors)])
        ax.bar_label(bars, labels=[f"{h / 1000:.1f}k" if h else "" for h in heights],
                     fontsize=6, padding=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)), [f"{g[1]}\n{g[0]}" for g in groups])
    ax.set_ylabel("rows/s (log)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")


def save(res: Results, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "meta": res.meta,
        "datasets": res.datasets,
        "measurements": [dataclasses.asdict(m) for m in res.measurements],
        "summary": {db: [_row_json(r) for r in summary_rows(res, db)] for db in res.meta["dbs"]},
        "answer_checks": res.checks,
        "exports": [dataclasses.asdict(e) for e in res.exports],
        "problems": res.problems,
        "cache": _extra_json(res, "cache"),
        "cache_samples": res.cache_samples,
        "writes": _extra_json(res, "writes"),
        "products": _extra_json(res, "products"),
        "write_checks": res.write_checks,
        **{part: _separate_module(part).to_json(res) for part in SEPARATE_PARTS
           if part in res.meta.get("parts", [])},
    }
    try:
        prev_data = json.loads((out / "latest.json").read_text())
        prev_md = (out / "latest.md").read_text()
    except (OSError, ValueError):
        prev_data, prev_md = {}, ""
    data, md, redraw = merge_previous(data, markdown_report(res), res.meta.get("parts", []),
                                      prev_data if isinstance(prev_data, dict) else {}, prev_md)
    (out / "latest.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / "latest.md").write_text(md)
    if redraw:
        plot(res, out / "latest.png")
    log(f"saved {out / 'latest.json'}, latest.md" + (", latest.png" if redraw else
                                                    " (the other parts' results kept)"))


def _extra_json(res: Results, part: str) -> list[dict[str, Any]]:
    if part not in res.meta.get("parts", []) and not (
            part == "products" and {"big", "peer"} & set(res.meta.get("parts", []))):
        return []
    if part == "cache":
        import cache_bench as cb

        return cb.cache_json(res)
    if part == "products":
        import products_bench as pb

        return pb.to_json(res)
    import writes_bench as wb

    return list(wb.writes_json(res))


def _row_json(r: Row) -> dict[str, Any]:
    return {
        "scenario": r.scenario, "server": r.server,
        "headwater": None if r.hw is None else
        {"rps": r.hw.rps, "p50_ms": r.hw.p50_ms, "p99_ms": r.hw.p99_ms, "error": r.hw.error},
        "baseline": None if r.base is None else
        {"rps": r.base.rps, "p50_ms": r.base.p50_ms, "p99_ms": r.base.p99_ms,
         "error": r.base.error},
        "ceiling_rps": r.ceiling, "ratio": r.ratio, "c_over_b_p50": r.c_over_b,
        "target": target_mark(r), "answer_check": r.check, "other_cpu": fmt_other(r),
    }


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_options(argv)
    use_working_tree(opts.src)
    busy = wait_for_idle(opts.wait_idle)
    if busy > IDLE_BUSY_PCT:
        log(f"warning: the CPUs are {busy:.0f}% busy before the run (other work on the "
            f"machine): numbers will be noisy")
    log(f"bench: dbs={','.join(opts.dbs)} servers={','.join(opts.servers)} "
        f"scenarios={','.join(opts.scenarios)} duration={opts.duration:g}s")
    results = run_all(opts)
    save(results, opts.out)  # first: a reporting error must not lose a run's figures
    print_report(results)
    return 0


if __name__ == "__main__":
    # cache_bench and writes_bench `import run`: make that this module, not a second copy.
    sys.modules.setdefault("run", sys.modules["__main__"])
    sys.exit(main())
