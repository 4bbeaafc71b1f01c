"""The ASGI entry point. For every HTTP request: the request id, admission control, security
and rate-limit headers, metrics and the access log, in one layer and one ``send`` wrapper.
Table requests (the hot path) then go straight to their endpoint; everything else (``/``,
``/-/…``, ``/rpc/…``, the console, CORS preflights) through the Starlette application.

Why not Starlette middleware and routing for the hot path: each middleware wraps ``send`` once
more and the router tries a regular expression per request; measured in process, those layers
cost about a fifth of a cached read. The table endpoint is the same function either way.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from headwater.api.ratelimit import Window
from headwater.api.security import WINDOW_KEY
from headwater.observability.access import AccessLine, AccessLog
from headwater.observability.metrics import Metrics
from headwater.observability.timing import SCOPE_KEY, ServerTiming
from headwater.resilience.admission import Admission

Endpoint = Callable[[Request], Awaitable[Response]]
TABLE_METHODS = frozenset({"GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"})
#: The scope's ``Admission``: ``api.routes.read_body`` gives the request's slot back while it
#: waits on the client.
ADMISSION_KEY = "headwater.admission"

_COMMON = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
           (b"referrer-policy", b"no-referrer"),
           (b"cross-origin-resource-policy", b"same-site"))
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
_CONSOLE_CSP = (b"content-security-policy", b"frame-ancestors 'none'")
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
_OVERLOADED = (b'{"code":"HW503","message":"Server overloaded: too many requests in flight",'
               b'"details":null,"hint":"retry after the Retry-After delay"}')


def _valid_request_id(raw: bytes) -> str | None:
    if 0 < len(raw) <= 200 and all(0x21 <= b <= 0x7E for b in raw):
        return raw.decode("ascii")
    return None


def is_table_path(path: str) -> bool:
    """``/{table}``: one segment, which the Starlette route would also match."""
    return len(path) > 1 and path.find("/", 1) < 0


class Front:
    def __init__(self, app: ASGIApp, table: Endpoint, *, admission: Admission, metrics: Metrics,
                 log: Any, access_log: AccessLog | None, tls: bool, cors: bool) -> None:
        self.app = app
        self.table = table
        self.cors = cors
        self.admission = admission
        self.metrics = metrics
        self.log = log
        self.access_log = access_log
        hsts = (_HSTS,) if tls else ()
        self._api = (*_COMMON, _API_CSP, *hsts)
        self._console = (*_COMMON, _CONSOLE_CSP, *hsts)
        # Request ids: a random per-process prefix and a counter, unique without a syscall per
        # request (os.urandom cost ~10 µs, a tenth of a cached read).
        self._id_prefix = secrets.token_hex(8)
        self._ids = itertools.count(1)

    def request_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):016x}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = None
        origin = False
        for k, v in scope["headers"]:
            if k == b"x-request-id":
                request_id = _valid_request_id(v)
            elif k == b"origin":
                origin = True
        if request_id is None:
            request_id = self.request_id()
        scope["request_id"] = request_id
        timing = scope[SCOPE_KEY] = ServerTiming(start)
        rid_header = (b"x-request-id", request_id.encode())
        path: str = scope["path"]
        method: str = scope["method"]
        system = path.startswith("/-/")
        admission = self.admission
        if not system and not admission.admit():
            # Back-pressure: refuse at once rather than queue without bound.
            self.metrics.observe(method, 503, time.perf_counter() - start)
            await _overloaded(send, [*self._api, rid_header])
            return
        extra = self._console if system and path.startswith("/-/console") else self._api
        # The table endpoint's responses are Headwater's own and never carry the common
        # headers themselves, so they need no check for ones already present.
        own = method in TABLE_METHODS and is_table_path(path) and not (origin and self.cors)
        status = 500

        async def wrapped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message["headers"] = list(message.get("headers", ()))
                if own:
                    headers.extend(extra)
                else:
                    present = {k for k, _ in headers}
                    headers.extend(h for h in extra if h[0] not in present)
                w: Window | None = scope.get(WINDOW_KEY)
                if w is not None:
                    headers += [(b"ratelimit-limit", str(w.limit).encode()),
                                (b"ratelimit-remaining", str(max(0, w.remaining)).encode()),
                                (b"ratelimit-reset", str(w.reset).encode())]
                headers.append(rid_header)
                headers.append((b"server-timing", timing.header()))
            await send(message)

        admission.inflight += 1
        scope[ADMISSION_KEY] = admission
        try:
            if own:
                scope["path_params"] = {"table": path[1:]}
                response = await self.table(Request(scope, receive))
                await response(scope, receive, wrapped)
            else:
                await self.app(scope, receive, wrapped)
        finally:
            admission.inflight -= 1
            now = time.perf_counter()
            seconds = now - start
            self.metrics.observe(method, status, seconds, now)
            access_log = self.access_log
            if access_log is not None:
                # AccessLog.write, inlined: a call less per request.
                if now >= access_log.until:
                    access_log.tick(now)
                lines = access_log.lines
                lines.append(AccessLine(
                    "headwater", request_id, method, path,
                    scope["query_string"][:500].decode("latin-1"), status,
                    (seconds * 1e6 + 0.5) // 1 / 1000, scope.get("rows"), "access", "info",
                    access_log.stamp))
                if len(lines) == 1:
                    access_log.started()


async def _overloaded(send: Send, extra: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"retry-after", b"1"),
        (b"content-length", str(len(_OVERLOADED)).encode()), *extra]})
    await send({"type": "http.response.body", "body": _OVERLOADED})
