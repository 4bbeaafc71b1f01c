"""Cache part of bench/run.py (``--parts cache``): Headwater's result cache, warm and cold.

Three setups of the Headwater process, each started fresh:

- ``embedded``: ``HEADWATER_CACHE_ENABLED=true``, no Redis (L1 only);
- ``strict``:   plus ``HEADWATER_REDIS_URL``, ``HEADWATER_CACHE_MODE=strict`` and a namespace
  unique to this bench run;
- ``bounded``:  the same with ``HEADWATER_CACHE_MODE=bounded``,
  ``HEADWATER_CACHE_BOUNDED_LAG_MS=100``.

Per setup: A, B and C **warm** (wrk walks only the first ``WARM_IDS`` ids, each read once
before the load, so nearly every request is an L1 hit; a sample must answer ``X-Cache: HIT``)
and C **cold** (bench/cold.lua: every request carries a ``limit`` never sent before, so every
request misses; samples must answer ``X-Cache: MISS``). The reference is the baseline's
``/ceiling`` on the same server in the same run, plus a naive Redis cache-aside endpoint.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import run as R

REDIS_URL = "redis://127.0.0.1:6379/0"
COLD_SCRIPT = R.BENCH_DIR / "cold.lua"
SETUPS = ("embedded", "strict", "bounded")
WARM_IDS = 50
WARM_KEYS = ("A", "B", "C")
# Targets (requests/s as a share of the ceiling endpoint's, same server, same run).
L1_TARGET = {"embedded": 0.6, "strict": 0.35, "bounded": 0.6}
C_WARM_OVER_COLD_TARGET = 5.0
COLD_STEP = 1_000_000  # each wrk run's limit values start at a new multiple of this


def setup_env(setup: str, namespace: str) -> dict[str, str]:
    env = {"HEADWATER_CACHE_ENABLED": "true"}
    if setup != "embedded":
        env.update({"HEADWATER_REDIS_URL": REDIS_URL, "HEADWATER_CACHE_MODE": setup,
                    "HEADWATER_CACHE_NAMESPACE": f"{namespace}-{setup}"})
    if setup == "bounded":
        env["HEADWATER_CACHE_BOUNDED_LAG_MS"] = "100"
    return env


def redis_pids() -> list[int]:
    """redis-server's pids: its CPU is work for the bench, not interference."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "redis-server":
                    pids.append(int(entry.name))
    return pids


def redis_ok() -> str | None:
    """None if Redis answers PING, else why not."""
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # any client/connection error: report it, skip the Redis setups
        return f"{type(exc).__name__}: {exc}"
    return None


def x_cache(client: httpx.Client, url: str) -> str:
    r = client.get(url)
    if r.status_code != 200:
        return f"HTTP {r.status_code}"
    return str(r.headers.get("x-cache", "none"))


class ColdBase:
    """A new ``limit`` base for every wrk run of the cold scenario."""

    def __init__(self) -> None:
        self.n = 0

    def next(self) -> int:
        self.n += 1
        return COLD_STEP * self.n


@dataclass(frozen=True)
class CacheRow:
    setup: str  # embedded | strict | bounded | reference
    scenario: str  # A-warm ... C-cold, ceiling, naive-A-warm
    m: R.Measurement | None
    ceiling: float | None
    x_cache: str

    @property
    def ratio(self) -> float | None:
        if self.m is None or not self.m.rps or not self.ceiling:
            return None
        return self.m.rps / self.ceiling


def _app(setup: str) -> str:
    return f"hw-cache-{setup}"


