"""One server's metrics across its worker processes.

Each worker keeps its own counters (plain ints on the hot path, see ``metrics``) and writes a
snapshot of them to ``<runtime_dir>/metrics/<pid>.json`` every ``INTERVAL`` seconds, at exit,
and whenever it answers a scrape. A scrape, on whichever worker it lands, is that worker's
live figures plus every other worker's last snapshot: counters and histograms are summed
(those of a worker that has exited included, so totals never go back), gauges are summed
(pool sizes, cache bytes) or their maximum taken (breaker state, outbox pending) over live
workers only. Another worker's figures are at most ``INTERVAL`` old; prometheus_client's
own multiprocess mode would take a lock per increment on every request instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

INTERVAL = 1.0
#: Gauges whose server-wide value is the largest of the workers' (the others: the sum).
MAX_GAUGES = frozenset({"headwater_breaker_state", "headwater_outbox_pending"})

Sample = tuple[str, dict[str, str], float]
Family = tuple[str, str, str, list[Sample]]  # name, type, documentation, samples


class Snapshot(msgspec.Struct, frozen=True):
    pid: int
    at: float
    families: list[Family]
    stats: dict[str, Any]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SharedMetrics:
    def __init__(self, directory: str, registry: CollectorRegistry,
                 stats: Any = None) -> None:
        self.directory = os.path.join(directory, "metrics")
        os.makedirs(self.directory, exist_ok=True)
        self.registry = registry
        #: Returns this worker's summable ``/-/stats`` figures.
        self.stats = stats
        self.pid = os.getpid()
        self._task: asyncio.Task[None] | None = None

    def _own(self) -> Snapshot:
        families = [(m.name, m.type, m.documentation,
                     [(s.name, dict(s.labels), float(s.value)) for s in m.samples
                      if not s.name.endswith("_created")])
                    for m in self.registry.collect()]
        return Snapshot(self.pid, time.time(), families,
                        self.stats() if self.stats is not None else {})

    def write(self, own: Snapshot | None = None) -> Snapshot:
        own = own or self._own()
        path = os.path.join(self.directory, f"{self.pid}.json")
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(msgspec.json.encode(own))
        os.replace(tmp, path)
        return own

    def _others(self) -> Iterator[tuple[Snapshot, bool]]:
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        for name in names:
            if not name.endswith(".json") or name == f"{self.pid}.json":
                continue
            try:
                with open(os.path.join(self.directory, name), "rb") as f:
                    snap = msgspec.json.decode(f.read(), type=Snapshot)
            except (OSError, msgspec.DecodeError):
                continue  # a worker that never wrote, or a torn file: skip it this time
            yield snap, _alive(snap.pid)

    def all(self) -> list[tuple[Snapshot, bool]]:
        """This worker's live snapshot (written out, so that a later scrape elsewhere never
        sees less than this one did) and the others' last ones, with whether each is alive."""
        return [(self.write(), True), *self._others()]

    def render(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Merged(self.all()))
        return generate_latest(registry)

    def merged_stats(self) -> dict[str, Any]:
        """``/-/stats``'s counts summed over the workers, and when the first started."""
        snaps = self.all()
        out: dict[str, Any] = {"workers": sorted(s.pid for s, alive in snaps if alive)}
        for snap, alive in snaps:
            for key, value in snap.stats.items():
                if isinstance(value, dict):
                    into = out.setdefault(key, {})
                    for k, v in value.items():
                        into[k] = into.get(k, 0) + v
                elif value is None:
                    out.setdefault(key, None)
                elif key == "started_at":
                    out[key] = min(out.get(key, value), value)
                elif key == "outbox_pending":
                    if alive:
                        out[key] = max(out.get(key) or 0, value)
                else:
                    out[key] = (out.get(key) or 0) + value
        return out

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="headwater-metrics-snapshot")

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(OSError):
                self.write()
            await asyncio.sleep(INTERVAL)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(OSError):
            self.write()


class _Merged(Collector):
    def __init__(self, snaps: list[tuple[Snapshot, bool]]) -> None:
        self.snaps = snaps

    def collect(self) -> Iterator[Metric]:
        families: dict[str, tuple[str, str, dict[tuple[str, tuple[tuple[str, str], ...]],
                                                  float]]] = {}
        for snap, alive in self.snaps:
            for name, kind, doc, samples in snap.families:
                if kind == "gauge" and not alive:
                    continue
                _, _, values = families.setdefault(name, (kind, doc, {}))
                for sample, labels, value in samples:
                    key = (sample, tuple(sorted(labels.items())))
                    if kind == "gauge" and name in MAX_GAUGES:
                        values[key] = max(values.get(key, value), value)
                    else:
                        values[key] = values.get(key, 0.0) + value
        for name, (kind, doc, values) in families.items():
            metric = Metric(name, doc, kind)
            for (sample, pairs), value in values.items():
                metric.add_sample(sample, dict(pairs), value)
            yield metric
        workers = Metric("headwater_worker_requests", "HTTP requests answered, by worker "
                         "process (exited ones included)", "counter")
        live = Metric("headwater_workers", "Worker processes serving now", "gauge")
        for snap, _alive_now in self.snaps:
            answered = sum(v for name, _, _, samples in snap.families
                           if name == "headwater_requests"
                           for s, _, v in samples if s == "headwater_requests_total")
            workers.add_sample("headwater_worker_requests_total", {"pid": str(snap.pid)},
                               answered)
        live.add_sample("headwater_workers", {}, float(sum(a for _, a in self.snaps)))
        yield workers
        yield live
