"""Helpers for testing code built on Headwater: run a real server process and wait for it."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """``headwater serve`` in a child process on a free loopback port."""

    database_url: str
    env: Mapping[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    #: Where the server's log (its stdout) goes; by default nowhere.
    log_file: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0, *, ready: bool = True) -> ServerProcess:
        env = {**os.environ, "HEADWATER_LOG_LEVEL": "warning", **self.env}
        with open(self.log_file or os.devnull, "ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                [sys.executable, "-m", "headwater", "serve", self.database_url,
                 "--port", str(self.port), *self.args],
                env=env, stdout=log, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + timeout
        path = "/-/ready" if ready else "/-/live"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"headwater exited with {self.proc.returncode}: {err}")
            try:
                if httpx.get(self.url + path, timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"headwater did not answer {path} within {timeout}s")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def queue_consumers(amqp_url: str, queue: str) -> int:
    """How many consumers a RabbitMQ queue has (0 if it does not exist yet): whether a
    ``headwater worker`` has subscribed."""
    import aio_pika

    connection = await aio_pika.connect(amqp_url, timeout=10)
    try:
        channel = await connection.channel()
        try:
            q = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            return 0
        return int(q.declaration_result.consumer_count or 0)
    finally:
        await connection.close()


def cluster_port() -> int:
    """A free port whose cluster-bus companion (port + 10000) is free and exists too."""
    for _ in range(200):
        port = 20000 + secrets.randbelow(30000)
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
            return port
    raise OSError("no free pair of ports for a Redis cluster node")


@dataclass
class RedisNode:
    """One ``redis-server`` child process in its own directory (cluster-enabled or not)."""

    directory: str
    port: int = field(default_factory=cluster_port)
    cluster: bool = True
    extra: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> RedisNode:
        os.makedirs(self.directory, exist_ok=True)
        server = shutil.which("redis-server") or "redis-server"
        args = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.directory,
                "--save", "", "--appendonly", "no", "--logfile", os.path.join(self.directory, "redis.log")]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", "2000", "--cluster-require-full-coverage", "no"]
        self.proc = subprocess.Popen(  # noqa: S603 - the machine's redis-server
            [*args, *self.extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


@dataclass
class RedisClusterProcess:
    """A Redis Cluster of ``size`` primaries on free loopback ports (``redis-server`` and
    ``redis-cli`` from the machine), for tests of Headwater against a cluster:
    ``with RedisClusterProcess(tmpdir) as c: c.url``."""

    directory: str
    size: int = 3
    nodes: list[RedisNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 30.0) -> RedisClusterProcess:
        try:
            for i in range(self.size):
                self.nodes.append(RedisNode(os.path.join(self.directory, str(i))).start())
            return self._create(timeout)
        except BaseException:
            self.stop()
            raise

    def _create(self, timeout: float) -> RedisClusterProcess:
        cli = shutil.which("redis-cli") or "redis-cli"
        subprocess.run(  # noqa: S603 - the machine's redis-cli
            [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = subprocess.run(  # noqa: S603
                [cli, "-p", str(self.nodes[0].port), "cluster", "info"],
                capture_output=True, text=True, timeout=5).stdout
            if "cluster_state:ok" in info:
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError("the Redis cluster did not reach cluster_state:ok")

    def node_for(self, key: str) -> RedisNode:
        """The node serving ``key``'s slot."""
        from redis.cluster import RedisCluster

        live = next(n for n in self.nodes if n.proc is not None)
        client = RedisCluster(host="127.0.0.1", port=live.port, socket_timeout=2)
        try:
            port = client.get_node_from_key(key).port  # type: ignore[no-untyped-call]
        finally:
            client.close()
        return next(n for n in self.nodes if n.port == port)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisClusterProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


REPLICATION_HBA = "host replication all 127.0.0.1/32 trust"
#: Marks the line ``PostgresReplica`` adds, so that it takes out only its own.
_HBA_MARK = "# added by headwater.testing.PostgresReplica"