def bench_cache(ds: R.Dataset, server: str, opts: R.Options, results: R.Results,
                setups: Sequence[str] = SETUPS) -> None:
    duration = opts.part_duration
    extra = redis_pids()
    namespace = f"hwbench-{uuid.uuid4().hex[:12]}"
    why_no_redis = redis_ok()
    if why_no_redis:
        msg = f"cache: Redis at {REDIS_URL} unavailable ({why_no_redis}): strict/bounded skipped"
        R.log(msg)
        results.problems.append(msg)
        setups = [s for s in setups if s == "embedded"]
    warm_orders = R.IdRange(ds.orders.first, ds.orders.first + WARM_IDS - 1)
    warm_customers = R.IdRange(ds.customers.first, ds.customers.first + WARM_IDS - 1)
    samples: list[dict[str, Any]] = []
    results.cache_samples = samples

    def ids_load(run: R.Running, template: str, ids: R.IdRange) -> Any:
        def load(seconds: float) -> str:
            return R.wrk(run.base_url, template, ids, seconds, opts.connections)
        return load

    R.log(f"cache on {ds.kind} x {server}: baseline (ceiling, naive Redis cache-aside)")
    try:
        env = {} if why_no_redis else {"BASELINE_REDIS_URL": REDIS_URL}
        with R.running("baseline", server, ds, opts, extra_env=env, tag="cache") as run:
            m = R.Measurement(ds.kind, server, "baseline", "cache-ceiling", R.CEILING.baseline)
            R.record(results, R.measure_load(run, m, ids_load(run, R.CEILING.baseline, ds.orders),
                                             opts, ds.pg_database, duration=duration))
            if not why_no_redis:
                tpl = "/naive?id={id}"
                with httpx.Client(base_url=run.base_url, timeout=10.0) as client:
                    for i in range(warm_orders.first, warm_orders.last + 1):
                        client.get(tpl.replace("{id}", str(i)))
                    seen = x_cache(client, tpl.replace("{id}", str(warm_orders.first)))
                samples.append({"setup": "reference", "scenario": "naive-A-warm", "x_cache": seen})
                m = R.Measurement(ds.kind, server, "baseline-naive-redis", "A-warm", tpl)
                R.record(results, R.measure_load(run, m, ids_load(run, tpl, warm_orders), opts,
                                                 ds.pg_database, duration=duration,
                                                 extra_pids=extra))
    except (R.BenchError, OSError, httpx.HTTPError) as exc:
        msg = f"cache {ds.kind}/{server}: baseline failed: {exc}"
        R.log(msg)
        results.problems.append(msg.splitlines()[0])

    cold = ColdBase()
    for setup in setups:
        R.log(f"cache on {ds.kind} x {server}: headwater, {setup}")
        try:
            with R.running("headwater", server, ds, opts, extra_env=setup_env(setup, namespace),
                           tag=f"cache-{setup}") as run:
                client = httpx.Client(base_url=run.base_url, timeout=10.0)
                with client:
                    for key in WARM_KEYS:
                        sc = R.SCENARIOS[key]
                        ids = warm_orders if sc.ids == "orders" else warm_customers
                        for i in range(ids.first, ids.last + 1):  # one pass: fills the cache
                            client.get(sc.headwater.replace("{id}", str(i)))
                        seen = x_cache(client, sc.headwater.replace("{id}", str(ids.mid)))
                        samples.append({"setup": setup, "scenario": f"{key}-warm",
                                        "x_cache": seen})
                        if "HIT" not in seen.upper():
                            results.problems.append(f"cache {setup} {key}-warm: a pre-warmed "
                                                    f"read answered X-Cache: {seen}")
                        m = R.Measurement(ds.kind, server, _app(setup), f"{key}-warm",
                                          sc.headwater)
                        R.record(results, R.measure_load(
                            run, m, ids_load(run, sc.headwater, ids), opts, ds.pg_database,
                            duration=duration, extra_pids=extra))
                    tpl = R.SCENARIOS["C"].headwater.replace("limit=20", "limit={n}")
                    probe = [x_cache(client, tpl.replace("{id}", str(ds.customers.mid + k))
                                     .replace("{n}", str(cold.next() + k))) for k in range(2)]
                    seen = ",".join(probe)
                    samples.append({"setup": setup, "scenario": "C-cold", "x_cache": seen})
                    if any("MISS" not in p.upper() for p in probe):
                        results.problems.append(f"cache {setup} C-cold: a never-seen read "
                                                f"answered X-Cache: {seen}")

                    def cold_load(seconds: float, run: R.Running = run, tpl: str = tpl) -> str:
                        args = [tpl, str(ds.customers.first), str(ds.customers.last),
                                str(cold.next())]
                        return R.wrk_script(run.base_url, COLD_SCRIPT, args, seconds,
                                            opts.connections)

                    m = R.Measurement(ds.kind, server, _app(setup), "C-cold", tpl)
                    R.record(results, R.measure_load(run, m, cold_load, opts, ds.pg_database,
                                                     duration=duration, extra_pids=extra))
        except (R.BenchError, OSError, httpx.HTTPError) as exc:
            msg = f"cache {ds.kind}/{server}/{setup}: headwater failed: {exc}"
            R.log(msg)
            results.problems.append(msg.splitlines()[0])


