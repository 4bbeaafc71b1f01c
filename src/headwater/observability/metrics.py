"""Prometheus metrics on a registry owned by the app (never the process-global one), plus a
short rolling window of latencies for the console's ``/-/stats``."""

from __future__ import annotations

import bisect
import os
import time
from collections import deque
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from headwater.observability.shared_metrics import SharedMetrics

#: ``/-/stats`` figures summed over a server's workers.
SUMMED = ("requests_total", "errors_total", "client_errors_total", "requests_by_status", "db",
          "cache", "rate_limit_rejections", "outbox_pending")
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, window_seconds: float = 60.0, window_max: int = 100_000) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # Per-request counts are plain ints, exported by a collector at scrape time: the
        # client library's metrics take a lock per update, which the one event loop never
        # needs (measured: 7 µs → under 2 µs per request).
        self._requests: dict[tuple[str, int], int] = {}
        self._buckets = [0] * (len(_BUCKETS) + 1)
        self._duration_sum = 0.0
        self.db_queries = Counter("headwater_db_queries", "SQL statements sent to the database",
                                  registry=self.registry)
        self.db_pool_size = Gauge("headwater_db_pool_size", "Database connections open",
                                  registry=self.registry)
        self.db_pool_in_use = Gauge("headwater_db_pool_in_use", "Database connections in use",
                                    registry=self.registry)
        self.catalog_reloads = Counter("headwater_catalog_reloads", "Catalog reloads",
                                       ["result"], registry=self.registry)
        self.outbox_pending = Gauge("headwater_outbox_pending",
                                    "Outbox rows committed but not yet published",
                                    registry=self.registry)
        self.events_published = Counter("headwater_events_published",
                                        "Outbox rows published and confirmed by the bus",
                                        registry=self.registry)
        self.relay_errors = Counter("headwater_relay_errors", "Relay rounds that failed",
                                    ["kind"], registry=self.registry)
        self.events_handled = Counter("headwater_events_handled",
                                      "Event deliveries to handlers, by outcome",
                                      ["handler", "result"], registry=self.registry)
        #: The last count of pending outbox rows; None until the relay has counted.
        self.outbox_pending_count: int | None = None
        self.cache_bytes = Gauge("headwater_cache_bytes", "Bytes held by a cache tier", ["tier"],
                                 registry=self.registry)
        self.cache_evictions = Counter("headwater_cache_evictions",
                                       "Entries evicted from the in-process tier",
                                       registry=self.registry)
        self.breaker_state = Gauge("headwater_breaker_state",
                                   "Circuit breaker state: 0 closed, 1 half-open, 2 open",
                                   ["dependency"], registry=self.registry)
        self.breaker_transitions = Counter("headwater_breaker_transitions",
                                           "Breaker state changes", ["dependency", "to"],
                                           registry=self.registry)
        self.replica_lag = Gauge("headwater_replica_lag_seconds",
                                 "Replay lag of a read replica (+Inf: unreachable)", ["replica"],
                                 registry=self.registry)
        self.replica_usable = Gauge("headwater_replica_usable",
                                    "1 while a replica takes reads (reachable, within "
                                    "max_replica_lag, breaker not open)", ["replica"],
                                    registry=self.registry)
        self.replica_replay_lsn = Gauge("headwater_replica_replay_lsn",
                                        "WAL position a replica has replayed, in bytes",
                                        ["replica"], registry=self.registry)
        #: Fresh reads by the server that answered (``replica``, ``primary``, and
        #: ``fallback``: a replica failed and the primary answered); shared with the router.
        self.reads_served: dict[str, int] = {}
        self._cache_by_tier: dict[tuple[str, str], int] = {}
        self._cache_counts: dict[str, int] = {"hit": 0, "miss": 0, "stale": 0}
        self._evictions_seen = 0
        self.cache_enabled = False
        #: Requests refused by a rate limit; None while no rate limit is configured.
        self.rate_limit_rejections: int | None = None
        self.breakers: dict[str, str] = {}
        self.started = time.monotonic()
        self.started_at = time.time()
        self.window_seconds = window_seconds
        self._window: deque[tuple[float, float]] = deque(maxlen=window_max)
        self.registry.register(_RequestCollector(self))
        self.shared: SharedMetrics | None = None

    def observe(self, method: str, status: int, seconds: float,
                now: float | None = None) -> None:
        """``now``: ``time.perf_counter()`` at the end of the request, when the caller has it."""
        key = (method, status)
        requests = self._requests
        requests[key] = requests.get(key, 0) + 1
        self._buckets[bisect.bisect_left(_BUCKETS, seconds)] += 1
        self._duration_sum += seconds
        self._window.append((time.perf_counter() if now is None else now, seconds))

    def _by_status(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for (_, status), n in self._requests.items():
            out[status] = out.get(status, 0) + n
        return out

    def query(self) -> None:
        self.db_queries.inc()

    def set_outbox_pending(self, n: int) -> None:
        self.outbox_pending.set(n)
        self.outbox_pending_count = n

    def cache_result(self, tier: str, result: str) -> None:
        key = (tier, result)
        self._cache_by_tier[key] = self._cache_by_tier.get(key, 0) + 1
        self._cache_counts[result] = self._cache_counts.get(result, 0) + 1

    def replica(self, name: str, *, lag: float, usable: bool, replay: int) -> None:
        self.replica_lag.labels(name).set(lag)
        self.replica_usable.labels(name).set(int(usable))
        self.replica_replay_lsn.labels(name).set(replay)

    def cache_size(self, l1_bytes: int, evictions: int) -> None:
        self.cache_bytes.labels("l1").set(l1_bytes)
        if evictions > self._evictions_seen:
            self.cache_evictions.inc(evictions - self._evictions_seen)
            self._evictions_seen = evictions

    def share(self, runtime_dir: str, pool: Callable[[], tuple[int, int]]) -> None:
        """Serve the whole server's figures: this worker's and its siblings' (see
        ``shared_metrics``)."""
        def summed() -> dict[str, object]:
            mine = self._own_stats(pool())
            return {"started_at": self.started_at, **{k: mine[k] for k in SUMMED}}

        self.shared = SharedMetrics(runtime_dir, self.registry, summed)

    def render(self, pool: tuple[int, int]) -> bytes:
        self.db_pool_size.set(pool[0])
        self.db_pool_in_use.set(pool[1])
        if self.shared is not None:
            return self.shared.render()
        return generate_latest(self.registry)

    def stats(self, pool: tuple[int, int]) -> dict[str, object]:
        """``/-/stats``: counts for the whole server; uptime, latencies and breakers are the
        answering worker's (``pid``)."""
        out = self._own_stats(pool)
        if self.shared is not None:
            merged = self.shared.merged_stats()
            # The server's uptime (its first worker's), the same whichever worker answers:
            # the console's chart takes a smaller uptime for a restart.
            out["uptime_s"] = round(time.time() - merged.pop("started_at", self.started_at), 3)
            out.update(merged)
        out["pid"] = os.getpid()
        return out

    def _own_stats(self, pool: tuple[int, int]) -> dict[str, object]:
        self.db_pool_size.set(pool[0])
        self.db_pool_in_use.set(pool[1])
        now = time.perf_counter()  # the clock ``observe`` stamps the window with
        recent = sorted(d for t, d in self._window if now - t <= self.window_seconds)

        def pct(q: float) -> float | None:
            if not recent:
                return None
            return round(recent[min(len(recent) - 1, int(q * len(recent)))] * 1000, 3)

        by_status = self._by_status()
        total = sum(by_status.values())
        # Errors are what the server got wrong (5xx), as operators count them; a caller's own
        # mistakes (4xx) are counted apart, so an error rate is never inflated by bad requests.
        errors = sum(n for s, n in by_status.items() if s >= 500)
        client_errors = sum(n for s, n in by_status.items() if 400 <= s < 500)
        return {
            "uptime_s": round(time.monotonic() - self.started, 3),
            "requests_total": total,
            "errors_total": errors,
            "client_errors_total": client_errors,
            "requests_by_status": {str(k): v for k, v in sorted(by_status.items())},
            "latency_ms": {"p50": pct(0.50), "p99": pct(0.99)},
            "db": {"pool_size": pool[0], "pool_in_use": pool[1],
                   "queries_total": int(self.db_queries._value.get())},
            "cache": dict(self._cache_counts) if self.cache_enabled else None,
            # {} when no dependency has a breaker (SQLite without Redis): nothing to guard.
            "breakers": dict(self.breakers),
            "rate_limit_rejections": self.rate_limit_rejections,
            "outbox_pending": self.outbox_pending_count,
        }


class _RequestCollector(Collector):
    """``headwater_requests_total{method,status}``, the request-duration histogram and
    ``headwater_cache_requests_total{tier,result}``."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        requests = CounterMetricFamily("headwater_requests", "HTTP requests answered",
                                       labels=["method", "status"])
        for (method, status), n in sorted(m._requests.items()):
            requests.add_metric([method, str(status)], n)
        yield requests
        cache = CounterMetricFamily("headwater_cache_requests", "Cache lookups by tier and result",
                                    labels=["tier", "result"])
        for (tier, result), n in sorted(m._cache_by_tier.items()):
            cache.add_metric([tier, result], n)
        yield cache
        if m.reads_served:
            served = CounterMetricFamily("headwater_reads_served",
                                         "Fresh reads by the server that answered",
                                         labels=["server"])
            for server, n in sorted(m.reads_served.items()):
                served.add_metric([server], n)
            yield served
        cumulative, buckets = 0, []
        for bound, n in zip((*_BUCKETS, float("inf")), m._buckets, strict=True):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily("headwater_request_duration_seconds",
                                    "Time from request start to the last body byte",
                                    buckets=buckets, sum_value=m._duration_sum)
