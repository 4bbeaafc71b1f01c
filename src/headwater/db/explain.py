"""``Accept: application/vnd.pgrst.plan``: the EXPLAIN of the statement a read runs.

PostgreSQL only. Only reads are explained, and always inside a transaction that is rolled
back, so even ``options=analyze`` (which runs the statement) changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from headwater.config import Settings
from headwater.db.database import Database
from headwater.db.sql import bind, compile_read
from headwater.model.plan import ReadPlan


def explain_sql(statement: str, fmt: str, options: Sequence[str]) -> str:
    """``EXPLAIN (FORMAT …, OPTION, …) statement``; options come from a fixed list."""
    opts = [f"FORMAT {fmt.upper()}", *(o.upper() for o in options)]
    return f"EXPLAIN ({', '.join(opts)}) {statement}"


async def explain_read(db: Database, plan: ReadPlan, settings: Settings, fmt: str,
                       options: Sequence[str]) -> bytes:
    # settings.db_schema: the exposed schema read (another profile's settings name theirs)
    schema = settings.db_schema if db.schema else None
    sql = compile_read(db.dialect, schema, plan.root, plan.limit_param, plan.offset_param,
                       plan.count, settings.max_response_bytes)
    statement = sql.csv_bounded if plan.media == "csv" else sql.bounded
    params = bind(db.dialect, plan.params)
    async with db.transaction(rollback=True) as tx:
        rows = await tx.fetch(explain_sql(statement, fmt, options), params)
    if fmt == "json":
        (doc,) = rows[0]
        return doc.encode() if isinstance(doc, str) else bytes(doc)
    return "\n".join(str(r[0]) for r in rows).encode()
