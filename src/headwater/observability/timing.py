"""``Server-Timing``: how long each stage of one request took, as the response header says it.

One object per request, kept in the ASGI scope; stages append, the front end renders it when
the response starts. A few ``perf_counter`` calls and one ``%`` on a template cached per set
of stages: cheap enough for every request (the header is how an operator sees, from a
browser, where a slow read spent its time).
"""

from __future__ import annotations

import functools
import time

SCOPE_KEY = "hw.timing"


@functools.lru_cache(maxsize=64)
def _template(stages: tuple[str, ...]) -> bytes:
    """``b"cache;dur=%.3f, …, total;dur=%.3f"`` for these stages (a handful of shapes)."""
    return ("".join(f"{name};dur=%.3f, " for name in stages) + "total;dur=%.3f").encode()


class ServerTiming:
    __slots__ = ("_seconds", "_stages", "start")

    def __init__(self, start: float | None = None) -> None:
        self.start = time.perf_counter() if start is None else start
        self._stages: list[str] = []
        self._seconds: list[float] = []

    def add(self, stage: str, seconds: float) -> None:
        self._stages.append(stage)
        self._seconds.append(seconds * 1000)

    def since(self, stage: str, began: float) -> float:
        """Record ``stage`` as lasting from ``began`` until now; returns now."""
        now = time.perf_counter()
        self._stages.append(stage)
        self._seconds.append((now - began) * 1000)
        return now

    def total(self, stage: str) -> float:
        """Seconds spent in ``stage`` so far."""
        return sum(ms for name, ms in zip(self._stages, self._seconds, strict=True)
                   if name == stage) / 1000

    def header(self, now: float | None = None) -> bytes:
        """``cache;dur=0.041, encode;dur=0.012, total;dur=0.310`` (milliseconds)."""
        total = ((time.perf_counter() if now is None else now) - self.start) * 1000
        return _template(tuple(self._stages)) % (*self._seconds, total)
