"""The server process: streaming large reads, catalog reload on SIGHUP, degraded start, CLI."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from headwater.testing import ServerProcess
from tests.integration import oracle


@pytest.mark.parametrize("which", ["demo_sqlite", "demo_postgres"])
def test_large_reads_stream_in_chunks(request: pytest.FixtureRequest, which: str) -> None:
    db_url: str = request.getfixturevalue(which)
    env = {"HEADWATER_STREAM_THRESHOLD_ROWS": "50", "HEADWATER_STREAM_CHUNK_BYTES": "1024"}
    expected = oracle.ids(db_url, "SELECT id FROM order_items ORDER BY id")
    with ServerProcess(db_url, env=env) as server, httpx.Client(base_url=server.url) as client:
        chunks = 0
        body = b""
        with client.stream("GET", "/order_items?order=id",
                           headers={"Prefer": "count=exact"}) as r:
            assert r.status_code == 200
            assert r.headers["content-range"] == f"0-{len(expected) - 1}/{len(expected)}"
            assert "content-length" not in r.headers
            for chunk in r.iter_raw():
                chunks += 1
                body += chunk
        assert chunks >= 3
        assert [row["id"] for row in json.loads(body)] == expected
        r = client.get("/order_items?select=id&order=id&limit=120&offset=7")
        assert [row["id"] for row in r.json()] == expected[7:127]
        assert r.headers["content-range"] == "7-126/*"
        r = client.get("/order_items?select=id,quantity&order=id", headers={"Accept": "text/csv"})
        lines = r.text.splitlines()
        assert lines[0] == "id,quantity"
        assert len(lines) == len(expected) + 1
        # a small read still takes the one-statement path
        assert len(client.get("/order_items?limit=10").json()) == 10


def test_sighup_reloads_the_catalog(demo_sqlite: str, tmp_path: Path) -> None:
    path = tmp_path / "copy.db"
    shutil.copy(demo_sqlite.removeprefix("sqlite:///"), path)
    with ServerProcess(f"sqlite:///{path}") as server, httpx.Client(base_url=server.url) as c:
        assert c.get("/gadgets").status_code == 404
        conn = sqlite3.connect(path)
        conn.executescript("CREATE TABLE gadgets (id INTEGER PRIMARY KEY, name TEXT);"
                           "INSERT INTO gadgets VALUES (1, 'sprocket');")
        conn.close()
        server.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while c.get("/gadgets").status_code != 200:
            assert time.monotonic() < deadline, "catalog was not reloaded"
            time.sleep(0.1)
        assert c.get("/gadgets").json() == [{"id": 1, "name": "sprocket"}]
        assert c.get("/orders?limit=1").status_code == 200


@pytest.mark.parametrize("whom", ["supervisor", "group"])
def test_sigterm_with_a_shutdown_delay_is_unready_while_still_serving(
        demo_sqlite: str, whom: str) -> None:
    # "group": a service manager signals every process, and the supervisor then signals its
    # workers again: the second SIGTERM must not cut the delay short.
    server = ServerProcess(demo_sqlite, env={"HEADWATER_SHUTDOWN_DELAY": "3"})
    with server:
        assert server.proc is not None
        proc = server.proc
        assert httpx.get(server.url + "/-/ready").status_code == 200
        stopped = time.monotonic()
        if whom == "group":
            server.signal(signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
        seen: set[int] = set()
        while time.monotonic() - stopped < 1.5:  # well inside the delay, on fresh connections
            ready = httpx.get(server.url + "/-/ready")
            seen.add(ready.status_code)
            if ready.status_code == 503:
                assert ready.json()["status"] == "draining"
            assert httpx.get(server.url + "/products?id=eq.1&select=id").json() == [{"id": 1}]
            time.sleep(0.05)
        assert 503 in seen
        proc.wait(20)
        assert time.monotonic() - stopped >= 3  # served until the delay was over


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_stopped_server_removes_its_runtime_directory(
        demo_sqlite: str, tmp_path: Path, sig: signal.Signals, workers: str) -> None:
    server = ServerProcess(demo_sqlite, env={"TMPDIR": str(tmp_path)},
                           args=("--workers", workers))
    with server:
        assert server.proc is not None
        assert len(list(tmp_path.glob("headwater-serve-*"))) == 1
        server.proc.send_signal(sig)
        assert server.proc.wait(20) == 0
    assert list(tmp_path.glob("headwater-serve-*")) == []


def test_starts_degraded_when_the_database_is_down() -> None:
    server = ServerProcess("postgresql://postgres@127.0.0.1:1/nothing",
                           env={"HEADWATER_CONNECT_TIMEOUT": "0.5"})
    server.start(ready=False)
    try:
        with httpx.Client(base_url=server.url) as c:
            assert c.get("/-/live").status_code == 200
            ready = c.get("/-/ready")
            assert ready.status_code == 503
            assert ready.json()["checks"]["database"]["status"] == "unavailable"
            r = c.get("/orders")
            assert r.status_code == 503
            assert r.headers["retry-after"]
            assert r.json()["code"] == "PGRST001"
    finally:
        server.stop()


def test_cli_demo_and_serve_demo(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "headwater", "demo", str(tmp_path / "d.db"),
                          "--scale", "0.02"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert oracle.rows(f"sqlite:///{tmp_path / 'd.db'}", "SELECT count(*) FROM orders")[0][0] > 0
    # ``serve --demo`` builds ./headwater-demo.db in the working directory when missing.
    server = ServerProcess("", args=("--demo",))
    server.database_url = "--demo"
    server.args = ()
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        server.start(timeout=120)
        with httpx.Client(base_url=server.url) as c:
            assert len(c.get("/products?limit=3").json()) == 3
    finally:
        server.stop()
        os.chdir(cwd)
    assert (tmp_path / "headwater-demo.db").exists()


def test_several_workers(demo_sqlite: str) -> None:
    with ServerProcess(demo_sqlite, args=("--workers", "2")) as server, \
            httpx.Client(base_url=server.url) as c:
        for _ in range(20):
            assert c.get("/customers?limit=2").status_code == 200


def _timing(header: str) -> dict[str, float]:
    out = {}
    for part in header.split(","):
        name, _, dur = part.strip().partition(";dur=")
        out[name] = float(dur)
    return out


@pytest.mark.parametrize("which", ["demo_sqlite", "demo_postgres"])
def test_server_timing_names_each_stage(request: pytest.FixtureRequest, which: str) -> None:
    db_url: str = request.getfixturevalue(which)
    with ServerProcess(db_url) as server, httpx.Client(base_url=server.url) as c:
        path = "/orders?select=id,customer:customers(name)&order=id&limit=3"
        miss = c.get(path)
        assert miss.headers["x-cache"] == "MISS"
        stages = _timing(miss.headers["server-timing"])
        assert {"cache", "parse", "plan", "db", "encode", "total"} <= set(stages)
        assert all(v >= 0 for v in stages.values())
        assert stages["total"] >= stages["db"]
        hit = c.get(path)
        assert hit.headers["x-cache"] == "HIT"
        # answered before parsing: the cache and the response, no planning or database
        assert set(_timing(hit.headers["server-timing"])) == {"cache", "encode", "total"}
        write = c.patch("/orders?id=eq.-1", json={"status": "paid"})
        assert {"parse", "total"} <= set(_timing(write.headers["server-timing"]))
        for system in ("/-/live", "/", "/-/console/"):
            assert "total" in _timing(c.get(system).headers["server-timing"])
