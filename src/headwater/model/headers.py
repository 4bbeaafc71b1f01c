"""The request headers PostgREST gives meaning to: Prefer, Accept, Range (pure)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

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


def _ranked(header: str) -> list[tuple[float, int, str, list[str]]]:
    """Each media range of an Accept header as (q, position, type, parameters), best first
    (highest q, then the order written); ranges with q=0 are refused ones and left out."""
    ranked: list[tuple[float, int, str, list[str]]] = []
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
        if media and q > 0:
            ranked.append((q, i, media.lower(), params))
    ranked.sort(key=lambda r: (-r[0], r[1]))
    return ranked


def parse_accept(header: str | None) -> MediaType:
    """The first acceptable media type by q-value; 406 when none is one we produce."""
    if not header or not header.strip():
        return "json"
    for _, _, media, _ in _ranked(header):
        if media in _MEDIA:
            return _MEDIA[media]
    raise NotAcceptable(f"None of these media types are available: {header}")


_PLAN_TYPES = {"application/vnd.pgrst.plan": "text", "application/vnd.pgrst.plan+text": "text",
               "application/vnd.pgrst.plan+json": "json"}
_PLAN_FOR: dict[str, tuple[str, MediaType]] = {
    "application/json": ("application/json", "json"),
    "application/vnd.pgrst.object": ("application/vnd.pgrst.object+json", "object"),
    "application/vnd.pgrst.object+json": ("application/vnd.pgrst.object+json", "object"),
    "text/csv": ("text/csv", "csv"),
}
PLAN_OPTIONS = ("analyze", "verbose", "settings", "buffers", "wal")


@dataclass(frozen=True, slots=True)
class PlanAsk:
    """``Accept: application/vnd.pgrst.plan[+json|+text]; for="…"; options=a|b``."""

    format: Literal["json", "text"]
    options: tuple[str, ...]
    #: The media type whose query is explained.
    target: MediaType
    content_type: str


def parse_plan_accept(header: str) -> PlanAsk | None:
    """The plan media type when it ranks first among those Headwater produces, else None
    (the caller then negotiates as usual). Unknown ``for=`` or options: 406, as a media
    type nobody offers."""
    best = next((r for r in _ranked(header) if r[2] in _MEDIA or r[2] in _PLAN_TYPES), None)
    if best is None or best[2] not in _PLAN_TYPES:
        return None
    fmt: Literal["json", "text"] = "json" if _PLAN_TYPES[best[2]] == "json" else "text"
    suffix = ""
    target: MediaType = "json"
    options: tuple[str, ...] = ()
    for p in best[3]:
        k, _, v = p.partition("=")
        k, v = k.strip().lower(), v.strip()
        if k == "for":
            found = _PLAN_FOR.get(v.strip('"').lower())
            if found is None:
                raise NotAcceptable(f"None of these media types are available: {header}")
            suffix += f'; for="{found[0]}"'
            target = found[1]
        elif k == "options":
            # ``options=`` with nothing after it is what postgrest-js sends for none
            options = tuple(o.strip().lower() for o in v.split("|") if o.strip())
            if any(o not in PLAN_OPTIONS for o in options):
                raise NotAcceptable(f"None of these media types are available: {header}")
            if options:
                suffix += "; options=" + "|".join(options)
    return PlanAsk(fmt, options, target,
                   f"application/vnd.pgrst.plan+{fmt}{suffix}; charset=utf-8")


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
