"""The Python RPC the client scenarios call (``--app tests.clients.app:app``)."""

from __future__ import annotations

from headwater import App, Context

app = App()


@app.rpc(read_only=True)
async def greet(ctx: Context, name: str, excited: bool = False) -> str:
    return f"hello {name}" + ("!" if excited else "")
