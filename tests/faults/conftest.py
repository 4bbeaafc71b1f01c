"""The fault suite's harness: run the load generator in another process, break a real
service on a timeline, restore it, and tabulate what clients saw."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

RESULTS = Path(__file__).parent / "results"


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
