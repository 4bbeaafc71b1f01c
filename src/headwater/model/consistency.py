"""Consistency tokens as text: a PostgreSQL WAL position (LSN) as a client sends and receives
it, and who a principal is for read-your-writes (pure; the HTTP layer reads and writes them,
``db.replicas`` routes by them)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class ReadOrigin:
    """Where a read comes from, as replica routing needs it: the consistency token it
    presented (0: none) and who the caller is for read-your-writes (``caller_key``), worked
    out only when a read is routed (a cache hit never needs it)."""

    token: int = 0
    caller: Callable[[], str] | None = None

    @property
    def who(self) -> str:
        return self.caller() if self.caller is not None else ""


NO_ORIGIN = ReadOrigin()


def caller_key(p: Principal, address: str) -> str:
    """A caller as read-your-writes tells callers apart: a principal with a subject (a
    token's ``sub``, an API key) by role and subject; one without (the anonymous role, or
    every caller of a server without authentication) by role and client address, so one
    such caller's write keeps only its own reads on the primary."""
    sub = p.claims.get("sub")
    # Keys that collide (crafted names) only keep a read on the primary: never a stale read.
    if sub is not None and sub != "":
        return f"s\x1f{p.role}\x1f{sub}"
    return f"a\x1f{p.role}\x1f{address}"
