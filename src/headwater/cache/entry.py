"""What the cache stores for one read: the finished body and what the response needs."""

from __future__ import annotations

import msgspec

#: What an entry costs in the L1 budget beyond its body's bytes.
OVERHEAD = 200


class Entry(msgspec.Struct, frozen=True, array_like=True):
    body: bytes
    etag: str
    rows: int
    total: int | None
    first: int
    tables: tuple[str, ...]
    #: Versions of ``tables`` (then the epoch) when the body was read.
    versions: tuple[int, ...]
    stored_at: float
    expires_at: float
    #: When the entry may still be served stale if the database is failing.
    stale_until: float
    cache_control: str

    def size(self) -> int:
        return len(self.body) + OVERHEAD


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Entry)


def dump(entry: Entry) -> bytes:
    return _encoder.encode(entry)


def load(data: bytes) -> Entry | None:
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError:
        return None
