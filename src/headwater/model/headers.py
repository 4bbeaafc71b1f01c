"""The request headers PostgREST gives meaning to: Prefer, Accept, Range (pure)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from headwater.errors import InvalidRange, NotAcceptable, ParseError
from headwater.model.request import MediaType, Preferences

_PREFER_VALUES: dict[str, frozenset[str]] = {
    "count": frozenset({"exact", "planned", "estimated"}),
    "return": frozenset({"minimal", "headers-only", "representation"}),
    "resolution": frozenset({"merge-duplicates", "ignore-duplicates"}),
    "missing": frozenset({"default", "null"}),
    "handling": frozenset({"lenient", "strict"}),
    "tx": frozenset({"commit", "rollback"}),
}


def parse_prefer(headers: Iterable[str]) -> Preferences:
    found: dict[str, str] = {}
    invalid: list[str] = []
    for header in headers:
        for part in header.split(","):
            name, _, val = part.strip().partition("=")
            name, val = name.strip().lower(), val.strip()
            if not name:
                continue
            if name == "max-affected":
                if val.isascii() and val.isdigit() and len(val) < 12:
                    found[name] = val
                else:
                    invalid.append(part.strip())
            elif name in _PREFER_VALUES and val in _PREFER_VALUES[name]:
                found[name] = val
            else:
                invalid.append(part.strip())
    prefs = Preferences(
        count=found.get("count"),  # type: ignore[arg-type]
        returning=found.get("return"),  # type: ignore[arg-type]
        resolution=found.get("resolution"),  # type: ignore[arg-type]
        missing=found.get("missing"),  # type: ignore[arg-type]
        handling=found.get("handling"),  # type: ignore[arg-type]
        max_affected=int(found["max-affected"]) if "max-affected" in found else None,
        tx=found.get("tx"),  # type: ignore[arg-type]
    )
    if invalid and prefs.handling == "strict":
        raise ParseError("Invalid preferences given with handling=strict",
                         details="Invalid preferences: " + ", ".join(invalid), code="PGRST122")
    return prefs


_MEDIA: dict[str, MediaType] = {
    "application/json": "json",
    "application/*": "json",
    "*/*": "json",
    "application/vnd.pgrst.object+json": "object",
    "application/vnd.pgrst.object": "object",
    "text/csv": "csv",
}


def parse_accept(header: str | None) -> MediaType:
    """The first acceptable media type by q-value; 406 when none is one we produce."""
    if not header or not header.strip():
        return "json"
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            k, _, v = p.partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if media:
            ranked.append((-q, i, media.lower()))
    for negq, _, media in sorted(ranked):
        if negq < 0 and media in _MEDIA:
            return _MEDIA[media]
    raise NotAcceptable(f"None of these media types are available: {header}")


_RANGE = re.compile(r"^\s*(?:items=)?(\d{1,18})-(\d{0,18})\s*$")


def parse_range(header: str | None) -> tuple[int, int | None] | None:
    """``Range: 0-9`` (items); a malformed header is ignored, as HTTP asks."""
    if not header:
        return None
    m = _RANGE.match(header)
    if m is None:
        return None
    first = int(m[1])
    last = int(m[2]) if m[2] else None
    if last is not None and last < first:
        raise InvalidRange("Requested range not satisfiable",
                           details=f"the range {header!r} ends before it starts")
    return first, last
