"""Results and errors → HTTP. The only module that turns a ``HeadwaterError`` into a response.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from headwater.api.compression import Compressor, negotiate
from headwater.errors import HeadwaterError, InvalidRange, SingularityError
from headwater.model.request import MediaType
from headwater.model.result import ReadAnswer, RowStream, WriteResult

CONTENT_TYPES: dict[MediaType, str] = {
    "json": "application/json; charset=utf-8",
    "object": "application/vnd.pgrst.object+json; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
}
_encode = msgspec.json.Encoder().encode


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encode(content)


class RowStreamResponse(StreamingResponse):
    """A streamed body whose database snapshot is released however the response ends.

    Rows are read while the body is sent, after the status line: if reading fails then (a
    value the database cannot encode, a lost connection), the body is never completed, so the
    server closes the connection and the client sees a failed response instead of a
    complete-looking truncated one. The failure is logged once, with the request id.
    """

    def __init__(self, stream: RowStream, status_code: int, headers: Mapping[str, str],
                 media_type: str, log: Any = None) -> None:
        super().__init__(stream, status_code=status_code, headers=headers,
                         media_type=media_type)
        self._rows = stream
        self._log = log
        self._request_id: str | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._request_id = scope.get("request_id")
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._rows.aclose()

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        rows = aiter(self._rows)
        while True:
            try:
                chunk = await anext(rows)
            except StopAsyncIteration:
                break
            except Exception as exc:
                if self._log is not None:
                    self._log.error("stream_aborted", request_id=self._request_id,
                                    error=f"{type(exc).__name__}: {exc}"[:300])
                return  # without the final empty chunk: the connection is closed, not ended
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def error_response(exc: HeadwaterError, headers: Mapping[str, str] | None = None) -> Response:
    extra = dict(headers or {})
    if exc.status in (503, 429):
        wait = getattr(exc, "retry_after", 1.0)
        extra.setdefault("Retry-After", str(max(1, math.ceil(wait))))
    if exc.status == 401:
        extra.setdefault("WWW-Authenticate", getattr(exc, "challenge", "Bearer"))
    if isinstance(exc, SingularityError):
        extra.setdefault("Content-Type", CONTENT_TYPES["object"])  # as PostgREST answers it
    body = exc.body()
    if exc.status == 500:
        # Internal details are logged with the request id, never sent.
        body["details"] = None
    return JSONResponse(body, status_code=exc.status, headers=extra)


def internal_error() -> Response:
    return JSONResponse({"code": "HW500", "message": "Internal server error",
                         "details": None, "hint": "The error is logged with the request id."},
                        status_code=500)


def content_range(first: int, rows: int, total: int | None) -> str:
    total_s = "*" if total is None else str(total)
    if rows > 0:
        return f"{first}-{first + rows - 1}/{total_s}"
    return f"*/{total_s}"


def range_status(first: int, rows: int, total: int | None) -> int:
    """PostgREST's rule: 206 when a known total is more than the page, 416 past the end."""
    if total is None:
        return 200
    if first > total:
        raise InvalidRange("Requested range not satisfiable",
                           details=f"An offset of {first} was requested, but there are only "
                                   f"{total} rows.")
    return 206 if rows < total else 200


def write_response(result: WriteResult, *, method: str, returning: str | None,
                   applied: list[str], media: MediaType = "json",
                   count: bool = False) -> Response:
    """PostgREST's answer to a write. ``count``: ``Prefer: count=`` asked for the number of
    rows written in ``Content-Range`` (PATCH as a range, POST and DELETE as a total only; PUT
    has none). ``media``: the object Accept answers one object (the writer made sure there
    was exactly one row). An upsert that inserted nothing is 200, not 201."""
    headers: list[tuple[bytes, bytes]] = []
    if applied:
        headers.append((b"preference-applied", ", ".join(applied).encode()))
    total = result.affected if count else None
    if method == "PATCH":
        headers.append((b"content-range", content_range(0, result.affected, total).encode()))
    elif method != "PUT":
        headers.append((b"content-range", b"*/" + (b"*" if total is None else b"%d" % total)))
    if result.location:
        headers.append((b"location", result.location.encode()))
    created = 201 if method == "POST" else 200
    if method in ("POST", "PUT") and result.inserted is not None:
        created = 201 if result.inserted else 200
    if returning == "representation":
        headers.append((b"content-type", _CONTENT_TYPES_RAW[media]))
        body = result.body or b"[]"
        if media == "object":
            body = body.strip()[1:-1]
        return RawResponse(body, created, headers)
    if method == "POST":
        return RawResponse(b"", created, headers)
    return RawResponse(b"", 204, headers, with_length=False)


