"""The composition root: builds the layers from ``Settings`` and exposes the ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from headwater.api.compression import Compressor
from headwater.api.front import Front
from headwater.api.openapi import OpenApi
from headwater.api.profiles import Profile, Profiles
from headwater.api.responses import error_response
from headwater.api.routes import Services, build_routes
from headwater.api.security import Security
from headwater.cache.tiered import ReadCache
from headwater.config import Settings
from headwater.db.catalog import introspect
from headwater.db.connect import open_database
from headwater.db.database import Database
from headwater.db.replicas import Replicas, open_replicas
from headwater.errors import (
    ConfigError,
    DatabaseUnavailable,
    HeadwaterError,
    MethodNotAllowed,
    NotFound,
    ReadOnly,
)
from headwater.events.outbox import Outbox
from headwater.events.recording import Recorder
from headwater.events.runtime import Events, start_events
from headwater.model.catalog import Catalog
from headwater.model.plan import VIEWS
from headwater.model.principal import Principal
from headwater.observability.access import AccessLog
from headwater.observability.logging import LEVELS, is_console, route_library_logs
from headwater.observability.metrics import Metrics
from headwater.resilience.admission import Admission
from headwater.resilience.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from headwater.resilience.bulkhead import Bulkhead
from headwater.resilience.recovery import Recovery
from headwater.service.api_keys import KeyStore
from headwater.service.hooks import App, load_app
from headwater.service.policy import Access
from headwater.service.reads import Reads
from headwater.service.rpc import Rpc
from headwater.service.write_guard import WriteGuard
from headwater.service.writes import Writer
from headwater.settings_file import load_security

if TYPE_CHECKING:  # the redis and postgres extras: imported only when configured
    from headwater.cache.redis import RedisStore

__all__ = ["Headwater", "create_app", "create_app_from_env"]

#: How old ``/-/ready``'s report may be before a probe starts a fresh check.
READY_SECONDS = 1.0


class Headwater:
    """The running service's parts. One per process; passed explicitly, never global."""

    def __init__(self, settings: Settings) -> None:
        if settings.db_schemas and not settings.database_url.startswith("sqlite"):
            # The first exposed schema is the database's schema (Headwater's tables too).
            settings = settings.replace(db_schema=settings.exposed_schemas()[0])
        self.settings = settings
        self.log: Any = route_library_logs(settings.log_level, fmt=settings.log_format)
        self.metrics = Metrics()
        #: One line per request at the info level (the default), written in batches.
        self.access_log = (AccessLog(console=is_console(settings.log_format, sys.stdout))
                           if self.log_enabled("info") else None)
        self.db: Database = open_database(settings, on_query=self.metrics.query)
        if settings.runtime_dir:
            self.metrics.share(settings.runtime_dir, self.db.pool_stats)
        self.outbox = Outbox(settings, self.db.dialect, self.db.schema)
        self.recorder = Recorder(self.outbox)
        self.events: Events | None = None
        self.catalog: Catalog | None = None
        #: Whether a write must also move ``VIEWS`` (``model.plan``): any view in a catalog.
        self._has_views = False
        self.app: App = load_app(settings.app) if settings.app else App()
        self.breakers: dict[str, CircuitBreaker] = {}
        #: Background probes of open breakers (``resilience.recovery``), by dependency.
        self.recoveries: dict[str, Recovery] = {}
        if self.db.dialect == "postgresql":
            from headwater.db.postgres import PostgresDatabase  # the postgres extra

            assert isinstance(self.db, PostgresDatabase)
            self.db.breaker = self.breaker("database", BreakerPolicy(
                consecutive_failures=settings.db_breaker_failures,
                reset_timeout=settings.db_breaker_reset))
            self.recoveries["database"] = Recovery(
                self.db.breaker, self.db.probe, timeout=settings.connect_timeout, log=self.log)
        #: PostgreSQL read replicas (None, the default: everything goes to the primary).
        self.replicas: Replicas | None = None
        if settings.replicas():
            if not isinstance(self.db, PostgresDatabase):
                raise ConfigError("read replicas (--replica, HEADWATER_REPLICA_URLS) need a "
                                  "PostgreSQL primary")
            self.replicas = open_replicas(self.db, settings, log=self.log,
                                          on_query=self.metrics.query)
            self.metrics.reads_served = self.replicas.served
            for r in self.replicas.replicas:
                r.db.breaker = self.breaker(r.name, BreakerPolicy(
                    consecutive_failures=settings.db_breaker_failures,
                    reset_timeout=settings.db_breaker_reset))
                self.recoveries[r.name] = Recovery(r.db.breaker, r.db.probe,
                                                   timeout=settings.connect_timeout, log=self.log)
        #: At most half the pool may wait on writes to one table: a locked row or a hot table
        #: can slow its own writers, never starve every other request of connections.
        self.bulkhead = Bulkhead(max(1, settings.pool_max_size // 2), settings.pool_timeout)
        self.admission = Admission(settings.max_inflight, settings.max_loop_lag_ms / 1000)
        self.redis = (_redis_store(settings.redis_url, self.breaker("redis", BreakerPolicy(
            consecutive_failures=settings.redis_breaker_failures,
            reset_timeout=settings.redis_breaker_reset)), timeout=settings.redis_timeout)
            if settings.redis_url else None)
        if self.redis is not None:
            self.recoveries["redis"] = Recovery(self.redis.breaker, self.redis.client.ping,
                                                timeout=settings.redis_timeout * 4, log=self.log)
        self.cache = (ReadCache(settings, self.metrics, redis=self.redis, log=self.log)
                      if settings.cache_enabled else None)
        self.metrics.cache_enabled = self.cache is not None
        self.compressor = Compressor(settings.compression_min_bytes)
        self.documents = OpenApi(self.require_catalog, self.app.rpcs)
        # Authentication, policies, rate limits, encryption (headwater.api.security).
        self.security = Security(load_security(settings.config), app_settings=settings,
                                 keys=KeyStore(self.db), metrics=self.metrics, log=self.log,
                                 redis_breaker=self.breakers.get("redis"),
                                 openapi=self.documents)
        self.reads = Reads(db=self.db, settings=settings, cache=self.cache,
                           cipher=self.security.cipher, catalog=self.require_catalog,
                           replicas=self.replicas)
        #: The other exposed schemas' catalogs (``db_schemas``), by name.
        self.catalogs: dict[str, Catalog] = {}
        self.profiles = self._profiles()
        self.rpc = Rpc(self.db, self.app, recorder=self.recorder, catalog=lambda: self.catalog,
                       on_commit=self.on_commit)
        self._retry: asyncio.Task[None] | None = None
        self._db_started = False
        #: The last readiness report, when it was made, and the check making the next one.
        self._ready: dict[str, Any] | None = None
        self._ready_at = -READY_SECONDS
        self._ready_check: asyncio.Task[dict[str, Any]] | None = None
        #: SIGTERM received with ``shutdown_delay``: ``/-/ready`` answers 503 until the server
        #: is handed the signal (``_delay_shutdown``).
        self.draining = False
        #: The server's own SIGTERM handler while ours stands in front of it.
        self._server_term: Any = None

    def _profiles(self) -> Profiles:
        names = self.settings.exposed_schemas() if self.db.dialect == "postgresql" else ()
        others: dict[str, Profile] = {}
        for name in names[1:]:
            def catalog(name: str = name) -> Catalog:
                return self.require_catalog(name)
            # Uncached: the shared cache keys a read by its table names, not its schema.
            reads = Reads(db=self.db, settings=self.settings.replace(db_schema=name),
                          cache=None, cipher=self.security.cipher, catalog=catalog)
            others[name] = Profile(name, reads, OpenApi(catalog, self.app.rpcs))
        return Profiles(names or (self.settings.db_schema,), others)

    def breaker(self, name: str, policy: BreakerPolicy | None = None) -> CircuitBreaker:
        def changed(dep: str, old: BreakerState, new: BreakerState) -> None:
            self.metrics.breaker_state.labels(dep).set(int(new))
            self.metrics.breaker_transitions.labels(dep, new.name.lower()).inc()
            self.metrics.breakers[dep] = new.name.lower().replace("_", "-")
            self.log.warning("breaker_state", dependency=dep, old=old.name.lower(),
                             new=new.name.lower())
            recovery = self.recoveries.get(dep)
            if recovery is not None and new is BreakerState.OPEN:
                recovery.opened()

        b = CircuitBreaker(name, policy, listener=changed)
        self.breakers[name] = b
        self.metrics.breaker_state.labels(name).set(0)
        self.metrics.breakers[name] = "closed"
        return b

    async def on_commit(self, tables: frozenset[str] | None) -> None:
        """After a write commits and before its response: learn its consistency token (with
        replicas), then invalidate what it changed."""
        lsn = await self.replicas.committed() if self.replicas is not None else 0
        if self.cache is None:
            return
        if tables is not None and self._has_views:
            tables = tables | {VIEWS}  # a view over what was written may change too
        if tables is None:
            await self.cache.invalidate_all(lsn)
        else:
            await self.cache.invalidate(sorted(tables), lsn)

    def log_enabled(self, level: str) -> bool:
        return LEVELS.get(self.settings.log_level.lower(), 20) <= LEVELS[level]

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        # First: a SIGHUP (forwarded to every worker) must never meet the default action,
        # which would end a worker still starting.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGHUP, lambda: asyncio.ensure_future(self.reload_catalog()))
            if self.settings.shutdown_delay > 0:
                self._delay_shutdown(asyncio.get_running_loop())
        if self.metrics.shared is not None:
            self.metrics.shared.start()
        if self.settings.max_loop_lag_ms > 0:
            self.admission.lag.start()
        if self.cache is not None:
            await self.cache.start()
        self.security.start()
        if not await self._connect():
            # Start degraded; /-/ready says why, and we keep trying in the background.
            self._retry = asyncio.create_task(self._reconnect_loop())
        if self.replicas is not None:
            await self.replicas.start()
        self.events = await start_events(self.settings, self.outbox,
                                         list(self.app.subscriptions.values()),
                                         metrics=self.metrics, log=self.log, app_db=self.db)

    def _delay_shutdown(self, loop: asyncio.AbstractEventLoop) -> None:
        """SIGTERM: keep serving for ``shutdown_delay`` seconds while ``/-/ready`` answers 503,
        then hand the signal to the server's own handler (uvicorn's: stop accepting, finish
        what is in flight, exit). A load balancer checking readiness stops sending here before
        the socket closes, so no request meets a connection refused or reset after it was
        sent (which a balancer may not retry safely: a write). Another SIGTERM meanwhile (the
        supervisor's, after a service manager signalled the whole group) changes nothing;
        SIGINT or SIGKILL stop at once."""
        self._server_term = signal.getsignal(signal.SIGTERM)

        def hand_over() -> None:
            if self._restore_sigterm(loop):
                signal.raise_signal(signal.SIGTERM)

        def term() -> None:
            if not self.draining:
                self.draining = True
                self.log.info("draining", seconds=self.settings.shutdown_delay)
                loop.call_later(self.settings.shutdown_delay, hand_over)

        loop.add_signal_handler(signal.SIGTERM, term)

    def _restore_sigterm(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Give SIGTERM back to the server's handler; False when ours was not installed."""
        if self._server_term is None or not loop.remove_signal_handler(signal.SIGTERM):
            return False
        signal.signal(signal.SIGTERM, self._server_term)
        self._server_term = None
        return True

    async def _connect(self) -> bool:
        try:
            if not self._db_started:
                await self.db.start()
                self._db_started = True
            # Headwater's own tables are not made here: the features that need them make
            # them on first use (the outbox: the first write with events; API keys: the
            # first `headwater keys create`), so serving leaves a database as it was.
            return await self.reload_catalog()
        except HeadwaterError as exc:
            self.log.error("database_unavailable", error=exc.message, details=str(exc.details))
            return False

    async def _reconnect_loop(self) -> None:
        # Polling a remote database: there is no event to wait on. Backing off to 30 s, so
        # a long outage logs one line per attempt, not one every two seconds.
        delay = 1.0
        while not await self._connect():
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
        self.log.info("database_connected")

    async def reload_catalog(self) -> bool:
        """Introspect again and swap the catalog atomically; on failure keep the old one."""
        prepared = self.settings.db_prepared_statements
        try:
            catalog = await introspect(self.settings.database_url, self.settings.db_schema,
                                       prepared_statements=prepared)
            others = {name: await introspect(self.settings.database_url, name,
                                             prepared_statements=prepared)
                      for name in self.profiles.others}
        except Exception as exc:
            self.metrics.catalog_reloads.labels("error").inc()
            self.log.error("catalog_reload_failed", error=str(exc).split("\n")[0])
            return False
        self.catalog = catalog
        self.catalogs = others
        self._has_views = any(t.is_view for c in (catalog, *others.values())
                              for t in c.tables.values())
        try:
            await self.recorder.install_triggers(self.db, catalog)  # SQLite's, when events are on
        except HeadwaterError as exc:  # writes then record events by a second statement
            self.log.error("event_triggers_failed", error=exc.message)
        self.metrics.catalog_reloads.labels("ok").inc()
        self.log.info("catalog_loaded", tables=len(catalog.tables), dialect=catalog.dialect,
                      functions=len(catalog.functions))
        for name in self.rpc.shadowed():
            if self._first_to_say(f"shadow-{name}"):
                self.log.warning("rpc_shadows_database_function", function=name,
                                 hint="the Python function answers /rpc/" + name)
        _settle_heap()
        return True

    def _first_to_say(self, what: str) -> bool:
        """Whether this worker is the server's first to say ``what`` (a start-up warning is
        one line, not one per worker): a marker in the workers' shared ``runtime_dir``."""
        if not self.settings.runtime_dir:
            return True
        try:
            os.close(os.open(os.path.join(self.settings.runtime_dir, f"said-{what}"),
                             os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return False
        except OSError:
            return True
        return True

    async def close(self) -> None:
        # Stopped for another reason (SIGINT): a SIGTERM from now on is the server's at once.
        self._restore_sigterm(asyncio.get_running_loop())
        if self._ready_check is not None:
            self._ready_check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ready_check
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
        if self.cache is not None:
            await self.cache.close()
        if self.redis is not None:
            await self.redis.close()
        if self.events is not None:
            await self.events.close()
        await self.security.close()
        for recovery in self.recoveries.values():
            await recovery.close()
        await self.admission.lag.stop()
        if self.replicas is not None:
            await self.replicas.close()
        await self.db.close()
        if self.metrics.shared is not None:
            await self.metrics.shared.close()
        if self.access_log is not None:
            self.access_log.flush()

    # --- used by the routes -------------------------------------------------------------------

    def require_catalog(self, profile: str | None = None) -> Catalog:
        """The default schema's catalog, or another exposed schema's (``profile``)."""
        catalog = self.catalog if profile is None else self.catalogs.get(profile)
        if catalog is None:
            raise DatabaseUnavailable("The schema cache is not loaded yet: the database is "
                                      "unreachable")
        return catalog

    def writer(self, access: Access, request_id: str | None,
               profile: str | None = None) -> Writer:
        """The writer for one request, with the caller's policy and encryption in front.
        ``profile``: another exposed schema than the default (``Content-Profile``)."""
        catalog = self.require_catalog(profile)
        if self.settings.read_only:
            raise ReadOnly("cannot write: this server is read-only (--read-only, or the "
                           "database file is not writable)",
                           hint="Serve the database without --read-only to write")
        cipher = self.security.cipher
        guard = (WriteGuard(access if access.restricted else None, cipher, catalog, self.db,
                            profile) if access.restricted or cipher else None)
        return Writer(self.db, catalog, self.settings, self.app,
                      access.principal if access.restricted else Principal(), request_id,
                      on_commit=self.on_commit, recorder=self.recorder, bulkhead=self.bulkhead,
                      guard=guard, profile=profile)

    def services(self) -> Services:
        return Services(
            settings=self.settings, security=self.security, reads=self.reads,
            writer=self.writer, rpc=self.rpc, profiles=self.profiles,
            compressor=self.compressor, log=self.log,
            readiness=self.readiness,
            metrics=self.render_metrics, replicas=self.replicas,
            stats=lambda: self.metrics.stats(self.db.pool_stats()),
            console_dir=self.console_dir())

    def render_metrics(self) -> bytes:
        if self.replicas is not None:
            max_lag = self.settings.max_replica_lag
            for r in self.replicas.replicas:
                self.metrics.replica(r.name, lag=r.lag, usable=r.usable(max_lag),
                                     replay=r.replay)
        return self.metrics.render(self.db.pool_stats())

    async def readiness(self) -> dict[str, Any]:
        """``/-/ready``. The probes that cost a round trip (the database's ``SELECT 1``,
        Redis's ``PING``) are answered from the last check; one older than ``READY_SECONDS``
        starts a new check in the background, one at a time, so probes (however many, from
        anyone) never cost a round trip each; only the very first waits. What is known in
        memory (the catalog, the broker's connection, the breakers) is always current, and an
        open breaker reports its dependency down before the next check does."""
        check = self._ready_check
        if (time.monotonic() - self._ready_at >= READY_SECONDS
                and (check is None or check.done())):
            check = self._ready_check = asyncio.create_task(self._check_readiness())
        probed = self._ready
        if probed is None and check is not None:
            probed = await asyncio.shield(check)
        assert probed is not None
        checks: dict[str, Any] = {"database": probed["database"]}
        checks["catalog"] = {"status": "ok" if self.catalog is not None else "unavailable",
                             "tables": len(self.catalog.tables) if self.catalog else 0}
        if "redis" in probed:
            checks["redis"] = probed["redis"]
        broker = self.events.readiness() if self.events is not None else None
        if broker is not None:  # down: writes go on, their events wait in the outbox
            checks["broker"] = broker
        breakers = {name: b.state.name.lower() for name, b in self.breakers.items()}
        for dep in ("database", "redis"):
            if breakers.get(dep, "closed") == "open" and dep in checks:
                checks[dep] = {**checks[dep], "status": "unavailable", "error": "circuit open"}
        checks["breakers"] = breakers
        replicas = self.replicas.report() if self.replicas is not None else {}
        if replicas:  # any of them down or lagging: reads go to the others, or the primary
            checks["replicas"] = replicas
        ok = checks["database"]["status"] == "ok" and checks["catalog"]["status"] == "ok"
        degraded = (checks.get("redis", {"status": "ok"})["status"] != "ok"
                    or (broker is not None and broker["status"] != "ok")
                    or any(r["status"] != "ok" for r in replicas.values()))
        status = "unavailable" if not ok else ("degraded" if degraded else "ok")
        if self.draining:  # stopping: a load balancer sends nothing new here
            status = "draining"
        return {"status": status, "checks": checks}

    async def _check_readiness(self) -> dict[str, Any]:
        probed: dict[str, Any] = {}
        try:
            await asyncio.wait_for(self.db.ping(), self.settings.connect_timeout)
            probed["database"] = {"status": "ok", "dialect": self.db.dialect}
        except (TimeoutError, HeadwaterError) as exc:
            probed["database"] = {"status": "unavailable", "error": type(exc).__name__}
        if self.redis is not None:
            try:
                await asyncio.wait_for(self.redis.client.ping(), self.settings.redis_timeout * 4)
                probed["redis"] = {"status": "ok"}
            except Exception as exc:  # any failure means: degraded, cache bypassed
                probed["redis"] = {"status": "unavailable", "error": type(exc).__name__,
                                   "effect": "cache bypassed"}
        self._ready, self._ready_at = probed, time.monotonic()
        return probed

    def console_dir(self) -> str | None:
        path = Path(__file__).parent / "console"
        return str(path) if (path / "index.html").is_file() else None


def _redis_store(url: str, breaker: CircuitBreaker, *, timeout: float) -> RedisStore:
    from headwater.cache.redis import RedisStore  # the redis extra, imported when configured

    return RedisStore(url, breaker, timeout=timeout)


def _settle_heap() -> None:
    """Move what start-up (and a catalog load) allocated out of the collector's sight: these
    objects live as long as the process, and the imports and introspection made so many that
    each full collection paused the event loop for ~50 ms (the p99 of every benchmark)."""
    gc.collect()
    gc.freeze()


def create_app(settings: Settings) -> Front:
    settings.require_extras()
    hw = Headwater(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hw.start()
        try:
            yield
        finally:
            await hw.close()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            return error_response(MethodNotAllowed(f"{request.method} is not allowed here"))
        return error_response(NotFound(f"No resource at {request.url.path}"))

    routes = build_routes(hw.services())
    middleware = hw.security.middleware()
    app = Starlette(routes=routes.routes, lifespan=lifespan, middleware=middleware,
                    exception_handlers={HTTPException: http_error})
    return Front(app, routes.table, admission=hw.admission, metrics=hw.metrics, log=hw.log,
                 access_log=hw.access_log, tls=bool(settings.tls_cert),
                 cors=bool(middleware))


def create_app_from_env() -> Front:
    """Zero-argument factory for ASGI servers (``--factory``); settings from HEADWATER_*."""
    return create_app(Settings.from_env())
