"""Request id, access log and request metrics, as one pure ASGI middleware."""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from headwater.app import Headwater


def _valid_request_id(raw: bytes) -> str | None:
    if 0 < len(raw) <= 200 and all(0x21 <= b <= 0x7E for b in raw):
        return raw.decode("ascii")
    return None


class AccessMiddleware:
    def __init__(self, app: ASGIApp, hw: Headwater) -> None:
        self.app = app
        self.hw = hw
        self.log_access = hw.log_enabled("info")
        self.admission = hw.admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = None
        for k, v in scope["headers"]:
            if k == b"x-request-id":
                request_id = _valid_request_id(v)
                break
        if request_id is None:
            request_id = secrets.token_hex(16)
        scope["request_id"] = request_id
        rid_header = (b"x-request-id", request_id.encode())
        status = 500
        admission = self.admission
        if not scope["path"].startswith("/-/") and not admission.admit():
            # Back-pressure: refuse at once rather than queue without bound.
            self.hw.metrics.observe(scope["method"], 503, time.perf_counter() - start)
            await _overloaded(send, rid_header)
            return
        admission.inflight += 1

        async def wrapped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        finally:
            admission.inflight -= 1
            seconds = time.perf_counter() - start
            self.hw.metrics.observe(scope["method"], status, seconds)
            if self.log_access:
                fields: dict[str, Any] = {
                    "request_id": request_id, "method": scope["method"], "path": scope["path"],
                    "query": scope["query_string"].decode("latin-1")[:500], "status": status,
                    "duration_ms": round(seconds * 1000, 3), "rows": scope.get("rows"),
                }
                self.hw.log.info("access", **fields)


_OVERLOADED = (b'{"code":"HW503","message":"Server overloaded: too many requests in flight",'
               b'"details":null,"hint":"retry after the Retry-After delay"}')


async def _overloaded(send: Send, rid_header: tuple[bytes, bytes]) -> None:
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"retry-after", b"1"),
        (b"content-length", str(len(_OVERLOADED)).encode()), rid_header]})
    await send({"type": "http.response.body", "body": _OVERLOADED})