# --- reporting ---------------------------------------------------------------------------


def cache_rows(res: R.Results) -> list[CacheRow]:
    ms = res.measurements
    # (the big and peer parts keep theirs in the same list, keyed by app)
    samples = {(s["setup"], s["scenario"]): s["x_cache"] for s in res.cache_samples
               if "setup" in s}
    ceiling_m = next((m for m in ms if m.scenario == "cache-ceiling"), None)
    ceiling = ceiling_m.rps if ceiling_m else None
    rows = [CacheRow("reference", "ceiling", ceiling_m, ceiling, "-")]
    naive = next((m for m in ms if m.app == "baseline-naive-redis"), None)
    if naive is not None:
        rows.append(CacheRow("reference", "naive Redis A-warm", naive, ceiling,
                             samples.get(("reference", "naive-A-warm"), "-")))
    for setup in SETUPS:
        for sc in (*(f"{k}-warm" for k in WARM_KEYS), "C-cold"):
            m = next((m for m in ms if m.app == _app(setup) and m.scenario == sc), None)
            if m is not None:
                rows.append(CacheRow(setup, sc, m, ceiling, samples.get((setup, sc), "-")))
    return rows if len(rows) > 1 else []


def _rps(rows: Sequence[CacheRow], setup: str, sc: str) -> float | None:
    return next((r.m.rps for r in rows if r.setup == setup and r.scenario == sc and r.m), None)


def warm_over_cold(rows: Sequence[CacheRow], setup: str) -> float | None:
    warm, cold = _rps(rows, setup, "C-warm"), _rps(rows, setup, "C-cold")
    return warm / cold if warm and cold else None


CACHE_HEADERS = ("setup", "scenario", "rps", "p50", "p99", "x ceiling", "C warm/cold",
                 "target", "X-Cache", "other CPU")


def cache_cells(row: CacheRow, rows: Sequence[CacheRow]) -> list[str]:
    m = row.m
    ratio = row.ratio
    wc = warm_over_cold(rows, row.setup) if row.scenario == "C-cold" else None
    target = "-"
    if row.setup in L1_TARGET and row.scenario.endswith("-warm") and ratio is not None:
        target = "ok" if ratio >= L1_TARGET[row.setup] else "MISS"
    elif wc is not None:
        target = "ok" if wc >= C_WARM_OVER_COLD_TARGET else "MISS"
    other = "-" if m is None or m.other_cpu_pct is None else f"{m.other_cpu_pct:.0f}%"
    return [row.setup, row.scenario,
            "error" if m and m.error else R.fmt_rps(m.rps if m else None),
            R.fmt_ms(m.p50_ms if m else None), R.fmt_ms(m.p99_ms if m else None),
            "-" if ratio is None else f"{ratio:.2f}", "-" if wc is None else f"{wc:.1f}",
            target, row.x_cache, other]


def cache_json(res: R.Results) -> list[dict[str, Any]]:
    rows = cache_rows(res)
    return [dict(zip(CACHE_HEADERS, cache_cells(r, rows), strict=True)) for r in rows]


CACHE_NOTE = (f"Targets: warm L1 hits ≥ {L1_TARGET['embedded']} x ceiling (embedded, bounded), "
              f"≥ {L1_TARGET['strict']} x ceiling (strict); C warm ≥ "
              f"{C_WARM_OVER_COLD_TARGET:g} x C cold. Warm: the first {WARM_IDS} ids, read once "
              f"before the load; cold: every request a new `limit` (bench/cold.lua).")
