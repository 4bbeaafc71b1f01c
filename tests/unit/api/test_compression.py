"""Response compression: the encoding chosen from Accept-Encoding."""

from __future__ import annotations

from headwater.api.compression import negotiate


def test_negotiate_encoding() -> None:
    assert negotiate("gzip, deflate, br, zstd") == "zstd"
    assert negotiate("gzip;q=1, br;q=0.5") == "gzip"
    assert negotiate("identity") is None
    assert negotiate("*") == "zstd"
    assert negotiate("br;q=0, *;q=0.1") == "zstd"
    assert negotiate(None) is None
