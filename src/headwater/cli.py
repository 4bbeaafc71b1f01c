"""``headwater serve | demo``: the command line (Typer)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer

from headwater.config import Settings

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
                                 workers=workers, log_level=log_level, app=app)
    if settings.database_url.startswith("sqlite:///"):
        file = Path(settings.database_url.removeprefix("sqlite:///"))
        if not file.exists():
            raise typer.BadParameter(f"no SQLite database at {file}", param_hint="DATABASE_URL")
    # Worker processes rebuild the same settings from the environment.
    os.environ.update(settings.to_env())
    typer.echo(f"Headwater serving {settings.database_url} on "
               f"http://{settings.host}:{settings.port}/", err=True)
    uvicorn.run("headwater.app:create_app_from_env", factory=True, host=settings.host,
                port=settings.port, workers=settings.workers, log_level="warning",
                access_log=False, loop="uvloop", http="httptools",
                timeout_graceful_shutdown=10)


@cli.command()
def demo(
    path: Annotated[str, typer.Argument(help="A SQLite file path, or a postgresql:// URL")],
    scale: Annotated[float, typer.Option(help="1 ≈ 10k order items; 100 ≈ 1 million")] = 1.0,
) -> None:
    """Write the deterministic demo shop (customers, products, orders, order_items)."""
    url = path if "://" in path else _sqlite_url(Path(path))
    _build_demo(url, scale)
    typer.echo(f"Demo data written to {url}", err=True)


def main() -> None:
    cli()
