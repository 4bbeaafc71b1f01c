"""Where the database is: the text a user gives (a file path or a URL) as a checked URL,
and what serving a SQLite file will change in it.

Every mistake here is an ``InvalidSetting``: the CLI prints it as one line with exit status 2.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headwater.errors import InvalidSetting

ACCEPTED = ("a SQLite file path, sqlite:///relative/path.db, sqlite:////absolute/path.db "
            "or postgresql://user@host:port/dbname")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_POSTGRES_SCHEMES = ("postgresql", "postgres")


def database_url(text: str, source: str = "DATABASE_URL") -> str:
    """``text`` (``source`` names where it came from) as a URL Headwater opens: a plain path
    is a SQLite file, as Datasette users type it. The file must exist; a PostgreSQL URL's
    port must be a port."""
    text = text.strip()
    if not text:
        raise InvalidSetting(f"{source} is empty: give {ACCEPTED}")
    scheme, sep, _rest = text.partition("://")
    if text.startswith("sqlite:"):
        url = text
    elif sep and scheme.lower() in _POSTGRES_SCHEMES:
        try:
            urllib.parse.urlsplit(text).port  # noqa: B018 - parsing is the check
        except ValueError:
            raise InvalidSetting(f"{source}: the port in the URL is not a port (1-65535); "
                                 "give postgresql://user@host:port/dbname") from None
        return text
    elif sep or (":" in text.split("/", 1)[0] and not os.path.exists(text)):
        shown = scheme if sep else text.split(":", 1)[0]
        raise InvalidSetting(f"{source}: unsupported database {shown!r}; give {ACCEPTED}")
    else:
        url = f"sqlite:///{Path(text).resolve()}"
    check_sqlite_file(sqlite_path(url), source)
    return url


def given_database_url(arg: str | None, env: Mapping[str, str]) -> str:
    """The database a command was given (its argument, else ``HEADWATER_DATABASE_URL``),
    checked; none at all is an error, never a new ``./headwater.db``."""
    if arg is not None:
        return database_url(arg, "DATABASE_URL")
    var = "HEADWATER_DATABASE_URL"
    if var in env:
        return database_url(env[var], var)
    raise InvalidSetting(f"no database given: pass DATABASE_URL ({ACCEPTED}) or set {var}")


def redacted(url: str) -> str:
    """``url`` without its password, for printing."""
    parts = urllib.parse.urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


async def probe_postgres(url: str, seconds: float,
                         options: dict[str, Any] | None = None) -> str | None:
    """Try one connection (with ``options``, the ones the server's pool will use): None when
    it works, the reason (PostgreSQL's or the network's own words) when the server cannot be
    reached now (the server starts degraded and retries), and an ``InvalidSetting`` for what
    no retry can fix (the database, the role, the password, a pooler's refusal)."""
    import asyncpg

    from headwater.db.postgres import POOLER_HINT, POOLER_REFUSAL

    try:
        conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1),
                                     timeout=seconds, **(options or {}))
    except (asyncpg.InvalidCatalogNameError, asyncpg.InvalidAuthorizationSpecificationError,
            asyncpg.InvalidPasswordError, asyncpg.exceptions.ClientConfigurationError) as exc:
        raise InvalidSetting(f"DATABASE_URL: PostgreSQL refused the connection: "
                             f"{_first_line(exc)}") from None
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        if POOLER_REFUSAL in _first_line(exc):
            raise InvalidSetting(f"DATABASE_URL: the server refused the connection "
                                 f"({_first_line(exc)}): {POOLER_HINT}") from None
        return _first_line(exc) or "timed out"
    await conn.close()
    return None


def _first_line(exc: BaseException) -> str:
    return str(exc).split("\n")[0]


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite:`` URL (``sqlite:///rel.db`` → ``rel.db``, ``sqlite:////abs``
    → ``/abs``)."""
    return url.split("sqlite:///", 1)[1] if url.startswith("sqlite:///") else \
        url.removeprefix("sqlite:")


def check_sqlite_file(path: str, source: str = "DATABASE_URL") -> None:
    """``path`` must be a SQLite database (or an empty file, which SQLite reads as one)."""
    if not path:
        raise InvalidSetting(f"{source}: no file named; give {ACCEPTED}")
    file = Path(path)
    if file.is_dir():
        raise InvalidSetting(f"{source}: {path} is a directory, not a SQLite file; give "
                             f"{ACCEPTED}")
    if not file.exists():
        raise InvalidSetting(f"{source}: no SQLite database at {path}; give the path of an "
                             "existing file (`headwater demo PATH` writes a sample one), or "
                             "postgresql://user@host:port/dbname")
    try:
        with file.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise InvalidSetting(f"{source}: cannot read {path}: {exc.strerror}") from None
    if head and head != _SQLITE_MAGIC:
        raise InvalidSetting(f"{source}: {path} is not a SQLite database")


@dataclass(frozen=True, slots=True)
class SqliteFileState:
    """What serving a SQLite file would change in it."""

    #: The file (or its directory, where SQLite writes its journal) may not be written.
    unwritable: bool
    #: The file is in rollback-journal mode: serving switches it to WAL.
    needs_wal: bool


def sqlite_file_state(path: str) -> SqliteFileState:
    directory = os.path.dirname(os.path.abspath(path))
    # A file without any write permission bit was marked read-only by its owner (even for
    # root, whom ``os.access`` lets write anything).
    unwritable = (not os.stat(path).st_mode & 0o222
                  or not (os.access(path, os.W_OK) and os.access(directory, os.W_OK)))
    with open(path, "rb") as f:
        header = f.read(20)
    # Bytes 18 and 19 of the header are 2 in WAL mode (1: rollback journal).
    needs_wal = len(header) < 20 or header[18] != 2
    return SqliteFileState(unwritable, needs_wal)


def sqlite_open_target(path: str, read_only: bool) -> tuple[str, bool]:
    """What ``sqlite3.connect`` opens (and whether it is a URI): read-only serving opens the
    file with ``mode=ro`` (nothing is written, no journal created), and on read-only media
    (the directory cannot be written) as ``immutable`` as well, since SQLite could not even
    make the shared-memory file a WAL reader needs."""
    if not read_only:
        return path, False
    absolute = os.path.abspath(path)
    uri = Path(absolute).as_uri() + "?mode=ro"
    if not os.access(os.path.dirname(absolute), os.W_OK):
        uri += "&immutable=1"
    return uri, True
