"""Where Redis is: one server, a Redis Cluster or the master Sentinels watch (pure: parsing a
URL needs no Redis client, so the rate limiter can name its storage without the redis extra
being imported before it is used)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from headwater.errors import InvalidSetting


@dataclass(frozen=True)
class RedisAddress:
    """What ``HEADWATER_REDIS_URL`` names: one server (``redis://``, ``rediss://``,
    ``unix://``), a Redis Cluster (``redis+cluster://host:port[,host:port…]``) or the master
    that Sentinels watch (``redis+sentinel://host:port[,host:port…]/mastername[/db]``)."""

    kind: Literal["single", "cluster", "sentinel"]
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    master: str = ""
    db: int = 0
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        scheme, sep, rest = url.partition("://")
        if not sep:
            raise InvalidSetting(f"redis_url {url!r} is not a URL",
                                 hint="redis://host:6379/0, redis+cluster://h1:7000,h2:7001 or "
                                      "redis+sentinel://h1:26379/mymaster")
        base, _, variant = scheme.lower().partition("+")
        if base not in ("redis", "rediss", "unix") or variant not in ("", "cluster",
                                                                      "sentinel"):
            raise InvalidSetting(f"redis_url: unsupported scheme {scheme!r}",
                                 hint="redis, rediss, unix, redis+cluster or redis+sentinel")
        if not variant:
            return cls("single", url)
        auth, at, hosts_path = rest.rpartition("@")
        password = auth.partition(":")[2] or auth or None if at else None
        hosts, _, path = hosts_path.partition("/")
        nodes: list[tuple[str, int]] = []
        for item in filter(None, hosts.split(",")):
            host, colon, port = item.rpartition(":")
            if not colon or not port.isdigit() or not 0 < int(port) < 65536:
                raise InvalidSetting(f"redis_url: {item!r} is not host:port")
            nodes.append((host.strip("[]"), int(port)))
        if not nodes:
            raise InvalidSetting("redis_url names no host:port")
        master, _, db = path.partition("/")
        if variant == "sentinel" and not master:
            raise InvalidSetting("redis_url: a sentinel URL ends with the master's name",
                                 hint="redis+sentinel://h1:26379,h2:26379/mymaster")
        if db and not db.isdigit():
            raise InvalidSetting(f"redis_url: database {db!r} is not a number")
        return cls(variant, url, tuple(nodes), master, int(db or 0), password,  # type: ignore[arg-type]
                   base == "rediss")

    def limits_uri(self) -> str:
        """The same address in the ``limits`` library's terms (rate-limit counters)."""
        if self.kind == "single":
            return "async+" + self.url
        hosts = ",".join(f"{h}:{p}" for h, p in self.nodes)
        auth = f":{self.password}@" if self.password else ""
        if self.kind == "cluster":
            return f"async+redis+cluster://{auth}{hosts}"
        return f"async+redis+sentinel://{auth}{hosts}/{self.master}"