@dataclass(frozen=True, slots=True)
class Negotiation:
    """What the request says about caching and encoding, read once per request."""

    if_none_match: str | None = None
    accept_encoding: str | None = None
    head: bool = False


VARY = "Accept, Prefer, Range, Authorization, apikey, Accept-Encoding"


def _matches(if_none_match: str | None, tag: str) -> bool:
    if not if_none_match:
        return False
    return if_none_match.strip() == "*" or tag in (t.strip().removeprefix("W/")
                                                   for t in if_none_match.split(","))


def body_response(body: bytes, *, media: MediaType, rows: int, total: int | None, first: int,
                  tag: str, ask: Negotiation, compressor: Compressor | None,
                  x_cache: str | None = None, cache_control: str | None = None,
                  age: int | None = None) -> Response:
    """A complete (non-streamed) read: singular check, 206/416, ETag/304, compression."""
    status = range_status(first, rows, total)
    if media == "object":
        if rows != 1:
            raise SingularityError("JSON object requested, multiple (or no) rows returned",
                                   details=f"The result contains {rows} rows")
        body = body.strip()[1:-1]
    headers = [(b"content-range", content_range(first, rows, total).encode()),
               (b"etag", tag.encode()), (b"vary", _VARY)]
    if x_cache is not None:
        headers.append((b"x-cache", x_cache.encode()))
    if cache_control is not None:
        headers.append((b"cache-control", cache_control.encode()))
    if age is not None and x_cache == "STALE":
        headers.append((b"age", str(age).encode()))
    if _matches(ask.if_none_match, tag):
        return RawResponse(b"", 304, headers, with_length=False)
    if compressor is not None and len(body) >= compressor.min_bytes and not ask.head:
        encoding = negotiate(ask.accept_encoding)
        if encoding is not None:
            body = compressor.compress(body, encoding, tag if media == "json" else None)
            headers.append((b"content-encoding", encoding.encode()))
    headers.append((b"content-type", _CONTENT_TYPES_RAW[media]))
    return RawResponse(b"" if ask.head else body, status, headers)


class RawResponse(Response):
    """A complete response from pre-encoded headers: the read path builds its few headers
    itself rather than through ``Response.init_headers`` (measurably cheaper per hit)."""

    def __init__(self, body: bytes, status: int, headers: list[tuple[bytes, bytes]], *,
                 with_length: bool = True) -> None:
        self.body = body
        self.status_code = status
        self.background = None
        if with_length:
            headers.append((b"content-length", b"%d" % len(body)))
        self.raw_headers = headers


_VARY = VARY.encode()
_CONTENT_TYPES_RAW = {k: v.encode() for k, v in CONTENT_TYPES.items()}


def read_response(answer: ReadAnswer, *, ask: Negotiation,
                  compressor: Compressor | None, log: Any = None) -> Response:
    if answer.stream is None:
        assert answer.body is not None and answer.etag is not None
        return body_response(answer.body, media=answer.media, rows=answer.rows,
                             total=answer.total, first=answer.first, tag=answer.etag, ask=ask,
                             compressor=compressor, x_cache=answer.x_cache,
                             cache_control=answer.cache_control, age=answer.age)
    status = range_status(answer.first, answer.rows, answer.total)
    headers = {"Content-Range": content_range(answer.first, answer.rows, answer.total)}
    if answer.x_cache is not None:
        headers["X-Cache"] = answer.x_cache
    if ask.head:
        return Response(None, status, headers, CONTENT_TYPES[answer.media],
                        background=BackgroundTask(answer.stream.aclose))
    return RowStreamResponse(answer.stream, status, headers, CONTENT_TYPES[answer.media], log)
