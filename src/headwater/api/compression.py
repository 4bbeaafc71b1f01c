"""Response compression by ``Accept-Encoding`` (zstd, br, gzip), with the compressed bodies
remembered by ETag so a cache hit is never compressed twice."""

from __future__ import annotations

import gzip

import brotli
import zstandard

from headwater.cache.memory import MemoryLRU

_PREFERENCE = ("zstd", "br", "gzip")


def negotiate(accept_encoding: str | None) -> str | None:
    if not accept_encoding:
        return None
    offered: dict[str, float] = {}
    for part in accept_encoding.lower().split(","):
        name, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        offered[name] = q
    star = offered.get("*", 0.0)
    best: tuple[float, str] | None = None
    for enc in _PREFERENCE:
        q = offered.get(enc, star)
        if q > 0 and (best is None or q > best[0]):
            best = (q, enc)
    return best[1] if best else None


class Compressor:
    def __init__(self, min_bytes: int, cache_bytes: int = 16 * 2**20) -> None:
        self.min_bytes = min_bytes
        self._zstd = zstandard.ZstdCompressor(level=3)
        self._done: MemoryLRU[bytes] = MemoryLRU(cache_bytes, len)

    def compress(self, body: bytes, encoding: str, etag: str | None) -> bytes:
        key = f"{etag}:{encoding}" if etag else None
        if key is not None:
            hit = self._done.get(key)
            if hit is not None:
                return hit
        if encoding == "zstd":
            out = self._zstd.compress(body)
        elif encoding == "br":
            out = brotli.compress(body, quality=4)
        else:
            out = gzip.compress(body, compresslevel=6, mtime=0)
        if key is not None:
            self._done.set(key, out)
        return out
