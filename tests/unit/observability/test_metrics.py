"""``/-/stats`` over several workers: every count is the server's, summed over them."""

from __future__ import annotations

import os
from pathlib import Path

from headwater.observability.metrics import Metrics


def _worker(runtime_dir: Path, pid: int, statuses: list[int]) -> Metrics:
    metrics = Metrics()
    metrics.share(str(runtime_dir), lambda: (0, 0))
    assert metrics.shared is not None
    metrics.shared.pid = pid  # another worker of the same server
    for status in statuses:
        metrics.observe("GET", status, 0.001)
    return metrics


def test_stats_sum_every_count_over_the_workers(tmp_path: Path) -> None:
    other = _worker(tmp_path, os.getppid(), [200, 404, 404, 500])
    assert other.shared is not None
    other.shared.write()
    mine = _worker(tmp_path, os.getpid(), [200, 400])

    stats = mine.stats((0, 0))

    assert stats["requests_total"] == 6
    assert stats["requests_by_status"] == {"200": 2, "400": 1, "404": 2, "500": 1}
    assert stats["errors_total"] == 1
    # Was this worker's own count (1) beside a server-wide requests_by_status.
    assert stats["client_errors_total"] == 3
