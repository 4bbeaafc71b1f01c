"""The fault suite's harness: run the load generator in another process, break a real
service on a timeline, restore it, and tabulate what clients saw."""

from __future__ import annotations

import asyncio
import glob
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from headwater.testing import ServerProcess

RESULTS = Path(__file__).parent / "results"

PG_VERSION = Path(glob.glob("/etc/postgresql/*")[0]).name if glob.glob("/etc/postgresql/*") \
    else "15"
REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port",
               "6379", "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
               "--logfile", "/var/log/redis/ci.log"]


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=False, capture_output=True, timeout=60)


def pg_stop() -> None:
    sh("pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, "main", "stop", "-m", "fast")


def pg_start() -> None:
    ready = subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], check=False,
                           timeout=10).returncode == 0
    if not ready:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, "main",
                        "start"], check=True, capture_output=True, timeout=60)


def redis_stop() -> None:
    sh("redis-cli", "-h", "127.0.0.1", "shutdown", "nosave")


def redis_start() -> None:
    alive = subprocess.run(["redis-cli", "-h", "127.0.0.1", "ping"], capture_output=True,
                           check=False, timeout=10).stdout.strip() == b"PONG"
    if not alive:
        subprocess.run(REDIS_START, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def fault_db(pg_admin: str) -> Iterator[str]:
    """A demo database of the suite's own: the load writes into it."""
    from headwater.demo import build_demo
    from tests.conftest import _pg_execute, pg_url_for

    name = "hw_faults_" + secrets.token_hex(4)
    asyncio.run(_pg_execute(pg_admin, f'CREATE DATABASE "{name}"'))
    url = pg_url_for(name)
    asyncio.run(build_demo(url, scale=0.2))
    try:
        yield url
    finally:
        pg_start()
        asyncio.run(_pg_execute(pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def server(fault_db: str, redis_url: str, request: pytest.FixtureRequest,
           ) -> Iterator[ServerProcess]:
    extra = getattr(request, "param", {})
    env = {"HEADWATER_REDIS_URL": redis_url, "HEADWATER_CACHE_NAMESPACE":
           "f" + secrets.token_hex(4), "HEADWATER_STATEMENT_TIMEOUT": "1",
           "HEADWATER_CONNECT_TIMEOUT": "1", "HEADWATER_POOL_TIMEOUT": "2",
           # One node as the README's fault table describes it: one L1 copy of each cached
           # read to fall back on, one set of in-flight slots (both are per worker process).
           "HEADWATER_WORKERS": "1", **extra}
    with ServerProcess(fault_db, env=env) as s:
        yield s


@dataclass
class Sample:
    at: float
    latency: float
    status: int
    kind: str
    x_cache: str
    marker: str


@dataclass
class Run:
    samples: list[Sample]
    start_epoch: float
    marks: dict[str, float] = field(default_factory=dict)

    def offset(self, name: str) -> float:
        return self.marks[name] - self.start_epoch

    def between(self, a: float, b: float, *kinds: str) -> list[Sample]:
        return [s for s in self.samples if a <= s.at < b and (not kinds or s.kind in kinds)]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load(url: str, out: Path, *, rate: float, duration: float, mix: str,
         timeline: Sequence[tuple[float, str, Callable[[], None]]] = (),
         closed: int = 0, timeout: float = 5.0) -> Run:
    """Start the generator, run ``timeline`` actions at their offsets, collect the samples."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.loadgen", "--url", url, "--rate", str(rate),
         "--duration", str(duration), "--mix", mix, "--out", str(out), "--timeout",
         str(timeout), "--closed", str(closed)])
    marks: dict[str, float] = {}
    began = time.time()
    try:
        for at, name, action in sorted(timeline, key=lambda t: t[0]):
            delay = began + at - time.time()
            if delay > 0:
                time.sleep(delay)
            marks[name + ":begin"] = time.time()
            action()
            marks[name + ":done"] = time.time()
        proc.wait(timeout=duration + timeout + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = out.read_text().splitlines()
    header = json.loads(lines[0])
    samples = [Sample(*json.loads(line)) for line in lines[1:]]
    return Run(samples, header["start_epoch"], marks)


@dataclass
class Row:
    scenario: str
    requests: int
    ok: int
    s503: int
    s504: int
    other: int
    p50_ms: float
    p99_ms: float
    recovery_s: float | None
    note: str = ""


def summarize(scenario: str, samples: list[Sample], recovery: float | None,
              note: str = "") -> Row:
    lat = [s.latency * 1000 for s in samples]
    return Row(scenario, len(samples), sum(200 <= s.status < 300 for s in samples),
               sum(s.status == 503 for s in samples), sum(s.status == 504 for s in samples),
               sum(not (200 <= s.status < 300) and s.status not in (503, 504) for s in samples),
               round(percentile(lat, 0.5), 2), round(percentile(lat, 0.99), 2),
               None if recovery is None else round(recovery, 2), note)


@pytest.fixture(scope="session")
def fault_table() -> Iterator[list[Row]]:
    rows: list[Row] = []
    yield rows
    if rows:
        # scenarios run module by module; the table lists them by number
        rows.sort(key=lambda r: int(r.scenario.split(".")[0]) if r.scenario[0].isdigit() else 99)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "latest.json").write_text(json.dumps([r.__dict__ for r in rows], indent=1))
        (RESULTS / "latest.md").write_text(markdown(rows))


def markdown(rows: list[Row]) -> str:
    head = ("| scenario | requests | 2xx | 503 | 504 | other | p50 ms | p99 ms | recovery s "
            "| note |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
    return head + "".join(
        f"| {r.scenario} | {r.requests} | {r.ok} | {r.s503} | {r.s504} | {r.other} | "
        f"{r.p50_ms} | {r.p99_ms} | {'-' if r.recovery_s is None else r.recovery_s} | "
        f"{r.note} |\n" for r in rows)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    path = RESULTS / "latest.md"
    if path.exists() and path.stat().st_mtime > time.time() - 3600:
        terminalreporter.write_sep("-", "fault-injection results")
        terminalreporter.write(path.read_text())
