"""The local cluster rig (``scripts/cluster.sh``) under test: a streaming replica of the local
PostgreSQL server, a three-node Redis Cluster, a three-node RabbitMQ cluster, two Headwater
nodes and HAProxy in front.

The session brings the rig up (``cluster.sh up``) and takes it down at the end, unless it was
already up (then it is left as found). Every test starts from a whole rig: ``whole_rig`` runs
``cluster.sh up`` again (it starts whatever a test stopped) and waits until HAProxy sees both
nodes, both nodes see the replica, and replay runs. ``HW_CLUSTER_PORT_OFFSET``,
``HW_CLUSTER_STATE`` and ``HW_CLUSTER_DB`` select another rig, as they do for the script.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from tests.conftest import CI

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cluster.sh"


@dataclass(frozen=True)
class Rig:
    state: Path
    offset: int
    db: str

    @property
    def lb(self) -> str:
        return f"http://127.0.0.1:{8080 + self.offset}"

    @property
    def node_ports(self) -> tuple[int, int]:
        return 3001 + self.offset, 3002 + self.offset

    @property
    def nodes(self) -> tuple[str, str]:
        a, b = self.node_ports
        return f"http://127.0.0.1:{a}", f"http://127.0.0.1:{b}"

    @property
    def redis_ports(self) -> tuple[int, int, int]:
        return 7000 + self.offset, 7001 + self.offset, 7002 + self.offset

    @property
    def rabbit_ports(self) -> tuple[int, int, int]:
        return 5673 + self.offset, 5674 + self.offset, 5675 + self.offset

    @property
    def own_rabbit(self) -> bool:
        """Whether the rig runs its RabbitMQ cluster (``HW_CLUSTER_AMQP_URL`` names another
        broker instead)."""
        return "HW_CLUSTER_AMQP_URL" not in os.environ

    def rabbit_node(self, port: int) -> str:
        """The Erlang node name of the rig's RabbitMQ node on this AMQP port."""
        return f"hwrig{self.offset}{'abc'[self.rabbit_ports.index(port)]}@localhost"

    @staticmethod
    def amqp(port: int) -> str:
        return f"amqp://guest:guest@127.0.0.1:{port}/"

    def rabbitmqctl(self, port: int, *args: str) -> Any:
        """``rabbitmqctl -n NODE ...`` on the rig's node on this port, its JSON answer."""
        import json

        done = subprocess.run(["rabbitmqctl", "-n", self.rabbit_node(port), *args,
                               "--formatter", "json", "-q"],
                              capture_output=True, text=True, timeout=60, check=True)
        return json.loads(done.stdout or "null")

    def relay_brokers(self) -> dict[int, int]:
        """The RabbitMQ port each Headwater node's relay is connected to (one connection per
        node: only the worker process holding the relay lock opens one), found by the
        process group of each established connection to the rig's AMQP ports."""
        ports = set(self.rabbit_ports)
        groups = {self.node_pid(p): p for p in self.node_ports}
        out: dict[int, int] = {}
        listing = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True,
                                 text=True, timeout=10, check=True).stdout
        for line in listing.splitlines():
            fields = line.split()
            if len(fields) < 5 or "pid=" not in line:
                continue
            port = int(fields[3].rsplit(":", 1)[1])
            if port not in ports:
                continue
            pid = int(line.split("pid=", 1)[1].split(",", 1)[0])
            try:
                group = os.getpgid(pid)
            except ProcessLookupError:
                continue
            if group in groups:
                out[groups[group]] = port
        return out

    @property
    def primary_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:5432/{self.db}"

    @property
    def replica_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{5433 + self.offset}/{self.db}"

    def script(self, *args: str, timeout: float = 300) -> str:
        env = {**os.environ, "HW_CLUSTER_STATE": str(self.state),
               "HW_CLUSTER_PORT_OFFSET": str(self.offset), "HW_CLUSTER_DB": self.db}
        done = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise AssertionError(f"cluster.sh {' '.join(args)} failed ({done.returncode}):\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done.stdout

    def node_pid(self, port: int) -> int:
        return int((self.state / f"node-{port}.pid").read_text().split()[0])

    def node_log(self, port: int, since: str, words: tuple[str, ...]) -> list[str]:
        """A node's log lines (JSON, one per line) stamped at or after ``since`` (ISO 8601,
        UTC) that mention any of ``words``: printed by a test, shown when it fails."""
        out: list[str] = []
        path = self.state / f"node-{port}.log"
        if not path.exists():
            return out
        for line in path.read_text(errors="replace").splitlines():
            stamp = line.partition('"timestamp": "')[2][:26]
            if stamp >= since and any(w in line for w in words):
                out.append(f"{port} {line[:400]}")
        return out

    def bearer(self, sub: str, role: str = "member") -> dict[str, str]:
        secret = (self.state / "jwt-secret").read_text().strip()
        token = jwt.encode({"role": role, "sub": sub, "exp": int(time.time()) + 3600}, secret,
                           algorithm="HS256")
        return {"Authorization": "Bearer " + token}

    def sql(self, url: str, statement: str, *args: Any) -> Any:
        async def run() -> Any:
            conn = await asyncpg.connect(url, timeout=5)
            try:
                return await conn.fetchval(statement, *args)
            finally:
                await conn.close()
        return asyncio.run(run())

    def ready(self, node: str) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(node + "/-/ready", timeout=5).json()
        return body

    def replica_ok(self, node: str) -> bool:
        try:
            return bool(self.ready(node)["checks"]["replicas"]["replica1"]["status"] == "ok")
        except (httpx.HTTPError, ValueError, KeyError):
            return False

    def haproxy(self, command: str) -> str:
        """HAProxy's answer to one command on its runtime socket."""
        import socket

        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.state / "haproxy.sock"))
            s.sendall(command.encode() + b"\n")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return out.decode()

    def haproxy_up(self) -> set[str]:
        """The nodes HAProxy sends requests to now (``node3001``...)."""
        up = set()
        for line in self.haproxy("show servers state headwater").splitlines()[2:]:
            fields = line.split()
            if len(fields) > 5 and fields[5] == "2":  # SRV_ST_RUNNING
                up.add(fields[3])
        return up

    def whole(self, timeout: float = 60) -> None:
        """Start whatever is down, resume replay, and wait until every part serves."""
        self.script("up")
        with_replica = self.sql(self.replica_url, "SELECT pg_is_wal_replay_paused()")
        if with_replica:
            self.sql(self.replica_url, "SELECT pg_wal_replay_resume()")
        # a write the replica must replay: an idle primary's last record can wait for one
        self.sql(self.primary_url, "SELECT txid_current()")
        wait_for(lambda: all(self.replica_ok(n) for n in self.nodes), timeout,
                 "both nodes use the replica")
        wanted = {f"node{p}" for p in self.node_ports}
        wait_for(lambda: self.haproxy_up() == wanted, timeout, "HAProxy sends to both nodes")


