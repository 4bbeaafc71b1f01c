"""Rate limits, with the ``limits`` library's storage: Redis shared by every node (its atomic
increment-and-expire script), or in-process when there is no Redis.

Windows are fixed and aligned to the clock (``key = bucket / ⌊now / period⌋``), so every
node counts into the same key and ``RateLimit-Reset`` is known without another round trip:
one increment per limit per request. Without Redis the counters are the server's own, shared
by its worker processes (``api.shared_counters``), so a limit holds per machine. If Redis
fails the limiter falls back to those (each node then enforces the limit alone) and the
Redis breaker keeps it there until Redis answers again: a Redis failure never fails a
request.

The client address is the connection's peer, or, when that peer is a trusted proxy, the
rightmost address in ``X-Forwarded-For`` that is not itself a trusted proxy. An IPv6 address
is counted by its network (``rate_limits.ipv6_prefix``, /64 by default): a host is usually
given a whole /64 and could otherwise take a fresh address, and a fresh budget, per request.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, Storage
from limits.storage import storage_from_string

from headwater.api.shared_counters import SharedCounters
from headwater.cache.address import RedisAddress
from headwater.errors import BreakerOpen, HeadwaterError
from headwater.model import grammar
from headwater.model import select as select_grammar
from headwater.model.catalog import Catalog
from headwater.model.principal import Action
from headwater.model.request import Embed, SelectItem
from headwater.resilience.breaker import CircuitBreaker, Guard
from headwater.service.relationships import resolve_relationship
from headwater.settings_file import Rate, RateOverride

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Window:
    """One limit's state after a hit."""

    limit: int
    remaining: int
    reset: int
    scope: str

    @property
    def exceeded(self) -> bool:
        return self.remaining < 0


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def client_address(peer: str | None, forwarded_for: Sequence[str],
                   trusted: Sequence[Network]) -> str:
    """The address to count a request against (see the module's docstring)."""
    address = peer or "unknown"
    ip = _parse_ip(address)
    if not trusted or ip is None or not any(ip in net for net in trusted):
        return address
    hops = [h.strip() for header in forwarded_for for h in header.split(",") if h.strip()]
    for hop in reversed(hops):
        hop_ip = _parse_ip(hop)
        if hop_ip is None:
            return address  # a malformed chain: trust none of it
        if not any(hop_ip in net for net in trusted):
            return str(hop_ip)
    return address


def address_key(address: str, ipv6_prefix: int = 64) -> str:
    """What a client address is counted as: an IPv4 address itself (an IPv4-mapped IPv6
    address as its IPv4 address), an IPv6 address as its network of ``ipv6_prefix`` bits."""
    ip = _parse_ip(address)
    if ip is None:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if ipv6_prefix < 128:
            return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))
    return str(ip)


Touch = tuple[str | None, Action | None]


def override_applies(o: RateOverride, touched: Iterable[Touch], role: str) -> bool:
    """Does the per-table/per-action override ``o`` count a request that touches these
    (table, action) pairs? Once per request, however many of them it matches."""
    if o.role != "*" and o.role != role:
        return False
    return any((o.table == "*" or o.table == t) and (o.action == "*" or o.action == a)
               for t, a in touched)


def touches(table: str, action: Action, method: str, query: bytes, prefer: Sequence[str],
            catalog: Callable[[], Catalog]) -> list[Touch]:
    """Every (table, action) a table request touches, beyond its own: a write that may
    update (``PUT``, or ``POST`` with ``resolution=merge-duplicates``) is also an update, and
    every table embedded in ``select=`` is read. Only asked when an override could tell the
    difference; a request that does not parse is refused later, so it counts only as
    itself here."""
    out: list[Touch] = [(table, action)]
    if method == "PUT" or (method == "POST" and any(
            p.strip().lower() == "resolution=merge-duplicates"
            for header in prefer for p in header.split(","))):
        out.append((table, "update"))
    if b"select" not in query and b"%" not in query:  # (a key may be percent-encoded)
        return out
    try:
        select = [select_grammar.parse_select(v) for k, v in
                  grammar.split_query_string(query.decode("latin-1")) if k == "select"]
    except HeadwaterError:
        return out
    try:
        known: Catalog | None = catalog()
    except HeadwaterError:
        known = None  # not loaded yet: embeds count by the names they are written with
    for items in select:
        _embedded(known, table, items, out)
    return out


