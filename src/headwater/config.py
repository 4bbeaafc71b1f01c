"""Settings: one frozen object, built explicitly from flags, environment or defaults.

Nothing reads the environment behind the caller's back: ``Settings.from_env`` is called
once by the CLI or the ASGI factory and the object is passed down from there.

Values are parsed strictly: ``HEADWATER_CACHE_ENABLED=ture`` is an ``InvalidSetting`` naming
the variable, the value and what is allowed, never a silent ``False``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import UnionType
from typing import Any, Literal, TypeAlias, Union, get_args, get_origin, get_type_hints

from headwater.errors import InvalidSetting, MissingExtra

ENV_PREFIX = "HEADWATER_"

LogLevel: TypeAlias = Literal["debug", "info", "warning", "error", "critical"]
#: ``strict``: no node serves data older than a write once its response is sent.
#: ``bounded``: nodes trust pushed versions and may lag by ``cache_bounded_lag_ms``.
#: ``auto``: human-readable on a terminal, JSON lines otherwise.
LogFormat: TypeAlias = Literal["auto", "json", "console"]
CacheMode: TypeAlias = Literal["strict", "bounded"]
QueueType: TypeAlias = Literal["classic", "quorum"]

#: The package's optional extras: the client libraries each installs, by import name. The
#: SQLite demo needs none of them.
EXTRAS: Mapping[str, tuple[str, ...]] = {
    "postgres": ("asyncpg", "greenlet"),
    "redis": ("redis",),
    "rabbitmq": ("aio_pika", "aiormq", "pamqp"),
}

#: Worker processes: a number, or ``auto`` (one per core this process may use).
WorkerCount: TypeAlias = int | Literal["auto"]

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_INT = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True, slots=True)
class Settings:
    """Every documented setting; each also reads from ``HEADWATER_<NAME>``."""

    database_url: str = "sqlite:///headwater.db"
    host: str = "127.0.0.1"
    port: int = 3000
    workers: WorkerCount = "auto"
    log_level: LogLevel = "info"
    log_format: LogFormat = "auto"
    #: Schema served on PostgreSQL.
    db_schema: str = "public"
    #: PostgreSQL: the schemas served, comma-separated; ``Accept-Profile`` (reads) and
    #: ``Content-Profile`` (writes) choose one, the first by default. Empty: ``db_schema``.
    db_schemas: str = ""
    #: ``Accept: application/vnd.pgrst.plan`` answers the read's EXPLAIN (PostgreSQL; off:
    #: the media type is not offered, as PostgREST's ``db-plan-enabled``).
    db_plan_enabled: bool = False
    #: PostgreSQL: asyncpg prepares and caches each statement per connection, and the
    #: session settings (statement_timeout, read-only) travel as startup parameters. Off,
    #: as PostgREST's ``db-prepared-statements``: unnamed statements and no startup
    #: parameters but the application name, for a pooler in transaction mode (pgbouncer
    #: before 1.21); set ``statement_timeout`` on the database role there.
    db_prepared_statements: bool = True
    pool_min_size: int = 1
    pool_max_size: int = 20
    #: Seconds to wait for a pooled connection before answering 503.
    pool_timeout: float = 5.0
    connect_timeout: float = 5.0
    #: Seconds a statement may run (PostgreSQL statement_timeout; SQLite progress handler).
    statement_timeout: float = 10.0
    #: PostgreSQL streaming replicas for plain reads, comma-separated URLs (``--replica``,
    #: repeatable). Empty (the default): every statement goes to the primary.
    replica_urls: str = ""
    #: Seconds of replay lag past which a replica is skipped (reads go to another, or the
    #: primary); measured in the background every ``replica_check_interval`` seconds.
    max_replica_lag: float = 1.0
    replica_check_interval: float = 0.2
    #: Seconds a read presenting a consistency token waits for a replica to replay past it
    #: before it is served by the primary.
    replica_token_wait: float = 0.1
    #: Seconds after a write during which this node serves the same principal's reads from
    #: the primary (read-your-writes for clients that do not echo the token).
    read_your_writes_window: float = 2.0
    #: Tries per request for transient database failures (reads; writes only when safe).
    retry_attempts: int = 3
    #: Requests one worker serves at once; beyond it, 503 with Retry-After (back-pressure).
    max_inflight: int = 256
    #: Event-loop lag (ms) beyond which new requests are refused with 503; 0 disables.
    max_loop_lag_ms: float = 200.0
    #: Consecutive database failures that open its circuit, and seconds before a probe.
    db_breaker_failures: int = 5
    db_breaker_reset: float = 1.0
    #: SQLite: milliseconds a writer waits on a locked database.
    sqlite_busy_timeout_ms: int = 5000
    #: A read returning more rows than this is streamed from a cursor in chunks.
    stream_threshold_rows: int = 1000
    stream_chunk_bytes: int = 65536
    #: Upper bound on rows any read returns (PostgREST's db-max-rows); 0 = unlimited.
    max_rows: int = 0
    max_body_bytes: int = 10 * 1024 * 1024
    #: Seconds a request body may take to arrive, stretched by one second per
    #: ``body_min_rate`` bytes received; past it, 408 and the connection is closed. While a
    #: body is read the request holds no ``max_inflight`` slot.
    body_timeout: float = 10.0
    #: Bytes per second a body must keep up (on average) once ``body_timeout`` has passed.
    body_min_rate: int = 1024

    # --- HTTP server limits (headwater.api.connection) ------------------------------------
    #: Bytes of a request's line and headers; beyond it, 431 and the connection is closed.
    max_header_bytes: int = 64 * 1024
    #: Seconds a connection may take to send a request's line and headers, from its opening
    #: (or the first byte of the next request); past it the connection is closed.
    header_timeout: float = 10.0
    #: Seconds an idle keep-alive connection stays open between requests.
    keep_alive_timeout: int = 5
    #: Open connections per worker; a request on one beyond it gets 503 and a closed
    #: connection. 0 = no limit.
    max_connections: int = 1024
    #: Seconds a worker keeps serving after SIGTERM while ``/-/ready`` answers 503
    #: (``draining``), so that a load balancer's health checks take the node out before it
    #: stops accepting connections; then in-flight requests complete. 0: stop at once.
    shutdown_delay: float = 0.0
    #: Levels of embedding one read may nest (``a(b(c))`` is 3); deeper is a 400 (HW413)
    #: before any SQL. PostgREST has no limit; 8 is past what clients ask for. 0 = unlimited.
    max_embed_depth: int = 8
    #: ``select=`` aggregates (``count()``, ``amount.sum()``...), PostgREST's
    #: db-aggregates-enabled, but on by default; off, they are a 400 (PGRST123).
    aggregates_enabled: bool = True
    #: Size of one read's JSON body, embedded rows included (``max_rows`` counts only the
    #: top level); larger is a 400 (HW413), and a streamed read past it is cut off. 0 = none.
    max_response_bytes: int = 64 * 1024 * 1024
    #: Redis for the shared cache (L2) and table versions, e.g. redis://127.0.0.1:6379/0.
    redis_url: str = ""
    #: Seconds for every Redis call (connect and socket).
    redis_timeout: float = 0.25
    #: Consecutive Redis failures that open its circuit, and seconds before a request may
    #: probe it. An open circuit (Redis's or the database's) is also probed in the background
    #: from 100 ms, backing off to 0.5 s, and closes on the first answer.
    redis_breaker_failures: int = 5
    redis_breaker_reset: float = 5.0
    cache_enabled: bool = True
    #: ``strict`` or ``bounded`` (see ``CacheMode``).
    cache_mode: CacheMode = "strict"
    cache_bounded_lag_ms: int = 100
    #: The in-process tier's budget, in bytes.
    cache_l1_bytes: int = 64 * 1024 * 1024
    #: Once L1 is full, store a read only on its second miss within a window (TinyLFU's
    #: doorkeeper), so reads that never repeat do not evict the hot entries; false: plain LRU.
    cache_admission: bool = True
    #: Seconds an entry is fresh (bounds staleness from writes made outside Headwater).
    cache_ttl: float = 60.0
    #: Per-table TTLs, e.g. ``products=3600,orders=30``.
    cache_table_ttls: str = ""
    #: Tables never cached, comma-separated.
    cache_exclude: str = ""
    #: Seconds past expiry an entry may be served (``X-Cache: STALE``) while the database fails.
    cache_stale_if_error: float = 300.0
    #: Seconds past expiry an unchanged entry is served while it refreshes in the background.
    cache_stale_while_revalidate: float = 0.0
    cache_max_entry_bytes: int = 1024 * 1024
    #: ``Cache-Control: max-age`` for clients; 0 sends ``no-cache`` (revalidate by ETag).
    cache_control_max_age: int = 0
    #: Defaults to a hash of the database URL: nodes serving one database share it.
    cache_namespace: str = ""
    #: Bodies at least this large are compressed when the client accepts it.
    compression_min_bytes: int = 1024
    #: Comma-separated tables that accept UPDATE/DELETE without a filter (off by default).
    unfiltered_writes: str = ""
    #: ``package.module:attribute`` of a ``headwater.App`` with hooks and RPC functions.
    app: str = ""

    # --- security (headwater.settings_file, headwater.api.security) -----------------------
    #: The settings file (TOML) with authentication, policies, rate limits, encryption, CORS.
    config: str = ""
    #: Serve on a non-loopback address even though nothing is enforced (no auth settings).
    insecure: bool = False
    #: TLS certificate and key files (PEM); both or neither.
    tls_cert: str = ""
    tls_key: str = ""

    # --- events (headwater.events) ----------------------------------------------------------
    #: RabbitMQ, e.g. ``amqp://guest:guest@127.0.0.1:5672/``; empty = in-process dispatch.
    #: Several URLs (comma-separated) name the nodes of one cluster: a relay or worker that
    #: loses its node connects to the next.
    amqp_url: str = ""
    #: The workers' queues and dead-letter queues: ``quorum`` (replicated across a cluster's
    #: nodes; the choice for new clustered deployments) or ``classic``. A queue keeps the type
    #: it was created with: changing this needs new queues (RabbitMQ refuses a redeclaration).
    amqp_queue_type: QueueType = "classic"
    #: Write one outbox row per written row, in the write's transaction.
    events_enabled: bool = True
    #: Comma-separated topic patterns (``orders.*``, ``#``) of ``{table}.{op}`` to record ...
    events_include: str = "#"
    #: ... minus these.
    events_exclude: str = ""
    #: Comma-separated tables (or ``*``) whose update events carry the row as it was before
    #: (PostgreSQL: costs one ``SELECT ... FOR UPDATE`` per update request on those tables;
    #: SQLite's triggers see it for free).
    events_old_rows: str = ""
    #: Seconds a published outbox row (and a processed event id) is kept before pruning.
    outbox_retention: float = 86400.0
    #: Rows the relay claims and publishes per round, and seconds between idle polls.
    relay_batch: int = 500
    relay_poll_interval: float = 0.5
    #: With RabbitMQ: false leaves publishing to ``headwater relay`` processes, so that the
    #: server's event loop only serves requests (publishing costs about as much CPU per event
    #: as the write did). Without a broker the server always relays to its own handlers.
    relay_in_server: bool = True
    #: Upper bound of the relay's and worker's exponential backoff while RabbitMQ is down.
    amqp_reconnect_max_delay: float = 10.0
    #: Deliveries of one event to one handler before it goes to the dead-letter queue.
    worker_max_attempts: int = 5
    #: Delay before the first retry; doubles per attempt up to ``worker_retry_max_delay``.
    worker_retry_delay: float = 1.0
    worker_retry_max_delay: float = 300.0
    #: Events one handler works on at once. 1 (the default) runs them one by one, in the
    #: order they were published (a retried event goes behind the later ones); more is
    #: faster and unordered.
    worker_prefetch: int = 1
    #: Webhooks as JSON: ``[{"pattern": "orders.*", "url": "https://...", "secret": "..."}]``
    #: (``name`` optional); each POST is signed ``X-Headwater-Signature: sha256=<hmac>``.
    webhooks: str = ""
    #: Secret for webhooks that give none of their own.
    webhook_secret: str = ""
    webhook_timeout: float = 10.0

    # --- serving without changing the database (issue 17) ------------------------------------
    #: Open the database read-only: SQLite with ``mode=ro`` (no WAL switch, no Headwater
    #: tables, nothing on disk changes), PostgreSQL with read-only transactions. Every write
    #: answers 405.
    read_only: bool = False

    #: The directory one ``serve``'s worker processes share (rate-limit counters, metrics
    #: snapshots, the relay's lock). Empty: ``serve`` makes a fresh one and removes it at
    #: exit; a process started some other way (``create_app``) then shares nothing.
    runtime_dir: str = ""

    def exposed_schemas(self) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(s.strip() for s in self.db_schemas.split(",") if s.strip()))
        return names or (self.db_schema,)

    def require_extras(self) -> None:
        """A ``MissingExtra`` naming the ``pip install`` that brings what these settings use
        (a PostgreSQL URL, Redis, RabbitMQ), before anything tries to import it."""
        if self.database_url.startswith(("postgresql:", "postgres:")):
            require_extra("postgres", "a postgresql:// database")
        if self.redis_url:
            require_extra("redis", "HEADWATER_REDIS_URL")
        if self.amqp_url:
            require_extra("rabbitmq", "HEADWATER_AMQP_URL (RabbitMQ)")

    def unfiltered_write_tables(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.unfiltered_writes.split(",") if t.strip())

    def replicas(self) -> tuple[str, ...]:
        return tuple(u.strip() for u in self.replica_urls.split(",") if u.strip())

    def retry_delays(self) -> tuple[float, ...]:
        """The wait before each retry: attempt ``n`` failed → ``delays[n - 1]``."""
        return tuple(min(self.worker_retry_delay * 2 ** i, self.worker_retry_max_delay)
                     for i in range(max(0, self.worker_max_attempts - 1)))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``HEADWATER_*`` variables, then explicit overrides (flags; None =
        not given). A value that does not parse as its setting's type is an
        ``InvalidSetting`` naming the variable (or ``--flag``)."""
        source = os.environ if env is None else env
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            var = ENV_PREFIX + f.name.upper()
            raw = source.get(var)
            if raw is not None:
                values[f.name] = parse_value(hints[f.name], raw, var)
        for name, value in overrides.items():
            if value is not None:
                flag = "--" + name.replace("_", "-")
                values[name] = _check(hints[name], value, flag) if name in hints else value
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The inverse of ``from_env``: how the CLI hands settings to worker processes."""
        return {ENV_PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def require_extra(extra: str, what: str) -> None:
    missing = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtra(f"{what} needs the {extra} extra ({', '.join(missing)} not "
                           f"installed): pip install 'headwater[{extra}]'")


def parse_value(kind: Any, raw: str, name: str) -> Any:
    """The text of a setting (``name``: the variable or flag it came from) as ``kind``: str,
    int, float, bool or a ``Literal`` of strings; anything else is an ``InvalidSetting``."""
    text = raw.strip().lower()
    if get_origin(kind) in (Union, UnionType):
        for option in get_args(kind):
            with contextlib.suppress(InvalidSetting):
                return parse_value(option, raw, name)
        allowed = " or ".join("an integer" if o is int else ", ".join(get_args(o))
                              for o in get_args(kind))
        raise InvalidSetting(f"{name}: {raw!r} is not {allowed}")
    if kind is bool:
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise InvalidSetting(f"{name}: {raw!r} is not a boolean (true/false, 1/0, yes/no, "
                             "on/off)")
    # No setting counts below zero (0 is "none" or "off" where it means anything).
    if kind is int:
        if _INT.fullmatch(text):
            if int(text) < 0:
                raise InvalidSetting(f"{name}: {raw!r} is negative; give 0 or more")
            return int(text)
        raise InvalidSetting(f"{name}: {raw!r} is not an integer")
    if kind is float:
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if math.isfinite(number) and number < 0:
            raise InvalidSetting(f"{name}: {raw!r} is negative; give 0 or more")
        if math.isfinite(number):
            return number
        raise InvalidSetting(f"{name}: {raw!r} is not a number")
    if get_origin(kind) is Literal:
        if text in get_args(kind):
            return text
        raise InvalidSetting(f"{name}: {raw!r} is not one of {', '.join(get_args(kind))}")
    return raw


def _check(kind: Any, value: Any, name: str) -> Any:
    """An override (a flag's value): text is parsed as from the environment; a typed value
    must be one of a ``Literal``'s when the setting has one."""
    if isinstance(value, str) or get_origin(kind) in (Literal, Union, UnionType):
        return parse_value(kind, str(value), name)
    return value
