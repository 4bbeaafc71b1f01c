"""A user's module for the events tests: handlers, a hook and an RPC that write by SQL.

Handlers append one JSON line per call to ``$HW_TEST_EVENTS_LOG`` (the test reads it back);
``$HW_TEST_QUEUE_SUFFIX`` keeps each test run's queues apart; the ``broken`` handler succeeds
once the file ``$HW_TEST_FIX_FILE`` exists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from headwater import App, Context, Event, Rejected

app = App()
SUFFIX = os.environ.get("HW_TEST_QUEUE_SUFFIX", "local")
_attempts: dict[str, int] = {}


def log(kind: str, event: Event, **extra: Any) -> None:
    line = json.dumps({"kind": kind, "id": event.id, "seq": event.seq, "table": event.table,
                       "op": event.op, "pk": event.pk, "new": event.new, "old": event.old,
                       **extra})
    with Path(os.environ["HW_TEST_EVENTS_LOG"]).open("a") as f:
        f.write(line + "\n")


@app.on("customers.*", name=f"record-{SUFFIX}")
async def record(event: Event) -> None:
    log("record", event)


@app.on("products.update", name=f"flaky-{SUFFIX}")
async def flaky(event: Event) -> None:
    n = _attempts[event.id] = _attempts.get(event.id, 0) + 1
    if n <= 2:
        log("flaky-fail", event, attempt=n)
        raise RuntimeError(f"failing on purpose, attempt {n}")
    log("flaky-ok", event, attempt=n)


@app.on("orders.delete", name=f"broken-{SUFFIX}")
async def broken(event: Event) -> None:
    if Path(os.environ.get("HW_TEST_FIX_FILE", "/nonexistent")).exists():
        log("broken-ok", event)
        return
    log("broken-fail", event)
    raise RuntimeError("this handler always fails")


@app.after_insert("orders")
async def audit(ctx: Context, row: dict[str, Any]) -> None:
    [(audit_id,)] = await ctx.fetch("INSERT INTO audit_log (event, ref) VALUES ($1, $2) "
                                    "RETURNING id", "order created", row["id"])
    ctx.emit("audit_log", "insert", new={"id": audit_id, "event": "order created",
                                         "ref": row["id"]})


@app.rpc
async def rename_product(ctx: Context, product_id: int, name: str) -> dict[str, Any]:
    rows = await ctx.fetch("UPDATE products SET name = $1 WHERE id = $2 RETURNING id, name",
                           name, product_id)
    for pid, new_name in rows:
        ctx.emit("products", "update", new={"id": pid, "name": new_name})
    if name == "rollback":
        raise Rejected("undo everything", status=409)
    return {"updated": len(rows)}
