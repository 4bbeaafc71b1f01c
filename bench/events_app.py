"""The handler the events benchmark times: it notes when each event reached it."""

from __future__ import annotations

import os
import time
from pathlib import Path

from headwater import App, Event

app = App()


@app.on("bench_items.insert", name="bench-latency")
async def seen(event: Event) -> None:
    with Path(os.environ["HW_BENCH_SEEN"]).open("a") as f:
        f.write(f"{event.pk['id']} {time.time():.6f}\n")
