"""Reading a server's ``/-/metrics`` across its workers: another worker's figures reach a
scrape from its last snapshot, at most ``shared_metrics.INTERVAL`` old."""

from __future__ import annotations

import re
import time

import httpx

from headwater.observability.shared_metrics import INTERVAL


def queries(client: httpx.Client) -> float:
    """``headwater_db_queries_total`` as one scrape sees it."""
    m = re.search(r"^headwater_db_queries_total (\S+)$", client.get("/-/metrics").text, re.M)
    assert m
    return float(m[1])


def settled_queries(client: httpx.Client, timeout: float = 10.0) -> float:
    """The server-wide count once every worker's snapshot has caught up: two scrapes more
    than a snapshot interval apart that agree."""
    deadline = time.monotonic() + timeout
    last = queries(client)
    while True:
        time.sleep(INTERVAL + 0.2)
        now = queries(client)
        if now == last or time.monotonic() > deadline:
            return now
        last = now
