"""Read replicas: which server answers a plain read, and the consistency tokens that keep a
client's reads after its own writes.

Each replica is a ``PostgresDatabase`` of its own (its own pool and breaker). A background
monitor samples, every ``replica_check_interval`` seconds, the primary's WAL position and each
replica's replay position, and derives the replica's lag: none once it has replayed what the
primary had written (an idle primary makes ``pg_last_xact_replay_timestamp()`` look old, so
the timestamp only counts while the replica is behind in LSN). A replica lagging past
``max_replica_lag``, unreachable, or with its breaker open is skipped; with none left, reads go
to the primary.

A consistency token is a WAL position (an LSN, written as PostgreSQL writes it, ``16/B374D848``):
after a write commits, this node reads the primary's WAL insert position, which is at or past
the write's commit record. A read presenting a token is served by a replica only once that
replica has replayed past it (asked directly, for up to ``replica_token_wait`` seconds), else
by the primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from headwater.config import Settings
from headwater.db.recent_writers import RecentWriters, SharedRecentWriters
from headwater.errors import HeadwaterError
from headwater.model.consistency import format_lsn
from headwater.resilience.breaker import BreakerState

if TYPE_CHECKING:  # the postgres extra: only a server given replicas imports it
    from headwater.db.postgres import PostgresDatabase

_PRIMARY_SQL = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8"
#: The insert position is at or past the end of every commit record already written, whatever
#: ``synchronous_commit`` says (the flushed position may not yet be, with it off).
_COMMIT_SQL = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8"
_REPLAY_SQL = "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8"
_SAMPLE_SQL = ("SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8, "
               "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8, "
               "pg_is_in_recovery() AND pg_is_wal_replay_paused()")


class Replica:
    """One replica: its database (pool and breaker) and what the monitor last saw of it."""

    def __init__(self, name: str, db: PostgresDatabase) -> None:
        self.name = name
        self.db = db
        self.started = False
        #: A lower bound of its replay position now (the last one seen).
        self.replay = 0
        self.lag = math.inf
        self.reachable = False
        self.paused = False
        self.error: str | None = "not checked yet"
        self._monitor: Any = None
        self._refreshing: asyncio.Future[None] | None = None

    def usable(self, max_lag: float) -> bool:
        b = self.db.breaker
        return (self.reachable and self.started and self.lag <= max_lag
                and (b is None or b.state is not BreakerState.OPEN))

    async def refresh(self) -> None:
        """Ask the replica how far it has replayed, one question at a time however many
        readers wait on it."""
        pending = self._refreshing
        if pending is None:
            pending = self._refreshing = asyncio.ensure_future(self._ask())
            pending.add_done_callback(lambda _: setattr(self, "_refreshing", None))
        await asyncio.shield(pending)

    async def _ask(self) -> None:
        with contextlib.suppress(HeadwaterError):
            (replay,) = await self.db.fetchrow(_REPLAY_SQL, ())
            if replay is not None:
                self.replay = max(self.replay, int(replay))

    def report(self, max_lag: float) -> dict[str, Any]:
        b = self.db.breaker
        status = ("ok" if self.usable(max_lag) else "lagging" if self.reachable
                  and self.lag > max_lag else "unavailable")
        out: dict[str, Any] = {"status": status,
                               "lag_seconds": round(self.lag, 3) if math.isfinite(self.lag)
                               else None,
                               "replay_lsn": format_lsn(self.replay),
                               "breaker": b.state.name.lower() if b is not None else "closed"}
        if self.paused:
            out["replay_paused"] = True
        if self.error is not None and status != "ok":
            out["error"] = self.error
        return out


class Replicas:
    """Routes plain reads among the replicas and keeps this node's consistency bookkeeping:
    the highest commit LSN it has seen, and who wrote recently (the server's, shared by its
    workers through the runtime directory; a process's own without one)."""

    def __init__(self, primary: PostgresDatabase, replicas: list[Replica], settings: Settings,
                 *, log: Any, on_sample: Callable[[Replicas], None] | None = None) -> None:
        self.primary = primary
        self.replicas = replicas
        self.settings = settings
        self.log = log
        self.on_sample = on_sample
        #: The highest commit LSN this node knows of (its own writes', and the primary's WAL
        #: position as last sampled): a replica read is cached only once replayed past it.
        self.latest = 0
        self.primary_lsn = 0
        self._previous_primary = 0
        self._primary_conn: Any = None
        window = settings.read_your_writes_window
        self.writers: RecentWriters | SharedRecentWriters = (
            SharedRecentWriters(settings.runtime_dir, window) if settings.runtime_dir
            else RecentWriters(window))
        self._next = 0
        self._task: asyncio.Task[None] | None = None
        #: Fresh reads by who answered: ``replica``, ``primary``, ``fallback`` (a replica
        #: failed and the primary answered); exported as ``headwater_reads_served``.
        self.served: dict[str, int] = {}

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self._sample()
        self._task = asyncio.create_task(self._monitor())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for conn in [self._primary_conn, *(r._monitor for r in self.replicas)]:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=1)
        for r in self.replicas:
            await r.db.close()
        self.writers.close()

    async def _monitor(self) -> None:
        interval = self.settings.replica_check_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self._sample()
            except Exception as exc:  # the monitor must outlive any one bad sample
                self.log.error("replica_monitor_failed", error=repr(exc)[:300])

    async def _connect(self, url: str) -> Any:
        import asyncpg

        from headwater.db.postgres import connect_options

        return await asyncpg.connect(url.replace("postgres://", "postgresql://", 1),
                                     timeout=self.settings.connect_timeout,
                                     **connect_options(self.settings))

    async def _sample(self) -> None:
        import asyncpg  # the postgres extra, there whenever replicas are

        timeout = max(0.5, self.settings.max_replica_lag)
        try:
            if self._primary_conn is None or self._primary_conn.is_closed():
                self._primary_conn = await self._connect(self.settings.database_url)
            lsn = await self._primary_conn.fetchval(_PRIMARY_SQL, timeout=timeout)
            self._previous_primary, self.primary_lsn = self.primary_lsn, int(lsn)
            self.latest = max(self.latest, self._previous_primary)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
                asyncpg.exceptions.InternalClientError):
            await self._drop_primary()
        await asyncio.gather(*(self._sample_replica(r, timeout) for r in self.replicas))
        if self.on_sample is not None:
            self.on_sample(self)

    async def _drop_primary(self) -> None:
        conn, self._primary_conn = self._primary_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()

    async def _sample_replica(self, r: Replica, limit: float) -> None:
        import asyncpg

        try:
            if r._monitor is None or r._monitor.is_closed():
                r._monitor = await self._connect(r.db.settings.database_url)
            replay, since, paused = await r._monitor.fetchrow(_SAMPLE_SQL, timeout=limit)
            if not r.started:
                await r.db.start()
                r.started = True
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
                asyncpg.exceptions.InternalClientError, HeadwaterError) as exc:
            # InternalClientError: still cancelling the query of a sample that timed out
            # ("another operation is in progress"); replaced like any broken connection.
            if r.reachable:
                self.log.warning("replica_unreachable", replica=r.name,
                                 error=type(exc).__name__)
            r.reachable, r.lag, r.error = False, math.inf, type(exc).__name__
            conn, r._monitor = r._monitor, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.terminate()
            return
        if replay is None:  # not in recovery: a primary named as a replica
            r.reachable, r.lag, r.error = False, math.inf, "not a standby (not in recovery)"
            return
        r.replay = max(r.replay, int(replay))
        r.paused = bool(paused)
        if r.replay >= self.primary_lsn:
            lag = 0.0
        else:
            # Behind in WAL: as old as the last transaction it replayed, but no older than
            # one interval when it had reached the primary's previous position.
            lag = math.inf if since is None else max(0.0, float(since))
            if r.replay >= self._previous_primary:
                lag = min(lag, self.settings.replica_check_interval)
        if not r.reachable:
            self.log.info("replica_reachable", replica=r.name)
        r.reachable, r.lag, r.error = True, lag, None

    # --- consistency --------------------------------------------------------------------------

    async def committed(self) -> int:
        """After a write commits (before its response): its consistency token."""
        try:
            (lsn,) = await self.primary.fetchrow(_COMMIT_SQL, ())
        except HeadwaterError as exc:
            # The write is committed; without its position the token is the best one known,
            # and the writer's window still covers its own reads.
            self.log.warning("commit_lsn_unknown", error=exc.message)
            return self.latest
        self.latest = max(self.latest, int(lsn))
        return self.latest

    def wrote(self, who: str) -> None:
        """After ``who``'s write commits (before its response): its reads without a token
        stay on the primary for ``read_your_writes_window`` seconds."""
        self.writers.wrote(who)

    # --- routing ------------------------------------------------------------------------------

    async def route(self, token: int, who: str) -> Replica | None:
        """The replica that answers this read, or None for the primary."""
        if self.writers.recent(who):
            return None
        max_lag = self.settings.max_replica_lag
        usable = [r for r in self.replicas if r.usable(max_lag)]
        if not usable:
            return None
        n = len(usable)
        start = self._next
        self._next = (start + 1) % (1 << 30)
        if not token:
            return usable[start % n]
        for i in range(n):
            r = usable[(start + i) % n]
            if r.replay >= token:
                return r
        best = max(usable, key=lambda r: r.replay)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.replica_token_wait
        while True:
            await best.refresh()
            if best.replay >= token:
                return best
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(0.003)

    def report(self) -> dict[str, Any]:
        max_lag = self.settings.max_replica_lag
        return {r.name: r.report(max_lag) for r in self.replicas}


def open_replicas(primary: PostgresDatabase, settings: Settings, *, log: Any,
                  on_query: Callable[[], None] | None = None,
                  on_sample: Callable[[Replicas], None] | None = None) -> Replicas:
    """The replicas the settings name, each served read-only with its own pool."""
    from headwater.db.postgres import PostgresDatabase

    replicas = []
    for i, url in enumerate(settings.replicas(), 1):
        own = settings.replace(database_url=url, read_only=True)
        replicas.append(Replica(f"replica{i}", PostgresDatabase(own, on_query)))
    return Replicas(primary, replicas, settings, log=log, on_sample=on_sample)