def _embedded(catalog: Catalog | None, source: str, items: Sequence[SelectItem],
              out: list[Touch]) -> None:
    for item in items:
        if not isinstance(item, Embed):
            continue
        target = item.name
        if catalog is not None:
            # Unresolvable: the planner answers for it; counted by the name as written.
            with contextlib.suppress(HeadwaterError):
                target = resolve_relationship(catalog, source, item).target
        out.append((target, "select"))
        _embedded(catalog, target, item.select, out)


class RateLimiter:
    def __init__(self, *, redis_url: str = "", prefix: str = "hw", timeout: float = 0.25,
                 breaker: CircuitBreaker | None = None, log: Any = None,
                 shared_dir: str = "") -> None:
        #: Without Redis (or while it fails): the counters of this server's workers,
        #: shared through ``shared_dir`` so the limit holds for the machine, not per worker.
        self.memory: Storage | SharedCounters = (SharedCounters(shared_dir) if shared_dir
                                                 else MemoryStorage())
        self.redis: Storage | None = None
        if redis_url:
            storage = storage_from_string(
                RedisAddress.parse(redis_url).limits_uri(), implementation="redispy",
                key_prefix=prefix + ":rl", socket_timeout=timeout,
                socket_connect_timeout=timeout)
            assert isinstance(storage, Storage)  # an async+ URI gives the asyncio storage
            self.redis = storage
        self.breaker = breaker
        self.log = log
        self._items: dict[Rate, RateLimitItemPerSecond] = {}
        self._last_warning = 0.0

    def _item(self, rate: Rate) -> RateLimitItemPerSecond:
        item = self._items.get(rate)
        if item is None:
            item = self._items[rate] = RateLimitItemPerSecond(rate.amount, rate.seconds)
        return item

    async def hit(self, rate: Rate, scope: str, identity: str, *, cost: int = 1) -> Window:
        """Count one request against ``rate`` for ``identity`` in ``scope``."""
        now = time.time()
        window = int(now // rate.seconds)
        item = self._item(rate)
        key = item.key_for(scope, identity, str(window))
        count = await self._incr(key, rate.seconds, cost)
        reset = max(1, math.ceil((window + 1) * rate.seconds - now))
        return Window(rate.amount, rate.amount - count, reset, scope)

    async def peek(self, rate: Rate, scope: str, identity: str) -> Window:
        """The window's state without counting (for ``failed_auth``)."""
        now = time.time()
        window = int(now // rate.seconds)
        key = self._item(rate).key_for(scope, identity, str(window))
        count = await self._call("get", key)
        reset = max(1, math.ceil((window + 1) * rate.seconds - now))
        return Window(rate.amount, rate.amount - count, reset, scope)

    async def _incr(self, key: str, expiry: int, amount: int) -> int:
        return await self._call("incr", key, expiry, amount)

    async def _call(self, op: str, key: str, *args: int) -> int:
        storage = self.redis
        if storage is not None:
            try:
                with Guard(self.breaker, Exception):
                    value = await (storage.incr(key, *args) if op == "incr"
                                   else storage.get(key))
            except BreakerOpen:
                pass  # count locally, without trying Redis
            except Exception as exc:  # any Redis failure: count locally instead
                self._warn(exc)
            else:
                return int(value)
        if op == "incr":
            return int(await self.memory.incr(key, *args))
        return int(await self.memory.get(key))

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if self.log is not None and now - self._last_warning > 10:
            self._last_warning = now
            self.log.warning("ratelimit_redis_failed", error=type(exc).__name__,
                             effect="counting in-process until Redis answers")

    async def close(self) -> None:
        if isinstance(self.memory, SharedCounters):
            self.memory.close()
        if self.redis is not None:
            bridge = getattr(self.redis, "bridge", None)
            storage = getattr(bridge, "storage", None)
            close = getattr(storage, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:  # closing a broken connection: nothing more to do
                    self._warn(RuntimeError("close"))
