"""API keys, stored in ``_headwater_api_keys`` in the served database (hidden from the API).

A key is ``hw_<id>_<secret>``: ``id`` is 8 public hex characters (for ``keys list`` and
``keys revoke``), ``secret`` 32 random bytes in base64url. Only the SHA-256 of the whole key
is stored, and it is compared in constant time. Use counts and the last use are gathered in
memory and written every few seconds, so a request never waits on that write.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from headwater.db.database import Database
from headwater.db.migrations import migrate
from headwater.errors import DatabaseError, RequestError

TABLE = "_headwater_api_keys"
_KEY = re.compile(r"^hw_([0-9a-f]{8})_([A-Za-z0-9_\-]{43})$")
_DOLLAR = re.compile(r"\$(\d+)")


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    role: str
    created_at: str
    last_used_at: str | None = None
    uses: int = 0
    revoked_at: str | None = None


def looks_like_key(text: str) -> bool:
    return text.startswith("hw_")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class KeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._ready = False
        #: id → (uses since the last flush, last use).
        self._usage: dict[str, tuple[int, str]] = {}

    @property
    def table(self) -> str:
        if self.db.dialect == "postgresql" and self.db.schema:
            return f'"{self.db.schema}"."{TABLE}"'
        return f'"{TABLE}"'

    def _sql(self, sql: str) -> str:
        sql = sql.replace("{table}", self.table)
        return _DOLLAR.sub(r"?\1", sql) if self.db.dialect == "sqlite" else sql

    async def _fetch(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        async with self.db.transaction() as tx:
            return [tuple(r) for r in await tx.fetch(self._sql(sql), params)]

    async def ensure(self) -> None:
        if self._ready:
            return
        await migrate(self.db)  # the table is Headwater's, created by its migrations
        self._ready = True

    # --- administration (the CLI) -------------------------------------------------------------

    async def create(self, role: str, name: str = "") -> tuple[ApiKey, str]:
        """A new key; the returned secret text is shown once and never stored."""
        await self.ensure()
        key_id = secrets.token_hex(4)
        text = f"hw_{key_id}_{secrets.token_urlsafe(32)}"
        row = ApiKey(key_id, name or role, role, _now())
        await self._fetch("INSERT INTO {table} (id, name, role, key_hash, created_at) "
                          "VALUES ($1, $2, $3, $4, $5)", row.id, row.name, row.role,
                          digest(text), row.created_at)
        return row, text

    async def list(self) -> list[ApiKey]:
        await self.ensure()
        rows = await self._fetch("SELECT id, name, role, created_at, last_used_at, uses, "
                                 "revoked_at FROM {table} ORDER BY created_at, id")
        return [ApiKey(str(r[0]), str(r[1]), str(r[2]), str(r[3]), r[4], int(r[5]), r[6])
                for r in rows]

    async def revoke(self, key_id: str) -> bool:
        await self.ensure()
        rows = await self._fetch("UPDATE {table} SET revoked_at = $1 WHERE id = $2 AND "
                                 "revoked_at IS NULL RETURNING id", _now(), key_id)
        return bool(rows)

    # --- serving ------------------------------------------------------------------------------

    async def verify(self, text: str) -> ApiKey | None:
        """The live key ``text`` is, or None (malformed, unknown, revoked)."""
        m = _KEY.match(text)
        if m is None:
            return None
        try:
            rows = await self._fetch("SELECT id, name, role, key_hash, created_at, "
                                     "revoked_at FROM {table} WHERE id = $1", m[1])
        except (DatabaseError, RequestError):  # no key table (no key made yet): no keys
            return None
        if not rows:
            return None
        r = rows[0]
        if not hmac.compare_digest(str(r[3]), digest(text)) or r[5] is not None:
            return None
        return ApiKey(str(r[0]), str(r[1]), str(r[2]), str(r[4]))

    def used(self, key_id: str) -> None:
        n, _ = self._usage.get(key_id, (0, ""))
        self._usage[key_id] = (n + 1, _now())

    async def flush(self) -> None:
        """Write the gathered use counts (one transaction)."""
        if not self._usage:
            return
        usage, self._usage = self._usage, {}
        try:
            async with self.db.transaction() as tx:
                for key_id, (n, last) in sorted(usage.items()):
                    await tx.fetch(self._sql("UPDATE {table} SET uses = uses + $1, "
                                             "last_used_at = $2 WHERE id = $3"),
                                   (n, last, key_id))
        except BaseException:
            for key_id, (n, last) in usage.items():  # keep them for the next round
                m, later = self._usage.get(key_id, (0, last))
                self._usage[key_id] = (n + m, max(last, later))
            raise
