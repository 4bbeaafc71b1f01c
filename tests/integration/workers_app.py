"""A user's module for the worker-process tests: a slow RPC that names the worker answering
it (to see in-flight requests drain on SIGTERM); each call appends its worker's pid to
``$HW_TEST_SLOW_LOG`` as it starts."""

from __future__ import annotations

import asyncio
import os

from headwater import App, Context

app = App()


@app.rpc(read_only=True)
async def slow(ctx: Context, seconds: float) -> int:
    with open(os.environ["HW_TEST_SLOW_LOG"], "a") as f:
        f.write(f"{os.getpid()}\n")
    await asyncio.sleep(seconds)
    return os.getpid()
