"""``headwater serve | demo | worker | events dlq``: the command line (Typer)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer

from headwater.config import Settings
from headwater.errors import ConfigError
from headwater.keys_cli import check_serving, keys_cli

cli = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Serve any SQLite or PostgreSQL database as a PostgREST-style REST API.")

DEMO_FILE = "headwater-demo.db"


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def _build_demo(url: str, scale: float) -> None:
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

        asyncio.run(build_demo(url, scale=scale, progress=progress))


@cli.command()
def serve(
    database_url: Annotated[str | None, typer.Argument(
        help="sqlite:///absolute/path.db or postgresql://user@host:port/db "
             "[env: HEADWATER_DATABASE_URL]", show_default=False)] = None,
    demo: Annotated[bool, typer.Option("--demo", help=f"Build ./{DEMO_FILE} if missing and serve "
                                                      "it")] = False,
    host: Annotated[str | None, typer.Option(help="[env: HEADWATER_HOST] default 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="[env: HEADWATER_PORT] default 3000")] = None,
    workers: Annotated[int | None, typer.Option(help="[env: HEADWATER_WORKERS] default 1")] = None,
    log_level: Annotated[str | None, typer.Option(
        help="[env: HEADWATER_LOG_LEVEL] debug|info|warning|error")] = None,
    app: Annotated[str | None, typer.Option(
        "--app", help="package.module:app with hooks and RPC [env: HEADWATER_APP]")] = None,
    config: Annotated[str | None, typer.Option(
        "--config", help="Settings file: auth, policies, rate limits, encryption "
                         "[env: HEADWATER_CONFIG]")] = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="Listen on a non-loopback address without authentication")] = False,
    tls_cert: Annotated[str | None, typer.Option("--tls-cert", help="PEM certificate")] = None,
    tls_key: Annotated[str | None, typer.Option("--tls-key", help="PEM private key")] = None,
) -> None:
    """Serve a database over HTTP."""
    import uvicorn

    if demo and database_url is None:
        path = Path(DEMO_FILE)
        if not path.exists():
            typer.echo(f"Building the demo database {path} ...", err=True)
            _build_demo(_sqlite_url(path), 1.0)
        database_url = _sqlite_url(path)
    settings = Settings.from_env(database_url=database_url, host=host, port=port,
                                 workers=workers, log_level=log_level, app=app,
                                 config=config, insecure=insecure or None,
                                 tls_cert=tls_cert, tls_key=tls_key)
    _security, notes = check_serving(settings)
    for note in notes:
        typer.echo(note, err=True)
    if settings.database_url.startswith("sqlite:///"):
        file = Path(settings.database_url.removeprefix("sqlite:///"))
        if not file.exists():
            raise typer.BadParameter(f"no SQLite database at {file}", param_hint="DATABASE_URL")
    # Worker processes rebuild the same settings from the environment.
    os.environ.update(settings.to_env())
    scheme = "https" if settings.tls_cert else "http"
    typer.echo(f"Headwater serving {settings.database_url} on "
               f"{scheme}://{settings.host}:{settings.port}/", err=True)
    from headwater.api.connection import protocol_factory

    uvicorn.run("headwater.app:create_app_from_env", factory=True, host=settings.host,
                port=settings.port, workers=settings.workers, log_level="warning",
                # uvicorn's own lines go through Headwater's handler (one format).
                log_config=None, access_log=False, loop="uvloop",
                # httptools with the limits it lacks: head size and deadline, connections.
                http=protocol_factory(settings), timeout_keep_alive=settings.keep_alive_timeout,
                timeout_graceful_shutdown=10, ssl_certfile=settings.tls_cert or None,
                ssl_keyfile=settings.tls_key or None,
                # X-Forwarded-For is honoured only from rate_limits.trusted_proxies (ours),
                # never by uvicorn's default trust of 127.0.0.1.
                proxy_headers=False)


@cli.command()
def demo(
    path: Annotated[str, typer.Argument(help="A SQLite file path, or a postgresql:// URL")],
    scale: Annotated[float, typer.Option(help="1 ≈ 10k order items; 100 ≈ 1 million")] = 1.0,
) -> None:
    """Write the deterministic demo shop (customers, products, orders, order_items)."""
    url = path if "://" in path else _sqlite_url(Path(path))
    _build_demo(url, scale)
    typer.echo(f"Demo data written to {url}", err=True)


# --- events -----------------------------------------------------------------------------------

_DB_ARG = typer.Argument(help="The database of the processed-ids (and, without a broker, "
                              "dead-letter) tables [env: HEADWATER_DATABASE_URL]",
                         show_default=False)
_AMQP = typer.Option("--amqp-url", help="amqp://user:pass@host:5672/ [env: HEADWATER_AMQP_URL]")
_APP = typer.Option("--app", help="package.module:app with @app.on handlers [env: HEADWATER_APP]")


@cli.command()
def worker(
    database_url: Annotated[str | None, _DB_ARG] = None,
    app: Annotated[str | None, _APP] = None,
    amqp_url: Annotated[str | None, _AMQP] = None,
    log_level: Annotated[str | None, typer.Option(help="[env: HEADWATER_LOG_LEVEL]")] = None,
) -> None:
    """Run the app's @app.on handlers and the webhooks on RabbitMQ until stopped."""
    from headwater.events.worker import run_worker
    from headwater.service.hooks import load_app

    settings = Settings.from_env(database_url=database_url, app=app, amqp_url=amqp_url,
                                 log_level=log_level)
    if not settings.amqp_url:
        raise typer.BadParameter("a worker needs RabbitMQ (without one, `headwater serve` runs "
                                 "the handlers itself)", param_hint="--amqp-url")
    subs = list(load_app(settings.app).subscriptions.values()) if settings.app else []
    if not subs and not settings.webhooks:
        raise typer.BadParameter("no @app.on handlers and no webhooks to run", param_hint="--app")
    asyncio.run(run_worker(settings, subs))


