"""Helpers for testing code built on Headwater: run a real server process and wait for it."""

from __future__ import annotations

import os
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
