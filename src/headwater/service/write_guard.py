"""Policies and field encryption on the write path, used by ``service.writes.Writer``.

- Columns: the keys of an insert or update body must be columns the role may write
  (checked on the client's body, before hooks, which are trusted server code).
- USING: an update or delete touches only rows the role's filter admits (the planner adds it
  to the statement's WHERE).
- WITH CHECK: after the statement, inside the transaction, the written rows are counted again
  through the role's check filter (``SELECT count(*) … WHERE pk IN (…) AND check``); if any
  row fails, the request is refused with 403 and the transaction rolls back, as PostgreSQL's
  RLS does ("new row violates row-level security policy").
- Upserts that may update (``resolution=merge-duplicates``, PUT) also need the update policy,
  and every existing row they would overwrite must pass its filter and the new row its
  check: both are in the statement (``ON CONFLICT … DO UPDATE … WHERE``), and a row that came
  back neither inserted nor updated refuses the request (403, rolled back).
- Encrypted columns are encrypted after hooks ran, just before the SQL, and decrypted in the
  response.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from headwater.db.database import Database, Transaction
from headwater.db.sql import bind, compile_read
from headwater.model.catalog import Catalog, Table
from headwater.model.plan import ReadNode
from headwater.model.principal import Action
from headwater.model.request import ApiRequest, Field, Predicate, Query, SelectItem
from headwater.service.crypto import FieldCipher
from headwater.service.plan import plan_read
from headwater.service.policy import Access, Rule, key_filter
from headwater.service.validation import CheckedRows


@dataclass(frozen=True, slots=True)
class WriteGuard:
    access: Access | None
    cipher: FieldCipher | None
    catalog: Catalog
    db: Database
    #: The exposed schema written (``Content-Profile``); None: the database's own.
    profile: str | None = None

    @property
    def restricted(self) -> bool:
        return self.access is not None and self.access.restricted

    # --- before SQL ---------------------------------------------------------------------------

    def require_columns(self, table: Table, action: Action, names: Sequence[str]) -> None:
        if self.access is not None and self.access.restricted:
            self.access.require_columns(table.name, action, names)

    def encrypt(self, table: Table, group: CheckedRows) -> CheckedRows:
        c = self.cipher
        if c is None or not c.table_columns(table.name) & set(group.columns):
            return group
        return CheckedRows(group.columns, tuple(c.encrypt_row(table.name, group.columns, r)
                                                for r in group.rows))

    def upsert_policy(self, table: Table, groups: Sequence[CheckedRows],
                      conflict: tuple[str, ...], resolution: Literal["merge", "ignore"] | None,
                      ) -> Rule | None:
        """An upsert that may overwrite rows needs the update policy: its columns are
        checked here, and its row filter (USING) and check (WITH CHECK) are returned for the
        statement's ``DO UPDATE … WHERE`` (``plan_insert``). Every row the upsert would
        overwrite is checked there, whether its conflict key came from the body or from a
        default (a sequence, a column default), which no look-up before the statement can
        know."""
        if resolution != "merge" or self.access is None or not self.access.restricted:
            return None
        rule = self.access.rule(table.name, "update")
        cols = {c for g in groups for c in g.columns}
        self.access.require_columns(table.name, "update", sorted(cols - set(conflict)), rule)
        return rule if rule.rows is not None or rule.check is not None else None

    def check_upserted(self, table: Table, sent: int, written: int) -> None:
        """After a guarded merge: a row that was neither inserted nor updated conflicted with
        a row the update policy refused, so the request is refused (and rolled back), as
        PostgreSQL's RLS does."""
        if written != sent and self.access is not None:
            raise self.access.forbidden(
                f'new row violates row-level security policy (USING expression) for table '
                f'"{table.name}"',
                hint=f"the upsert would overwrite rows of {table.name} that the role "
                     f"{self.access.principal.role!r} may not update")

    # --- after SQL, in the transaction --------------------------------------------------------

    async def check_written(self, tx: Transaction, table: Table, action: Action,
                            written: Sequence[Mapping[str, Any]]) -> None:
        if not written or self.access is None or not self.access.restricted:
            return
        check = self.access.rule(table.name, action).check
        if check is None:
            return
        if not table.primary_key:
            raise self.access.forbidden(f"{table.name} has no primary key, so its row policy "
                                        "cannot be checked on written rows")
        n = await self._count(tx, table, table.primary_key, written, check)
        if n != len(written):
            raise self.access.forbidden(
                f'new row violates row-level security policy for table "{table.name}"',
                hint=f"the role {self.access.principal.role!r} may only {action} rows its "
                     "policy's filter admits")

    async def _count(self, tx: Transaction, table: Table, key: Sequence[str],
                     rows: Sequence[Mapping[str, Any]], extra: Predicate | None) -> int:
        where: tuple[Predicate, ...] = (key_filter(key, rows),)
        if extra is not None:
            where += (extra,)
        request = ApiRequest("GET", table.name, Query(select=tuple(Field(k) for k in key),
                                                      where={(): where}))
        plan = plan_read(self.catalog, request)
        sql = compile_read(self.db.dialect, (self.profile or self.db.schema), plan.root, plan.limit_param,
                           plan.offset_param, False)
        row = await tx.fetchrow(sql.aggregate, bind(self.db.dialect, plan.params))
        assert row is not None
        return int(row[1])

    # --- the response -------------------------------------------------------------------------

    def visible_rows(self, table: Table, select: Sequence[SelectItem],
                     written: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Written rows as the caller may see them: readable columns only, decrypted."""
        rows = [dict(r) for r in written]
        if self.access is not None and self.access.restricted:
            rule = self.access.rule(table.name, "select")
            named = [i.name for i in select if isinstance(i, Field) and i.name != "*"]
            self.access.require_columns(table.name, "select", named, rule)
            if rule.columns is not None:
                rows = [{k: v for k, v in r.items() if k in rule.columns} for r in rows]
        if self.cipher is not None and self.cipher.table_columns(table.name):
            rows = [self.cipher.decrypt_row(table.name, r) for r in rows]
        return rows

    def decrypt_body(self, body: bytes, root: ReadNode) -> bytes:
        if self.cipher is not None and self.cipher.reads(root):
            return self.cipher.decrypt_body(body, root)
        return body
