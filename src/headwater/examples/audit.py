"""The README's example app (hooks, RPC, an event handler), runnable on the demo shop as is:

    headwater serve --demo --app headwater.examples.audit

Copy it to start your own; it runs unchanged on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from headwater import App, Context, Event, Rejected

app = App()

#: The demo has no audit table: the hook makes it on first use, in the request's transaction
#: (portable SQL: SQLite and PostgreSQL both take it).
AUDIT_LOG = "CREATE TABLE IF NOT EXISTS audit_log (event TEXT NOT NULL, ref INTEGER NOT NULL)"


@app.before_insert("order_items")        # also before_update / before_delete
async def check_stock(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    if row.get("quantity", 0) > 100:     # ctx.principal, ctx.table, ctx.db (the transaction)
        raise Rejected("quantity too large", status=422)
    return row                           # the row to write (may be changed)


@app.after_insert("orders")              # after_update / after_delete, inside the transaction
async def audit(ctx: Context, row: dict[str, Any]) -> None:
    await ctx.fetch(AUDIT_LOG)
    await ctx.fetch("INSERT INTO audit_log (event, ref) VALUES ($1, $2)", "created", row["id"])


@app.rpc(read_only=True)                 # POST /rpc/order_total, and GET since it only reads
async def order_total(ctx: Context, order_id: int) -> float:
    rows = await ctx.fetch("SELECT sum(quantity * unit_price) FROM order_items WHERE order_id = $1",
                           order_id)
    return float(rows[0][0] or 0)


@app.on("orders.*")                      # in-process, or by `headwater worker` with RabbitMQ
async def notify(event: Event) -> None:
    """Where an email or a webhook would go; events arrive after commit, at least once."""