def wait_for(predicate: Callable[[], bool], timeout: float, what: str,
             every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(every)


def _rig_available() -> str | None:
    """Why this machine cannot run the rig, or None."""
    if not (shutil.which("pg_basebackup") or os.path.isdir("/usr/lib/postgresql")):
        return "no PostgreSQL server binaries"
    if shutil.which("redis-server") is None:
        return "no redis-server"
    if shutil.which("haproxy") is None and (os.geteuid() != 0 or shutil.which("apt-get") is None):
        return "no haproxy (and no apt-get as root to install it)"
    return None


@pytest.fixture(scope="session")
def rig(pg_admin: str) -> Iterator[Rig]:
    why = _rig_available()
    if why is not None:
        if CI:
            pytest.fail(f"the cluster rig cannot run: {why} (required under CI=true)")
        pytest.skip(f"the cluster rig cannot run: {why}")
    r = Rig(Path(os.environ.get("HW_CLUSTER_STATE", "/tmp/headwater-cluster")),
            int(os.environ.get("HW_CLUSTER_PORT_OFFSET", "0")),
            os.environ.get("HW_CLUSTER_DB", "cluster_demo"))
    was_up = (r.state / "haproxy.pid").exists()
    try:
        r.whole(timeout=120)
        yield r
    finally:
        if not was_up:
            r.script("down")


@pytest.fixture
def whole_rig(rig: Rig) -> Iterator[Rig]:
    """The rig with every part up before the test, and again after it."""
    rig.whole()
    try:
        yield rig
    finally:
        rig.whole()
