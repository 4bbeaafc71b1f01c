"""Headwater behind pgbouncer in transaction mode (docs/scaling.md's connection budget), for
real: Debian's pgbouncer (1.18: no prepared-statement tracking, startup parameters refused)
in front of the local PostgreSQL, a two-server-connection pool shared by every client
connection of a two-worker Headwater.

- with the defaults, ``serve`` refuses at once with one line naming the setting to change;
- with ``db_prepared_statements = false`` every kind of read and write works, the answers are
  the database's, and PostgreSQL sees no more connections than pgbouncer's pool;
- ``--read-only`` still refuses writes (405) without its session setting.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from headwater.demo.dataset import build_demo
from headwater.testing import ServerProcess, free_port
from tests.conftest import CI, _pg_execute, pg_url_for
from tests.integration import oracle

#: Server connections pgbouncer opens per database and user: fewer than Headwater's workers
#: hold client connections, so transactions of different clients share them.
POOL = 2
OFF = {"HEADWATER_DB_PREPARED_STATEMENTS": "false"}


def _pgbouncer() -> str | None:
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        # As the rig installs HAProxy: a Debian package, only when missing.
        subprocess.run(["apt-get", "install", "-y", "-qq", "pgbouncer"], check=False,
                       capture_output=True, timeout=300)
        found = shutil.which("pgbouncer") or (
            "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)
    return found


@pytest.fixture(scope="module")
def pgbouncer() -> Iterator[int]:
    binary = _pgbouncer()
    if binary is None:
        if CI:
            pytest.fail("pgbouncer is not installed (required under CI=true)")
        pytest.skip("pgbouncer is not installed")
    # Not under pytest's own directory: the postgres user it runs as must reach it.
    home = Path(tempfile.mkdtemp(prefix="hw-pgbouncer-"))
    port = free_port()
    (home / "users.txt").write_text('"postgres" ""\n')
    (home / "pgbouncer.ini").write_text(f"""[databases]
* = host=127.0.0.1 port=5432
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {home}/users.txt
pool_mode = transaction
default_pool_size = {POOL}
max_client_conn = 200
logfile = {home}/pgbouncer.log
pidfile = {home}/pgbouncer.pid
""")
    command = [binary, "-d", str(home / "pgbouncer.ini")]
    if os.geteuid() == 0:  # it will not run as root
        shutil.chown(home, "postgres")
        for f in home.iterdir():
            shutil.chown(f, "postgres")
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, timeout=30)
    pidfile = home / "pgbouncer.pid"
    deadline = time.monotonic() + 10
    while not pidfile.exists():
        assert time.monotonic() < deadline, (home / "pgbouncer.log").read_text()
        time.sleep(0.05)
    try:
        yield port
    finally:
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def database(pg_admin: str) -> Iterator[str]:
    name = "hw_bouncer_" + secrets.token_hex(4)
    asyncio.run(_pg_execute(pg_admin, f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(build_demo(pg_url_for(name), scale=0.05))
        yield name
    finally:
        asyncio.run(_pg_execute(pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def through(port: int, name: str) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/{name}"


def test_the_defaults_are_refused_with_one_line_naming_the_setting(
        pgbouncer: int, database: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "headwater", "serve",
                           through(pgbouncer, database), "--port", str(free_port())],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "DATABASE_URL: the server refused the connection (unsupported startup parameter: "
        "statement_timeout): behind a pooler in transaction mode (pgbouncer) set "
        "db_prepared_statements = false (HEADWATER_DB_PREPARED_STATEMENTS=false)"], lines


def test_reads_and_writes_through_transaction_pooling(pgbouncer: int, database: str) -> None:
    direct = pg_url_for(database)
    with ServerProcess(through(pgbouncer, database), env=OFF) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        # Many statements of every shape, from both workers at once, on two server
        # connections: a named statement prepared on one would be missing on the other.
        queries = [
            "/orders?select=id,total,customer:customers(name),order_items(quantity)"
            "&customer_id=eq.{i}&order=id",
            "/order_items?select=id,quantity&order_id=in.({i},{j})&order=id",
            "/products?select=id,sku,price&price=gt.{i}&order=id&limit=5",
            "/customers?select=id,name&id=gte.{i}&order=id&limit=3",
        ]

        def read(n: int) -> int:
            path = queries[n % len(queries)].format(i=n % 20 + 1, j=n % 7 + 1)
            # A filter of its own each time: the cache answers none of them.
            r = httpx.get(f"{server.url}{path}&id=neq.{-1 - n}",
                          headers={"Prefer": "count=exact"}, timeout=30)
            r.json()
            return r.status_code

        with ThreadPoolExecutor(16) as pool:
            statuses = set(pool.map(read, range(240)))
        assert statuses <= {200, 206}, statuses  # 206: a page of a counted total
        expected = oracle.ids(direct, "SELECT id FROM order_items WHERE order_id IN (3, 4) "
                                      "ORDER BY id")
        r = client.get("/order_items?select=id&order_id=in.(3,4)&order=id")
        assert [row["id"] for row in r.json()] == expected

        made = client.post("/customers", json=[
            {"name": f"bouncer {k}", "email": f"b{k}-{secrets.token_hex(4)}@example.com",
             "created_at": "2024-01-01T00:00:00"} for k in range(20)],
            headers={"Prefer": "return=representation"})
        assert made.status_code == 201, made.text
        ids = [row["id"] for row in made.json()]
        assert client.patch(f"/customers?id=in.({','.join(map(str, ids[:10]))})",
                            json={"country": "NO"}).status_code == 204
        assert client.delete(f"/customers?id=in.({','.join(map(str, ids[10:]))})"
                             ).status_code == 204
        rows = oracle.rows(direct, "SELECT id, country FROM customers WHERE name LIKE "
                                   "'bouncer %' ORDER BY id")
        assert rows == [(i, "NO") for i in ids[:10]]

        # Every client connection of both workers shares the pooler's few server connections.
        server_side = oracle.rows(direct, "SELECT count(*) FROM pg_stat_activity "
                                          "WHERE datname = $1 AND application_name = "
                                          "'headwater'", database)
        assert server_side[0][0] <= POOL


def test_read_only_refuses_writes_without_its_session_setting(
        pgbouncer: int, database: str) -> None:
    with ServerProcess(through(pgbouncer, database), env=OFF,
                       args=("--read-only",)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/customers?select=id&limit=1").status_code == 200
        before = oracle.rows(pg_url_for(database), "SELECT count(*) FROM customers")
        r = client.post("/customers", json={"name": "nope", "email": "nope@example.com",
                                            "created_at": "2024-01-01T00:00:00"})
        assert r.status_code == 405, r.text
        assert r.json()["code"] == "25006"
        assert oracle.rows(pg_url_for(database), "SELECT count(*) FROM customers") == before