@cli.command()
def relay(
    database_url: Annotated[str | None, typer.Argument(
        help="The database whose outbox to publish [env: HEADWATER_DATABASE_URL]",
        show_default=False)] = None,
    amqp_url: Annotated[str | None, _AMQP] = None,
    poll_interval: Annotated[float | None, typer.Option(
        help="Seconds between polls of an idle outbox [env: HEADWATER_RELAY_POLL_INTERVAL]")]
    = None,
    log_level: Annotated[str | None, typer.Option(help="[env: HEADWATER_LOG_LEVEL]")] = None,
) -> None:
    """Publish the outbox to RabbitMQ until stopped, for servers run with
    HEADWATER_RELAY_IN_SERVER=false (their event loops then only serve requests)."""
    from headwater.events.runtime import run_relay

    settings = Settings.from_env(database_url=database_url, amqp_url=amqp_url,
                                 relay_poll_interval=poll_interval, log_level=log_level)
    if not settings.amqp_url:
        raise typer.BadParameter("the relay publishes to RabbitMQ", param_hint="--amqp-url")
    asyncio.run(run_relay(settings))


events_cli = typer.Typer(no_args_is_help=True, help="Events: the dead-letter queues.")
dlq_cli = typer.Typer(no_args_is_help=True,
                      help="Events that failed every attempt: list them, or send them back.")
events_cli.add_typer(dlq_cli, name="dlq")
cli.add_typer(events_cli, name="events")
cli.add_typer(keys_cli, name="keys")


def _dlq_settings(database_url: str | None, app: str | None, amqp_url: str | None,
                  handler: list[str] | None) -> tuple[Settings, list[str]]:
    from headwater.events.worker import queue_names
    from headwater.service.hooks import load_app

    settings = Settings.from_env(database_url=database_url, app=app, amqp_url=amqp_url)
    subs = list(load_app(settings.app).subscriptions.values()) if settings.app else []
    queues = queue_names(settings, subs, handler or ())
    if settings.amqp_url and not queues:
        raise typer.BadParameter("name the handlers: --app pkg.mod:app or --handler NAME",
                                 param_hint="--app")
    return settings, queues


_HANDLER = typer.Option("--handler", help="A handler's name (repeatable); default: all of the app's")


@dlq_cli.command("list")
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


@dlq_cli.command("replay")
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
    except ConfigError as exc:
        # A setting (variable, flag or settings file) is wrong: the one line that names it,
        # never a traceback, and the exit status of a usage error.
        typer.echo(exc.message, err=True)
        raise SystemExit(2) from None
