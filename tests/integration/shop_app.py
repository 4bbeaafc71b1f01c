"""A user's business-logic module for the tests: hooks and RPC on the demo shop."""

from __future__ import annotations

from typing import Any

from headwater import App, Context, Rejected

app = App()


@app.before_insert("order_items")
async def check_quantity(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    quantity = row.get("quantity")
    if isinstance(quantity, int) and quantity > 100:
        raise Rejected("quantity too large", status=422, details="at most 100 per line")
    return row


@app.before_insert("customers")
async def normalise_country(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    if isinstance(row.get("country"), str):
        row["country"] = row["country"].upper()
    return row


@app.after_insert("orders")
async def audit(ctx: Context, row: dict[str, Any]) -> None:
    await ctx.fetch("INSERT INTO audit_log (event, ref) VALUES ($1, $2)", "order created",
                    row["id"])


@app.after_update("products")
async def explode(ctx: Context, row: dict[str, Any]) -> None:
    if row["name"] == "boom":
        raise RuntimeError("this text must never reach the client")


@app.before_delete("customers")
async def keep_vips(ctx: Context, row: dict[str, Any]) -> None:
    if row["name"].startswith("VIP"):
        raise Rejected("VIP customers cannot be deleted", status=403, code="HW403")


@app.rpc(read_only=True)
async def order_total(ctx: Context, order_id: int) -> float:
    """The sum of an order's lines."""
    rows = await ctx.fetch("SELECT coalesce(sum(quantity * unit_price), 0) FROM order_items "
                           "WHERE order_id = $1", order_id)
    return float(rows[0][0])


@app.rpc
async def set_stock(ctx: Context, product_id: int, in_stock: bool = True) -> dict[str, Any]:
    """Mark a product in or out of stock."""
    await ctx.fetch("UPDATE products SET in_stock = $1 WHERE id = $2", in_stock, product_id)
    return {"product_id": product_id, "in_stock": in_stock}
