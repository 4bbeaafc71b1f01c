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
    """``b"cache;dur=%s, …, total;dur=%s"`` for these stages (a handful of shapes)."""
    return ("".join(f"{name};dur=%s, " for name in stages) + "total;dur=%s").encode()


class ServerTiming:
    __slots__ = ("_micros", "_stages", "start")

    def __init__(self, start: float | None = None) -> None:
        self.start = time.perf_counter() if start is None else start
        self._stages: list[str] = []
        self._micros: list[float] = []

    def add(self, stage: str, seconds: float) -> None:
        self._stages.append(stage)
        self._micros.append(seconds * 1_000_000)

    def since(self, stage: str, began: float) -> float:
        """Record ``stage`` as lasting from ``began`` until now; returns now."""
        now = time.perf_counter()
        self._stages.append(stage)
        self._micros.append((now - began) * 1_000_000)
        return now

    def total(self, stage: str) -> float:
        """Seconds spent in ``stage`` so far."""
        return sum(us for name, us in zip(self._stages, self._micros, strict=True)
                   if name == stage) / 1_000_000

    def header(self, now: float | None = None) -> bytes:
        """``cache;dur=0.041, encode;dur=0.012, total;dur=0.310`` (milliseconds)."""
        total = ((time.perf_counter() if now is None else now) - self.start) * 1_000_000
        table = _UNDER_A_MILLISECOND
        return _template(tuple(self._stages)) % tuple([
            table[us] if 0 <= (us := int(d)) < 1000 else b"%.3f" % (d / 1000)
            for d in (*self._micros, total)])


#: ``b"0.000"`` … ``b"0.999"``: the durations of a cached read, whose header would otherwise
#: spend more on formatting floats than on the rest of the read (0.6 µs of a 10 µs hit).
_UNDER_A_MILLISECOND = tuple(b"0.%03d" % us for us in range(1000))
