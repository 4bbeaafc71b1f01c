"""Writes part of bench/run.py (``--parts writes``): inserts into ``order_items``.

- **D** single-row insert: one JSON object per request;
- **E** bulk insert: a JSON array of ``BULK_ROWS`` objects per request;

against Headwater's ``POST /order_items`` (``Content-Type: application/json``, default
``Prefer: return=minimal``) with events on (the default: one outbox row per written row, in
the same transaction) and with ``HEADWATER_EVENTS_ENABLED=false``, and against the baseline's
``POST /d`` and ``POST /e`` (raw asyncpg ``INSERT`` / ``INSERT ... SELECT * FROM unnest(...)``;
SQLite ``executemany`` in one transaction). Bodies are built once by bench/posts.lua.

Before the load, one request per endpoint is checked: HTTP 201 and the row counts
(``order_items`` +1 / +``BULK_ROWS``; the outbox likewise with events on, unchanged with them
off). Afterwards every row the part added (``order_items`` and outbox rows above the maxima
recorded at its start) is deleted, so the demo data is as before for later runs.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import run as R

POSTS_SCRIPT = R.BENCH_DIR / "posts.lua"
BULK_ROWS = 1000
BULK_CONNECTIONS = 8  # E: 8 x 1,000 rows in flight is enough to saturate one worker
OUTBOX = "_headwater_outbox"
D_TARGET = 0.6
E_TARGET = 0.8


@dataclass(frozen=True)
class WriteScenario:
    key: str
    rows: int
    baseline: str


WRITES = (WriteScenario("D", 1, "/d"), WriteScenario("E", BULK_ROWS, "/e"))
# (app label in measurements, extra env for the Headwater process or None for the baseline)
WRITE_APPS: tuple[tuple[str, dict[str, str] | None], ...] = (
    ("baseline", None),
    ("headwater-no-events", {"HEADWATER_EVENTS_ENABLED": "false"}),
    ("headwater", {}),
)


# --- the database: ranges, counts, cleanup -----------------------------------------------


def _sql(ds: R.Dataset, sql: str) -> Any:
    """One statement on the bench database; the first column of the first row."""
    if ds.kind == "postgres":
        async def go() -> Any:
            conn = await asyncpg.connect(ds.url, timeout=10)
            try:
                return await conn.fetchval(sql)
            finally:
                await conn.close()
        return asyncio.run(go())
    conn = sqlite3.connect(R.sqlite_file(ds.scale), isolation_level=None)
    try:
        conn.execute("pragma busy_timeout=5000")
        row = conn.execute(sql).fetchone()
        return row[0] if row else None
    finally:
        conn.close()


def has_outbox(ds: R.Dataset) -> bool:
    if ds.kind == "postgres":
        return _sql(ds, f"select to_regclass('public.{OUTBOX}') is not null") is True
    return bool(_sql(ds, f"select count(*) from sqlite_master where name = '{OUTBOX}'"))


def counts(ds: R.Dataset) -> tuple[int, int]:
    """(order_items rows, outbox rows)."""
    items = int(_sql(ds, "select count(*) from order_items"))
    outbox = int(_sql(ds, f"select count(*) from {OUTBOX}")) if has_outbox(ds) else 0
    return items, outbox


def cleanup(ds: R.Dataset, max_item: int, max_seq: int | None) -> None:
    """Delete what the part inserted: order_items above max_item, outbox rows above max_seq."""
    _sql(ds, f"delete from order_items where id > {max_item}")
    if has_outbox(ds):
        _sql(ds, f"delete from {OUTBOX} where seq > {max_seq or 0}")
    if ds.kind == "postgres":
        _sql(ds, "vacuum analyze order_items")
    else:
        _sql(ds, "pragma wal_checkpoint(truncate)")


# --- load --------------------------------------------------------------------------------


def bench_writes(ds: R.Dataset, server: str, opts: R.Options, results: R.Results) -> None:
    max_item = int(_sql(ds, "select coalesce(max(id), 0) from order_items"))
    max_seq = (int(_sql(ds, f"select coalesce(max(seq), 0) from {OUTBOX}"))
               if has_outbox(ds) else None)
    products = R._range(_range_row(ds, "products"))
    args_tail = [str(ds.orders.first), str(ds.orders.last), str(products.first),
                 str(products.last)]
    try:
        for app, env in WRITE_APPS:
            kind: R.AppName = "baseline" if env is None else "headwater"
            R.log(f"writes on {ds.kind} x {server}: {app}")
            try:
                with R.running(kind, server, ds, opts, extra_env=env, tag=f"writes-{app}") as run:
                    events = env is not None and env.get("HEADWATER_EVENTS_ENABLED") != "false"
                    for sc in WRITES:  # before any load: a load's last requests land late
                        path = sc.baseline if env is None else "/order_items"
                        check_once(run, ds, sc, path, args_tail, events, results, app)
                    for sc in WRITES:
                        path = sc.baseline if env is None else "/order_items"
                        m = R.Measurement(ds.kind, server, app, sc.key, f"POST {path}")
                        conns = opts.connections if sc.rows == 1 else min(opts.connections,
                                                                        BULK_CONNECTIONS)

                        def load(seconds: float, run: R.Running = run, path: str = path,
                                 rows: int = sc.rows, conns: int = conns) -> str:
                            return R.wrk_script(run.base_url, POSTS_SCRIPT,
                                                [path, str(rows), *args_tail], seconds, conns)

                        settle(ds, max_item, max_seq)
                        R.record(results, R.measure_load(run, m, load, opts, ds.pg_database,
                                                         duration=opts.part_duration))
            except (R.BenchError, OSError, httpx.HTTPError) as exc:
                msg = f"writes {ds.kind}/{server}/{app}: failed: {exc}"
                R.log(msg)
                results.problems.append(msg.splitlines()[0])
    finally:
        try:
            cleanup(ds, max_item, max_seq)
            R.log(f"  writes: deleted the inserted rows (order_items id > {max_item})")
        except Exception as exc:  # the measurements stand; say the data needs a --rebuild
            msg = f"writes {ds.kind}: cleanup failed ({exc}): run with --rebuild next time"
            R.log(msg)
            results.problems.append(msg)


def settle(ds: R.Dataset, max_item: int, max_seq: int | None) -> None:
    """Start every measured run from the same table: delete the rows earlier runs added (else
    each run inserts into a larger table and index than the one before, which favours
    whichever runs first), then write the WAL out, so that no run pays for a checkpoint it did
    not cause."""
    cleanup(ds, max_item, max_seq)
    if ds.kind == "postgres":
        _sql(ds, "checkpoint")


def _range_row(ds: R.Dataset, table: str) -> tuple[int, int]:
    lo = int(_sql(ds, f"select min(id) from {table}") or 1)
    hi = int(_sql(ds, f"select max(id) from {table}") or lo)
    return lo, hi


def sample_body(sc: WriteScenario, args_tail: Sequence[str]) -> str:
    of, _, pf, _ = (int(a) for a in args_tail)
    items = [f'{{"order_id":{of + k},"product_id":{pf + k % 3},"quantity":{1 + k % 9},'
             f'"unit_price":{1 + k % 500}.{k % 100:02d}}}' for k in range(sc.rows)]
    return items[0] if sc.rows == 1 else "[" + ",".join(items) + "]"


def check_once(run: R.Running, ds: R.Dataset, sc: WriteScenario, path: str,
               args_tail: Sequence[str], events: bool, results: R.Results, app: str) -> None:
    """One request before the load: 201, and the rows (and outbox rows) it should add."""
    before = counts(ds)
    r = httpx.post(run.base_url + path, content=sample_body(sc, args_tail),
                   headers={"Content-Type": "application/json"}, timeout=30.0)
    after = counts(ds)
    want_out = sc.rows if events else 0
    got = (after[0] - before[0], after[1] - before[1])
    verdict = "ok"
    if r.status_code != 201:
        verdict = f"HTTP {r.status_code}: {r.text[:200]}"
    elif got[0] != sc.rows or (app != "baseline" and got[1] != want_out):
        verdict = (f"added {got[0]} rows and {got[1]} outbox rows, expected {sc.rows} and "
                   f"{want_out if app != 'baseline' else 'any'}")
    results.write_checks.append({"db": ds.kind, "server": run.server, "app": app,
                                 "scenario": sc.key, "verdict": verdict,
                                 "rows_added": got[0], "outbox_added": got[1]})
    if verdict != "ok":
        R.log(f"  write check {app} {sc.key}: {verdict}")
        results.problems.append(f"writes {ds.kind}/{app}/{sc.key}: {verdict}")


# --- reporting ---------------------------------------------------------------------------


WRITE_HEADERS = ("db", "scenario", "app", "req/s", "rows/s", "p50", "p99", "x baseline",
                 "target", "check", "other CPU")


def write_rows(res: R.Results) -> list[list[str]]:
    out: list[list[str]] = []
    ms = res.measurements
    for db in res.meta["dbs"]:
        for sc in WRITES:
            base = next((m for m in ms if (m.db, m.app, m.scenario) == (db, "baseline", sc.key)
                         and m.path.startswith("POST")), None)
            for app, _ in WRITE_APPS:
                m = next((m for m in ms if (m.db, m.app, m.scenario) == (db, app, sc.key)
                          and m.path.startswith("POST")), None)
                if m is None:
                    continue
                ratio = (m.rps / base.rps if app != "baseline" and m.rps and base and base.rps
                         else None)
                target = "-"
                if app == "headwater-no-events" and ratio is not None:
                    # Like for like: the baseline writes no events either (issue #3); what
                    # events cost is the on/off ratio (issue #7, bench/events.py and below).
                    target = "ok" if ratio >= (D_TARGET if sc.key == "D" else E_TARGET) else "MISS"
                elif app == "headwater" and m.rps:
                    off = next((o for o in ms if (o.db, o.app, o.scenario)
                                == (db, "headwater-no-events", sc.key)
                                and o.path.startswith("POST")), None)
                    if off is not None and off.rps:
                        target = f"on/off {m.rps / off.rps:.2f}"
                check = next((c["verdict"] for c in res.write_checks
                              if (c["db"], c["app"], c["scenario"]) == (db, app, sc.key)), "-")
                out.append([
                    db, sc.key, app,
                    "error" if m.error else R.fmt_rps(m.rps),
                    R.fmt_rps(m.rps * sc.rows if m.rps else None),
                    R.fmt_ms(m.p50_ms), R.fmt_ms(m.p99_ms),
                    "-" if ratio is None else f"{ratio:.2f}", target,
                    "ok" if check == "ok" else ("-" if check == "-" else "NO"),
                    "-" if m.other_cpu_pct is None else f"{m.other_cpu_pct:.0f}%",
                ])
    return out


def writes_json(res: R.Results) -> list[dict[str, str]]:
    return [dict(zip(WRITE_HEADERS, r, strict=True)) for r in write_rows(res)]


def writes_note(connections: int) -> str:
    return (f"Targets: Headwater with events off (like the baseline, which writes no events) "
            f"≥ {D_TARGET} x baseline on D, ≥ {E_TARGET} x on E; for the default (events on) "
            f"the target column gives events on/off (issue #7: ≥ 0.8). Every measured run "
            f"starts from the same table (earlier runs' rows deleted, vacuumed, checkpointed). "
            f"D: one JSON object per `POST`, wrk -c{connections}; E: "
            f"{BULK_ROWS:,} objects per `POST`, wrk -c{min(connections, BULK_CONNECTIONS)}; rows/s "
            f"= req/s x rows per request. `headwater-no-events`: `HEADWATER_EVENTS_ENABLED=false` "
            f"(no outbox row per written row).")
