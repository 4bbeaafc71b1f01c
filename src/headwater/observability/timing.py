"""``Server-Timing``: how long each stage of one request took, as the response header says it.

One object per request, kept in the ASGI scope; stages append, the front end renders it when
the response starts. Five ``perf_counter`` calls and a short list: cheap enough for every
request (the header is how an operator sees, from a browser, where a slow read spent its time).
"""

from __future__ import annotations

import time

SCOPE_KEY = "hw.timing"


class ServerTiming:
    __slots__ = ("_stages", "start")

    def __init__(self, start: float | None = None) -> None:
        self.start = time.perf_counter() if start is None else start
        self._stages: list[tuple[str, float]] = []

    def add(self, stage: str, seconds: float) -> None:
        self._stages.append((stage, seconds))

    def since(self, stage: str, began: float) -> float:
        """Record ``stage`` as lasting from ``began`` until now; returns now."""
        now = time.perf_counter()
        self._stages.append((stage, now - began))
        return now

    def total(self, stage: str) -> float:
        return sum(s for name, s in self._stages if name == stage)

    def header(self, now: float | None = None) -> bytes:
        """``parse;dur=0.04, plan;dur=0.02, …, total;dur=0.31`` (milliseconds, RFC-style)."""
        total = (time.perf_counter() if now is None else now) - self.start
        parts = [f"{name};dur={seconds * 1000:.3f}" for name, seconds in self._stages]
        parts.append(f"total;dur={total * 1000:.3f}")
        return ", ".join(parts).encode()
