"""``headwater serve | demo | worker | events dlq``: the command line (Typer)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from uvicorn.supervisors import Multiprocess

from headwater.cli_help import DATABASE_HELP, PlainHelp
from headwater.config import Settings
from headwater.errors import ConfigError, DemoTargetBusy, InvalidSetting
from headwater.keys_cli import check_serving, keys_cli
from headwater.settings_file import SecuritySettings

cli = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Serve any SQLite or PostgreSQL database as a PostgREST-style REST API.")

DEMO_FILE = "headwater-demo.db"


def _version(value: bool) -> None:
    if value:
        from headwater import __version__

        typer.echo(f"headwater {__version__}")
        raise typer.Exit()


@cli.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the version and exit")] = False) -> None:
    """Serve any SQLite or PostgreSQL database as a PostgREST-style REST API."""


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def _build_demo(url: str, scale: float, *, force: bool) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )

    from headwater.demo import build_demo

    with Progress(TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn()) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(table: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = bar.add_task(table, total=total)
            bar.update(tasks[table], completed=done, total=total)

        asyncio.run(build_demo(url, scale=scale, progress=progress, force=force))


def _check_security_against_catalog(settings: Settings, security: SecuritySettings) -> None:
    """A policy naming a table, column or claim that does not exist: a ``SettingsError``
    now, not requests refused later."""
    from headwater.db.catalog import introspect
    from headwater.service.policy_check import check_against_catalog

    if not (security.policies or security.encryption.columns):
        return
    try:
        catalog = asyncio.run(introspect(settings.database_url, settings.db_schema,
                                         prepared_statements=settings.db_prepared_statements))
    except Exception:  # the server reports the database itself, once it runs
        return
    check_against_catalog(security, catalog)


def _check_serving_settings(settings: Settings, flags: dict[str, object],
                            security: SecuritySettings) -> Settings:
    """What uvicorn or a worker process would otherwise fail on, late and with a traceback:
    each a one-line ``InvalidSetting`` (or ``SettingsError``). Returns the settings to serve
    with."""
    from headwater.db.location import probe_postgres, sqlite_file_state, sqlite_path

    settings.require_extras()

    def source(name: str) -> str:
        if name == "replica_urls" and flags.get(name) is not None:
            return "--replica"
        return f"--{name.replace('_', '-')}" if flags.get(name) is not None else \
            f"HEADWATER_{name.upper()}"

    if not 1 <= settings.port <= 65535:
        raise InvalidSetting(f"{source('port')}: {settings.port} is not a port (1-65535)")
    if settings.workers != "auto" and settings.workers < 1:
        raise InvalidSetting(f"{source('workers')}: {settings.workers} is not a number of "
                             "worker processes (1 or more, or auto)")
    if settings.app:
        from headwater.service.hooks import load_app

        try:
            load_app(settings.app)
        except Exception as exc:  # whatever importing the user's module raised
            text = str(exc).splitlines()[0] if str(exc) else ""
            reason = f"{type(exc).__name__}: {text}"
            raise InvalidSetting(f"{source('app')}: cannot load {settings.app!r} ({reason}); "
                                 "give package.module:app naming a headwater.App") from None
    for url in settings.replicas():
        if not url.startswith(("postgresql:", "postgres:")):
            raise InvalidSetting(f"{source('replica_urls')}: {url!r} is not a PostgreSQL URL "
                                 "(postgresql://user@host:port/dbname)")
    if settings.replicas() and not settings.database_url.startswith(("postgresql:",
                                                                     "postgres:")):
        raise InvalidSetting(f"{source('replica_urls')}: read replicas need a PostgreSQL "
                             "primary")
    if settings.database_url.startswith(("postgresql:", "postgres:")):
        from headwater.db.postgres import connect_options

        down = asyncio.run(probe_postgres(settings.database_url, settings.connect_timeout,
                                          connect_options(settings)))
        if down is not None:
            typer.echo(f"PostgreSQL is not reachable now ({down}); serving degraded and "
                       "retrying in the background.", err=True)
        else:
            _check_security_against_catalog(settings, security)
        return settings
    path = sqlite_path(settings.database_url)
    state = sqlite_file_state(path)
    _check_security_against_catalog(settings, security)
    if settings.read_only:
        typer.echo(f"Serving {path} read-only: nothing in it will change; writes answer 405.",
                   err=True)
    elif state.unwritable:
        typer.echo(f"Warning: {path} (or its directory) is not writable: serving it read-only; "
                   "writes answer 405.", err=True)
        settings = settings.replace(read_only=True)
    else:
        changes = (["switches it to WAL journal mode (faster concurrent reads)"]
                   if state.needs_wal else [])
        changes.append("creates its own _headwater_* tables when events are first "
                       "recorded or an API key is made")
        typer.echo(f"Serving {path}: Headwater {' and '.join(changes)}. --read-only changes "
                   "nothing.", err=True)
    return settings


@cli.command(cls=PlainHelp)
def serve(
    database_url: Annotated[str | None, typer.Argument(
        help=DATABASE_HELP, show_default=False, metavar="DATABASE")] = None,
    demo: Annotated[bool, typer.Option("--demo", help=f"Build ./{DEMO_FILE} if missing and serve "
                                                      "it")] = False,
    host: Annotated[str | None, typer.Option(
        metavar="HOST", help="Address to listen on; default 127.0.0.1  [env: HEADWATER_HOST]")]
    = None,
    port: Annotated[str | None, typer.Option(
        metavar="PORT", help="1-65535; default 3000  [env: HEADWATER_PORT]")] = None,
    workers: Annotated[str | None, typer.Option(
        metavar="N|auto", help="Worker processes; default auto: one per core this process may "
                               "use (CPU affinity and cgroup quota)  [env: HEADWATER_WORKERS]")]
    = None,
    log_level: Annotated[str | None, typer.Option(
        metavar="LEVEL", help="debug|info|warning|error  [env: HEADWATER_LOG_LEVEL]")] = None,
    log_format: Annotated[str | None, typer.Option(
        metavar="FORMAT", help="auto (readable on a terminal, JSON lines otherwise)|json|"
                               "console  [env: HEADWATER_LOG_FORMAT]")] = None,
    app: Annotated[str | None, typer.Option(
        "--app", metavar="MODULE:APP",
        help="package.module:app with hooks and RPC  [env: HEADWATER_APP]")] = None,
    config: Annotated[str | None, typer.Option(
        "--config", metavar="FILE", help="Settings file: auth, policies, rate limits, "
                                         "encryption  [env: HEADWATER_CONFIG]")] = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="Listen on a non-loopback address without authentication  "
                           "[env: HEADWATER_INSECURE]")] = False,
    tls_cert: Annotated[str | None, typer.Option(
        "--tls-cert", metavar="FILE", help="PEM certificate  [env: HEADWATER_TLS_CERT]")]
    = None,
    tls_key: Annotated[str | None, typer.Option(
        "--tls-key", metavar="FILE", help="PEM private key  [env: HEADWATER_TLS_KEY]")] = None,
    read_only: Annotated[bool, typer.Option(
        "--read-only", help="Change nothing in the database: SQLite opened read-only (no WAL "
                            "switch, no Headwater tables), PostgreSQL in read-only "
                            "transactions; writes answer 405  [env: HEADWATER_READ_ONLY]")]
    = False,
    db_plan_enabled: Annotated[bool, typer.Option(
        "--db-plan-enabled", help="Answer Accept: application/vnd.pgrst.plan with the read's "
                                  "EXPLAIN (PostgreSQL)  [env: HEADWATER_DB_PLAN_ENABLED]")]
    = False,
    no_aggregates: Annotated[bool, typer.Option(
        "--no-aggregates", help="Refuse aggregates in select= (count(), amount.sum()...) with "
                                "PGRST123  [env: HEADWATER_AGGREGATES_ENABLED=false]")] = False,
    replica: Annotated[list[str] | None, typer.Option(
        "--replica", metavar="URL",
        help="A PostgreSQL streaming replica for plain reads (repeatable)  "
             "[env: HEADWATER_REPLICA_URLS, comma-separated]")] = None,
) -> None:
    """Serve a database over HTTP. Every setting can also be given as a HEADWATER_*
    environment variable (see the README's Settings)."""
    from headwater.db.location import given_database_url

    if demo and database_url is None:
        path = Path(DEMO_FILE)
        if not path.exists():
            typer.echo(f"Building the demo database {path} ...", err=True)
            _build_demo(_sqlite_url(path), 1.0, force=False)
        database_url = _sqlite_url(path)
    flags: dict[str, Any] = {"host": host, "port": port, "workers": workers,
                                "log_level": log_level, "log_format": log_format, "app": app,
                                "config": config,
                                "insecure": insecure or None, "tls_cert": tls_cert,
                                "tls_key": tls_key, "read_only": read_only or None,
                                "db_plan_enabled": db_plan_enabled or None,
                                "aggregates_enabled": False if no_aggregates else None,
                                "replica_urls": ",".join(replica) if replica else None}
    # A bad variable, flag or settings file is named first.
    security, notes = check_serving(Settings.from_env(None, **flags))
    url = given_database_url(database_url, os.environ)
    settings = Settings.from_env(None, database_url=url, **flags)
    settings = _check_serving_settings(settings, flags, security)
    for note in notes:
        typer.echo(note, err=True)
    count, why = _worker_count(settings)
    with _runtime_dir(settings) as runtime:
        settings = settings.replace(workers=count, runtime_dir=runtime)
        # Worker processes rebuild the same settings from the environment.
        os.environ.update(settings.to_env())
        _run(settings, why)


def _worker_count(settings: Settings) -> tuple[int, str]:
    """How many worker processes, and why (for the start banner)."""
    if settings.workers == "auto":
        from headwater.cores import available_cores

        cores = available_cores()
        return cores.count, f"auto: {cores.reason}"
    return settings.workers, "as configured"


@contextlib.contextmanager
def _runtime_dir(settings: Settings) -> Iterator[str]:
    """The directory this server's workers share, removed at exit unless it was given."""
    if settings.runtime_dir:
        os.makedirs(settings.runtime_dir, mode=0o700, exist_ok=True)
        yield settings.runtime_dir
        return
    _sweep_runtime_dirs()
    path = tempfile.mkdtemp(prefix="headwater-serve-")
    Path(path, "owner").write_text(str(os.getpid()))
    try:
        yield path
    finally:
        # A worker still closing may write one last file while the tree is removed.
        for _ in range(10):
            shutil.rmtree(path, ignore_errors=True)
            if not os.path.exists(path):
                break
            time.sleep(0.2)


class _AnnouncingServer(uvicorn.Server):
    """Says where it serves once it listens, with the port actually bound."""

    announce: Callable[[int], None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            # The signal asked for the graceful stop that has now happened: the process ends
            # normally (uvicorn would raise it again and die by it, before the runtime
            # directory is removed), with status 0 as several workers' supervisor does.
            self._captured_signals.clear()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and sockets is None and self.announce is not None:
            self.announce(self.servers[0].sockets[0].getsockname()[1])


def _sweep_runtime_dirs(grace: float = 60.0) -> None:
    """Remove the runtime directories of servers that were killed (SIGKILL leaves them): those
    whose owner process is gone."""
    for path in Path(tempfile.gettempdir()).glob("headwater-serve-*"):
        try:
            if time.time() - path.stat().st_mtime < grace:
                continue
            os.kill(int((path / "owner").read_text()), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (OSError, ValueError):
            continue  # not ours to judge (another user's, or being written)


class _Supervisor(Multiprocess):
    """uvicorn's supervisor, except that SIGHUP reloads every worker's catalog in place (as
    it does with one worker) instead of replacing the workers."""

    def handle_hup(self) -> None:
        for process in self.processes:
            if process.pid is not None and process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGHUP)


def _run(settings: Settings, why: str = "") -> None:
    from headwater.db.location import redacted

    scheme = "https" if settings.tls_cert else "http"
    from headwater.api.connection import protocol_factory

    console = (Path(__file__).parent / "console" / "index.html").is_file()
    assert settings.workers != "auto"
    workers = settings.workers

    def announce(port: int) -> None:
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        base = f"{scheme}://{host}:{port}/"
        count = f"{workers} worker{'s' * (workers != 1)}" + (f" ({why})" if why else "")
        typer.echo(f"Headwater serving {redacted(settings.database_url)} on {base} with {count}"
                   + (f"\nConsole: {base}-/console/" if console else ""), err=True)

    config = uvicorn.Config(
        "headwater.app:create_app_from_env", factory=True, host=settings.host,
        port=settings.port, workers=workers, log_level="warning",
        # uvicorn's own lines go through Headwater's handler (one format).
        log_config=None, access_log=False, loop="uvloop",
        # httptools with the limits it lacks: head size and deadline, connections.
        http=protocol_factory(settings), timeout_keep_alive=settings.keep_alive_timeout,
        timeout_graceful_shutdown=10, ssl_certfile=settings.tls_cert or None,
        ssl_keyfile=settings.tls_key or None,
        # X-Forwarded-For is honoured only from rate_limits.trusted_proxies (ours),
        # never by uvicorn's default trust of 127.0.0.1.
        proxy_headers=False)
    if config.workers > 1:
        # Several workers: the socket is bound here, once, and handed to each (the config is
        # pickled to them, so it stays uvicorn's own class).
        sock = config.bind_socket()
        announce(sock.getsockname()[1])
        _Supervisor(config, sockets=[sock]).run()
        return
    server = _AnnouncingServer(config)
    server.announce = announce
    server.run()
    if not server.started:
        raise SystemExit(1)  # uvicorn logged why (e.g. the address is in use)


@cli.command(cls=PlainHelp)
def demo(
    path: Annotated[str, typer.Argument(
        metavar="TARGET", help="A SQLite file to create (my.db), or a postgresql:// URL")],
    scale: Annotated[str, typer.Option(
        metavar="SCALE", help="Size: 1 ≈ 10k order items; 100 ≈ 1 million")] = "1",
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an existing file, or existing demo tables on PostgreSQL")]
    = False,
) -> None:
    """Write the deterministic demo shop (customers, products, orders, order_items)."""
    from headwater.config import parse_value

    size = parse_value(float, scale, "--scale")
    if size <= 0:
        raise InvalidSetting(f"--scale: {scale!r} must be more than 0 (1 ≈ 10k order items)")
    if "://" in path or path.startswith("sqlite:"):
        url = path
        if url.startswith(("postgresql:", "postgres:")):
            from headwater.config import require_extra
            from headwater.db.location import probe_postgres

            require_extra("postgres", "a postgresql:// target")

            reason = asyncio.run(probe_postgres(url, 5.0))
            if reason is not None:
                raise InvalidSetting(f"TARGET: cannot reach PostgreSQL: {reason}")
    else:
        url = _sqlite_url(Path(path))
    _build_demo(url, size, force=force)
    typer.echo(f"Demo data written to {url}", err=True)


def _given(database_url: str | None) -> str:
    from headwater.db.location import given_database_url

    Settings.from_env()  # a bad variable is named first
    url = given_database_url(database_url, os.environ)
    Settings.from_env(database_url=url).require_extras()
    return url


# --- events -----------------------------------------------------------------------------------

_DB_ARG = typer.Argument(help="The database of the processed-ids (and, without a broker, "
                              "dead-letter) tables: " + DATABASE_HELP,
                         show_default=False, metavar="DATABASE")
_AMQP = typer.Option("--amqp-url", metavar="URL",
                     help="amqp://user:pass@host:5672/  [env: HEADWATER_AMQP_URL]")
_APP = typer.Option("--app", metavar="MODULE:APP",
                    help="package.module:app with @app.on handlers  [env: HEADWATER_APP]")


@cli.command(cls=PlainHelp)
def worker(
    database_url: Annotated[str | None, _DB_ARG] = None,
    app: Annotated[str | None, _APP] = None,
    amqp_url: Annotated[str | None, _AMQP] = None,
    log_level: Annotated[str | None, typer.Option(
        metavar="LEVEL", help="debug|info|warning|error  [env: HEADWATER_LOG_LEVEL]")] = None,
) -> None:
    """Run the app's @app.on handlers and the webhooks on RabbitMQ until stopped."""
    from headwater.events.worker import run_worker
    from headwater.service.hooks import load_app

    settings = Settings.from_env(database_url=_given(database_url), app=app,
                                 amqp_url=amqp_url, log_level=log_level)
    settings.require_extras()
    if not settings.amqp_url:
        raise typer.BadParameter("a worker needs RabbitMQ (without one, `headwater serve` runs "
                                 "the handlers itself)", param_hint="--amqp-url")
    subs = list(load_app(settings.app).subscriptions.values()) if settings.app else []
    if not subs and not settings.webhooks:
        raise typer.BadParameter("no @app.on handlers and no webhooks to run", param_hint="--app")
    asyncio.run(run_worker(settings, subs))


@cli.command(cls=PlainHelp)
def relay(
    database_url: Annotated[str | None, typer.Argument(
        help="The database whose outbox to publish: " + DATABASE_HELP,
        show_default=False, metavar="DATABASE")] = None,
    amqp_url: Annotated[str | None, _AMQP] = None,
    poll_interval: Annotated[float | None, typer.Option(
        metavar="SECONDS",
        help="Seconds between polls of an idle outbox  [env: HEADWATER_RELAY_POLL_INTERVAL]")]
    = None,
    log_level: Annotated[str | None, typer.Option(
        metavar="LEVEL", help="debug|info|warning|error  [env: HEADWATER_LOG_LEVEL]")] = None,
) -> None:
    """Publish the outbox to RabbitMQ until stopped, for servers run with
    HEADWATER_RELAY_IN_SERVER=false (their event loops then only serve requests)."""
    from headwater.events.runtime import run_relay

    settings = Settings.from_env(database_url=_given(database_url), amqp_url=amqp_url,
                                 relay_poll_interval=poll_interval, log_level=log_level)
    settings.require_extras()
    if not settings.amqp_url:
        raise typer.BadParameter("the relay publishes to RabbitMQ", param_hint="--amqp-url")
    asyncio.run(run_relay(settings))


events_cli = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="Events: the dead-letter queues.")
dlq_cli = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                      help="Events that failed every attempt: list them, or send them back.")
events_cli.add_typer(dlq_cli, name="dlq")
cli.add_typer(events_cli, name="events")
cli.add_typer(keys_cli, name="keys")


