"""Consistency tokens as text: a PostgreSQL WAL position (LSN) as a client sends and receives
it, and who a principal is for read-your-writes (pure; the HTTP layer reads and writes them,
``db.replicas`` routes by them)."""

from __future__ import annotations

import re

from headwater.errors import RequestError
from headwater.model.principal import Principal

_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


def parse_lsn(text: str) -> int:
    """``16/B374D848`` → a byte position; anything else is a 400 naming the header."""
    m = _LSN.fullmatch(text.strip())
    if m is None:
        raise RequestError("Invalid consistency token", code="HW400",
                           details=f"Headwater-LSN: {text[:40]!r} is not an LSN such as 0/16B3748",
                           hint="send back the Headwater-LSN of a write's response unchanged")
    return (int(m[1], 16) << 32) | int(m[2], 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def token_from_cookie(cookie: str) -> int:
    """The ``hw_lsn`` cookie's token (0 when absent or not an LSN: a browser's cookie jar
    is not the caller's deliberate input, so a bad one is ignored, never refused)."""
    for part in cookie.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "hw_lsn":
            m = _LSN.fullmatch(value.strip())
            if m is not None:
                return (int(m[1], 16) << 32) | int(m[2], 16)
    return 0


def principal_key(p: Principal) -> str:
    """A principal as read-your-writes tells callers apart: role and subject."""
    return f"{p.role}\x1f{p.claims.get('sub', '')}"
