"""``headwater keys create | list | revoke | rotate-data``, and the start-up security checks
``headwater serve`` runs (``check_serving``)."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Annotated, Any

import typer

from headwater.cli_help import DATABASE_HELP, PlainHelp
from headwater.config import Settings
from headwater.errors import HeadwaterError, SettingsError
from headwater.settings_file import SecuritySettings, load_security

keys_cli = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                       help="API keys, and re-encrypting encrypted columns under the current "
                            "data key.")

_DB = typer.Argument(help="The served database: " + DATABASE_HELP, show_default=False,
                     metavar="DATABASE")
_CONFIG = typer.Option("--config", metavar="FILE",
                       help="The settings file  [env: HEADWATER_CONFIG]")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_serving(settings: Settings) -> tuple[SecuritySettings, list[str]]:
    """Load the settings file and decide whether ``serve`` may start: the notes to print,
    or ``SettingsError`` (the file is wrong; ``main`` prints it as one line) /
    ``typer.BadParameter`` / ``typer.Exit`` when it must not."""
    from headwater.api.auth import load_jwks
    from headwater.service.policy import PolicySet
    from headwater.service.policy_check import (
        check_auth_section,
        check_claims,
        check_roles,
    )

    security = load_security(settings.config)
    try:
        PolicySet(security)  # parses every row filter
    except HeadwaterError as exc:  # a SettingsError naming the policy, mostly
        raise SettingsError(f"{security.source}: {exc.message}") from None
    check_auth_section(security)
    check_roles(security)
    check_claims(security)
    if security.auth.jwks_file:
        try:
            load_jwks(security.auth.jwks_file)
        except HeadwaterError as exc:
            raise SettingsError(f"{security.source}: auth.jwks_file: {exc.message}") from None
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise typer.BadParameter("give both --tls-cert and --tls-key", param_hint="--tls-cert")
    notes: list[str] = []
    if not security.enforced:
        notes.append("No authentication is configured (no --config with [auth] or [[policy]]): "
                     "every caller may read and write every table.")
        if not is_loopback(settings.host) and not settings.insecure:
            typer.echo("Refusing to listen on a non-loopback address without authentication. "
                       "Configure [auth] and [[policy]] in a settings file (--config), or pass "
                       "--insecure to serve anyway.", err=True)
            raise typer.Exit(2)
    else:
        notes.append(f"Access policies from {security.source}: {len(security.policies)} "
                     f"policies" + (f", anonymous role {security.auth.anonymous_role!r}"
                                    if security.auth.anonymous_role else
                                    ", no anonymous access"))
    return security, notes


def _settings(database_url: str | None, config: str | None) -> Settings:
    import os

    from headwater.db.location import given_database_url

    settings = Settings.from_env(database_url=given_database_url(database_url, os.environ),
                                 config=config)
    settings.require_extras()
    return settings


async def _with_store(settings: Settings, work: Any) -> Any:
    from headwater.db.connect import open_database
    from headwater.service.api_keys import KeyStore

    db = open_database(settings)
    await db.start()
    try:
        return await work(KeyStore(db))
    finally:
        await db.close()


@keys_cli.command("create", cls=PlainHelp)
def create(
    role: Annotated[str, typer.Option("--role", metavar="ROLE", help="The role requests with this key get")],
    database_url: Annotated[str | None, _DB] = None,
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="A label for `keys list`")] = "",
) -> None:
    """Create an API key; it is printed once and only its hash is stored."""
    settings = _settings(database_url, None)
    row, text = asyncio.run(_with_store(settings, lambda ks: ks.create(role, name)))
    typer.echo(text)
    typer.echo(f"Created key {row.id} ({row.name}) for role {row.role!r}. It is shown only "
               "now: send it as `apikey: <key>` or `Authorization: Bearer <key>`.", err=True)


@keys_cli.command("list", cls=PlainHelp)
def list_keys(database_url: Annotated[str | None, _DB] = None) -> None:
    """Every key with its role, use count and last use (never the key itself)."""
    from rich.console import Console
    from rich.table import Table

    settings = _settings(database_url, None)
    rows = asyncio.run(_with_store(settings, lambda ks: ks.list()))
    table = Table("id", "name", "role", "created", "last used", "uses", "status")
    for r in rows:
        table.add_row(r.id, r.name, r.role, r.created_at, r.last_used_at or "never",
                      str(r.uses), f"revoked {r.revoked_at}" if r.revoked_at else "active")
    Console(width=160).print(table)


@keys_cli.command("revoke", cls=PlainHelp)
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (from `keys list`)")],
           database_url: Annotated[str | None, _DB] = None) -> None:
    """Revoke a key; every node refuses it within auth.api_key_cache_seconds."""
    settings = _settings(database_url, None)
    if not asyncio.run(_with_store(settings, lambda ks: ks.revoke(key_id))):
        typer.echo(f"No active key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"Revoked {key_id}", err=True)


@keys_cli.command("rotate-data", cls=PlainHelp)
def rotate_data(database_url: Annotated[str | None, _DB] = None,
                config: Annotated[str | None, _CONFIG] = None,
                batch: Annotated[int, typer.Option(help="Rows per transaction")] = 500) -> None:
    """Re-encrypt every encrypted column under encryption.current_key (and encrypt values
    stored before the column was marked encrypted). Old keys may be removed afterwards."""
    from headwater.service.rotation import rotate

    settings = _settings(database_url, config)
    security = load_security(settings.config)
    if not security.encryption.columns:
        typer.echo("No encrypted columns in the settings file.", err=True)
        raise typer.Exit(1)
    counts = asyncio.run(rotate(settings, security.encryption, batch=batch))
    for column, n in counts.items():
        typer.echo(f"{column}: {n} values re-encrypted with key "
                   f"{security.encryption.current_key!r}", err=True)
