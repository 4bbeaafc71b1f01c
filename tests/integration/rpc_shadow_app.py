"""A Python RPC function named like a database function of ``test_rpc_functions``: it
shadows that function."""

from __future__ import annotations

from headwater import App, Context

app = App()


@app.rpc(read_only=True)
async def describe(ctx: Context, x: int) -> str:
    return f"python {x}"