def _as_postgres(*argv: str) -> list[str]:
    """A command run as the ``postgres`` OS user (the data directory's owner) when we are
    root; as ourselves otherwise."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)


@dataclass
class PostgresReplica:
    """A streaming replica of a local PostgreSQL server on a free port, made as
    ``scripts/cluster.sh`` makes its own: ``pg_basebackup -R`` into a temporary directory,
    then the machine's ``postgres`` binaries as the ``postgres`` user. ``stop`` and ``start``
    stop and start the server (its data kept); ``destroy`` stops it and removes the data.

    The primary must accept replication connections from 127.0.0.1
    (``ensure_replication_hba`` adds the ``pg_hba.conf`` line and reloads when it is missing;
    ``destroy`` takes it out again once nothing streams from the primary).
    """

    primary_port: int = 5432
    port: int = field(default_factory=free_port)
    bindir: str = ""
    directory: str = ""
    #: The primary's ``pg_hba.conf`` when this replica added the replication line to it.
    added_hba: str = ""

    @property
    def data(self) -> str:
        return os.path.join(self.directory, "data")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _psql(self, port: int, sql: str) -> str:
        out = subprocess.run(  # noqa: S603 - fixed binary, our own SQL
            [os.path.join(self.bindir, "psql"), "-h", "127.0.0.1", "-p", str(port), "-U",
             "postgres", "-d", "postgres", "-Atc", sql],
            check=True, capture_output=True, text=True, timeout=30)
        return out.stdout.strip()

    def ensure_replication_hba(self) -> bool:
        """Add the replication line to the primary's ``pg_hba.conf`` if no rule allows it;
        True when it was added (and the configuration reloaded)."""
        rules = self._psql(self.primary_port, "SELECT count(*) FROM pg_hba_file_rules WHERE "
                                              "'replication' = ANY(database) AND error IS NULL")
        if int(rules or 0) > 0:
            return False
        hba = self._psql(self.primary_port, "SHOW hba_file")
        with open(hba, "r+", encoding="utf-8") as f:
            text = f.read()
            f.write(("" if not text or text.endswith("\n") else "\n")
                    + f"{REPLICATION_HBA}  {_HBA_MARK}\n")
        self._psql(self.primary_port, "SELECT pg_reload_conf()")
        self.added_hba = hba
        time.sleep(0.3)
        return True

    def remove_replication_hba(self) -> None:
        """Take out the line ``ensure_replication_hba`` added, unless something still streams
        from the primary (a cluster rig beside the tests, say)."""
        if not self.added_hba or not os.path.exists(self.added_hba):
            return
        streaming = self._psql(self.primary_port, "SELECT count(*) FROM pg_stat_replication")
        if int(streaming or 0) > 0:
            return
        with open(self.added_hba, "r+", encoding="utf-8") as f:
            kept = [line for line in f.read().splitlines(keepends=True) if _HBA_MARK not in line]
            # In place: the file keeps its owner and mode.
            f.seek(0)
            f.write("".join(kept))
            f.truncate()
        self._psql(self.primary_port, "SELECT pg_reload_conf()")
        self.added_hba = ""

    def start(self, timeout: float = 60.0) -> PostgresReplica:
        import tempfile

        if not self.bindir:
            major = self._psql_version()
            self.bindir = f"/usr/lib/postgresql/{major}/bin"
        if not self.directory:
            self.directory = tempfile.mkdtemp(prefix="hw-replica-")
            self.ensure_replication_hba()
            if os.geteuid() == 0:
                shutil.chown(self.directory, "postgres")
            subprocess.run(  # noqa: S603
                _as_postgres(os.path.join(self.bindir, "pg_basebackup"), "-h", "127.0.0.1",
                             "-p", str(self.primary_port), "-U", "postgres", "-D", self.data,
                             "-R", "-c", "fast", "-X", "stream"),
                check=True, capture_output=True, timeout=timeout)
            self._configure()
        subprocess.run(  # noqa: S603
            _as_postgres(os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l",
                         os.path.join(self.directory, "log"), "-w", "-t", str(int(timeout)),
                         "start"),
            check=True, capture_output=True, timeout=timeout + 5)
        return self

    def _psql_version(self) -> str:
        psql = shutil.which("psql") or "psql"
        out = subprocess.run(  # noqa: S603
            [psql, "-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres", "-d",
             "postgres", "-Atc", "SHOW server_version_num"],
            check=True, capture_output=True, text=True, timeout=30)
        return str(int(out.stdout.strip()) // 10000)

    def _configure(self) -> None:
        conf = (f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.directory}'\nhot_standby = on\n"
                f"hba_file = '{self.data}/pg_hba.conf'\n"
                f"ident_file = '{self.data}/pg_ident.conf'\n"
                "max_connections = 100\nshared_buffers = 32MB\nfsync = off\n")
        files = {"postgresql.conf": conf, "pg_ident.conf": "",
                 "pg_hba.conf": "local all all trust\nhost all all 127.0.0.1/32 trust\n"}
        for name, text in files.items():
            path = os.path.join(self.data, name)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            if os.geteuid() == 0:
                shutil.chown(path, "postgres")

    def stop(self, mode: str = "fast") -> None:
        if not self.directory or not os.path.exists(os.path.join(self.data, "postmaster.pid")):
            return
        subprocess.run(  # noqa: S603
            _as_postgres(os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", mode,
                         "-w", "stop"),
            check=False, capture_output=True, timeout=60)

    def destroy(self) -> None:
        self.stop("immediate")
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = ""
        with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
            self.remove_replication_hba()

    def __enter__(self) -> PostgresReplica:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()