def _dlq_settings(database_url: str | None, app: str | None, amqp_url: str | None,
                  handler: list[str] | None) -> tuple[Settings, list[str]]:
    from headwater.events.worker import queue_names
    from headwater.service.hooks import load_app

    settings = Settings.from_env(database_url=_given(database_url), app=app,
                                 amqp_url=amqp_url)
    settings.require_extras()
    subs = list(load_app(settings.app).subscriptions.values()) if settings.app else []
    queues = queue_names(settings, subs, handler or ())
    if settings.amqp_url and not queues:
        raise typer.BadParameter("name the handlers: --app pkg.mod:app or --handler NAME",
                                 param_hint="--app")
    return settings, queues


_HANDLER = typer.Option("--handler", metavar="NAME",
                        help="A handler's name (repeatable); default: all of the app's")


@dlq_cli.command("list", cls=PlainHelp)
def dlq_list(
    database_url: Annotated[str | None, _DB_ARG] = None,
    app: Annotated[str | None, _APP] = None,
    amqp_url: Annotated[str | None, _AMQP] = None,
    handler: Annotated[list[str] | None, _HANDLER] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """Show the dead letters (without consuming them)."""
    import msgspec
    from rich.console import Console
    from rich.table import Table

    from headwater.events.worker import list_dead_letters

    settings, queues = _dlq_settings(database_url, app, amqp_url, handler)
    letters = asyncio.run(list_dead_letters(settings, queues))
    if as_json:
        for d in letters:
            typer.echo(msgspec.json.encode({
                "queue": d.queue, "id": d.id, "routing_key": d.routing_key,
                "attempts": d.attempts, "error": d.error,
                "event": msgspec.json.decode(d.body)}).decode())
        return
    table = Table("queue", "event id", "routing key", "attempts", "error")
    for d in letters:
        table.add_row(d.queue, d.id, d.routing_key, str(d.attempts), d.error)
    Console().print(table)
    typer.echo(f"{len(letters)} dead letter(s)", err=True)


@dlq_cli.command("replay", cls=PlainHelp)
def dlq_replay(
    database_url: Annotated[str | None, _DB_ARG] = None,
    app: Annotated[str | None, _APP] = None,
    amqp_url: Annotated[str | None, _AMQP] = None,
    handler: Annotated[list[str] | None, _HANDLER] = None,
) -> None:
    """Send the dead letters back to their handlers, each as a first attempt."""
    from headwater.events.worker import replay_dead_letters

    settings, queues = _dlq_settings(database_url, app, amqp_url, handler)
    counts = asyncio.run(replay_dead_letters(settings, queues))
    for queue, n in counts.items():
        typer.echo(f"{queue}: {n} replayed")


def main() -> None:
    try:
        cli()
    except (ConfigError, DemoTargetBusy) as exc:
        # A setting (variable, flag or settings file) is wrong: the one line that names it,
        # never a traceback, and the exit status of a usage error.
        typer.echo(exc.message, err=True)
        raise SystemExit(2) from None
