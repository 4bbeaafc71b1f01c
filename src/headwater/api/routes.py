"""HTTP endpoints: tables in PostgREST's dialect, RPC, and the ``/-/`` system endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Scope

from headwater.api.compression import Compressor
from headwater.api.front import ADMISSION_KEY, TABLE_METHODS
from headwater.api.profiles import Profiles
from headwater.api.responses import (
    CONTENT_TYPES,
    JSONResponse,
    Negotiation,
    error_response,
    internal_error,
    read_response,
    write_response,
)
from headwater.api.security import Security, method_action
from headwater.config import Settings
from headwater.errors import (
    HeadwaterError,
    InvalidBody,
    MethodNotAllowed,
    Raised,
    RequestError,
    RequestTimeout,
    SchemaNotExposed,
    SingularityError,
    UnsupportedMediaType,
)
from headwater.model import grammar, headers
from headwater.model.consistency import (
    NO_ORIGIN,
    ReadOrigin,
    caller_key,
    format_lsn,
    parse_lsn,
    token_from_cookie,
)
from headwater.model.principal import Principal
from headwater.model.request import ApiRequest
from headwater.model.result import ReadAnswer
from headwater.observability.timing import SCOPE_KEY as TIMING
from headwater.observability.timing import ServerTiming
from headwater.resilience.admission import Admission
from headwater.service.functions import choose, query_args
from headwater.service.policy import Access
from headwater.service.reads import RawRead, Reads
from headwater.service.rpc import Rpc, check_args
from headwater.service.writes import Writer

if TYPE_CHECKING:  # the replicas' bookkeeping, handed in by the composition root
    from headwater.db.replicas import Replicas

Endpoint = Callable[[Request], Awaitable[Response]]
_CLOSE = MappingProxyType({"Connection": "close"})


def guarded(log: Any, fn: Endpoint) -> Endpoint:
    """Every endpoint's errors go through ``responses``; unexpected ones are logged, not sent."""

    async def endpoint(request: Request) -> Response:
        try:
            return await fn(request)
        except HeadwaterError as exc:
            if exc.status >= 500:
                log.error("request_failed", request_id=request.scope.get("request_id"),
                             code=exc.code, error=exc.message, details=str(exc.details),
                             cause=repr(exc.__cause__)[:300])
            # The rest of a body that came too slowly is not read: the connection is closed.
            return error_response(exc, _CLOSE if isinstance(exc, RequestTimeout) else None)
        except ClientDisconnect:
            return Response(None, 499)
        except Exception:
            log.exception("unhandled_error", request_id=request.scope.get("request_id"),
                             path=request.url.path)
            return internal_error()

    return endpoint


def parse_request(request: Request, table: str, h: dict[bytes, bytes]) -> ApiRequest:
    """``h``: the request's headers (``header_map``)."""
    method = request.method

    def text(name: bytes) -> str | None:
        value = h.get(name)
        return None if value is None else value.decode("latin-1")

    query = grammar.parse_query(
        grammar.split_query_string(request.scope["query_string"].decode("latin-1")))
    prefer = text(b"prefer")
    return ApiRequest(
        method=method,
        target=table,
        query=query,
        prefer=headers.parse_prefer([prefer] if prefer else []),
        media=headers.parse_accept(text(b"accept")),
        range=headers.parse_range(text(b"range")) if method in ("GET", "HEAD") else None,
    )


async def _require_objects(rows: list[Any]) -> None:
    """Every row is a JSON object. By type and in C, a slice at a time with the loop served
    between slices: a 10 MB body is millions of rows, and one pass over them takes 0.2 s."""
    step = 100_000
    for i in range(0, len(rows), step):
        if i:
            await asyncio.sleep(0)
        if not {*map(type, rows[i:i + step])} <= {dict}:
            raise InvalidBody("Expected a JSON object or an array of objects", code="PGRST102")


async def read_body(request: Request, settings: Settings) -> tuple[Any, bool]:
    """The request body as JSON (any shape) or CSV rows; the bool says it was CSV.

    Reading waits on the client, so the request's admission slot is given back meanwhile; the
    body must arrive within ``body_timeout`` seconds, one more per ``body_min_rate`` bytes
    received (Apache's ``RequestReadTimeout body=…,MinRate=…``), else 408 (and closed)."""
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"Request body larger than {limit} bytes", code="PGRST413",
                           status=413)
    chunks: list[bytes] = []
    size = 0
    receive = request.receive
    grace, rate = settings.body_timeout, settings.body_min_rate
    admission: Admission | None = request.scope.get(ADMISSION_KEY)
    began = asyncio.get_running_loop().time()
    try:
        with admission.waiting() if admission is not None else contextlib.nullcontext():
            async with asyncio.timeout_at(began + grace) as deadline:
                while True:
                    # Read from ASGI directly: Request.stream() is an async generator per
                    # request.
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise ClientDisconnect()
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise RequestError(f"Request body larger than {limit} bytes",
                                           code="PGRST413", status=413)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
                    if rate > 0:
                        deadline.reschedule(began + grace + size / rate)
    except TimeoutError:
        raise RequestTimeout(
            "Request body not received in time", details=f"{size} bytes received",
            hint=f"send the body within {grace:g} seconds, or at least {rate} bytes a "
                 "second") from None
    raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype in ("application/json", "application/vnd.pgrst.object+json", ""):
        try:
            return msgspec.json.decode(raw), False
        except msgspec.DecodeError as exc:
            raise InvalidBody("Empty or invalid json", details=str(exc)) from None
        except RecursionError:
            raise InvalidBody("Empty or invalid json", details="nested too deeply") from None
    if ctype == "application/x-www-form-urlencoded":
        try:
            return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True)), False
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidBody("Invalid form body", details=str(exc)) from None
    if ctype == "text/csv":
        try:
            text = raw.decode("utf-8")
            rows = list(csv.DictReader(io.StringIO(text)))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InvalidBody("Invalid CSV body", details=str(exc)) from None
        if any(None in r for r in rows):
            raise InvalidBody("Invalid CSV body", details="a row has more fields than the header")
        return rows, True
    raise UnsupportedMediaType(f"Content-Type not acceptable: {ctype}",
                               hint="send application/json or text/csv")


def _applied(api: ApiRequest) -> list[str]:
    p = api.prefer
    out = []
    if p.returning:
        out.append(f"return={p.returning}")
    if p.count:
        out.append(f"count={p.count}")
    if p.resolution:
        out.append(f"resolution={p.resolution}")
    if p.missing:
        out.append(f"missing={p.missing}")
    if p.tx:
        out.append(f"tx={p.tx}")
    if p.max_affected is not None and p.handling == "strict":
        out += ["handling=strict", f"max-affected={p.max_affected}"]
    return out


def header_map(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers in one pass; repeated ones joined with commas (RFC 9110 5.3)."""
    out: dict[bytes, bytes] = {}
    for k, v in scope["headers"]:
        out[k] = out[k] + b", " + v if k in out else v
    return out


_PLAIN, _PLAIN_HEAD = Negotiation(), Negotiation(head=True)


def _negotiation(h: dict[bytes, bytes], method: str) -> Negotiation:
    inm, enc = h.get(b"if-none-match"), h.get(b"accept-encoding")
    if inm is None and enc is None:
        return _PLAIN_HEAD if method == "HEAD" else _PLAIN
    return Negotiation(if_none_match=inm.decode("latin-1") if inm is not None else None,
                       accept_encoding=enc.decode("latin-1") if enc is not None else None,
                       head=method == "HEAD")


@dataclass(frozen=True, slots=True)
class Routes:
    """The Starlette routes, and the table endpoint that ``api.front`` calls directly."""

    table: Endpoint
    routes: list[BaseRoute]


def wants_html(accept: str) -> bool:
    """Does the client put HTML first (a browser's navigation), rather than JSON or ``*/*``?"""
    first = accept.split(",", 1)[0].split(";", 1)[0].strip().lower()
    return first in ("text/html", "application/xhtml+xml")


@dataclass(frozen=True, slots=True)
class Services:
    """What the endpoints use, handed down by the composition root (``headwater.app``)."""

    settings: Settings
    security: Security
    reads: Reads
    writer: Callable[[Access, str | None, str | None], Writer]
    rpc: Rpc
    profiles: Profiles
    compressor: Compressor
    log: Any
    readiness: Callable[[], Awaitable[dict[str, Any]]]
    metrics: Callable[[], bytes]
    stats: Callable[[], dict[str, object]]
    console_dir: str | None
    #: Read replicas, when configured: consistency tokens on writes, routing of reads.
    replicas: Replicas | None = None


def read_token(h: dict[bytes, bytes]) -> int:
    """The consistency token a read presents: the ``Headwater-LSN`` header (a bad one is a
    400), else the ``hw_lsn`` cookie; 0 when neither."""
    header = h.get(b"headwater-lsn")
    if header is not None:
        return parse_lsn(header.decode("latin-1"))
    cookie = h.get(b"cookie")
    return token_from_cookie(cookie.decode("latin-1")) if cookie is not None else 0


def with_token(response: Response, replicas: Replicas, who: str) -> Response:
    """A write's response: the token of everything this node has seen committed (at or past
    this write's commit), as a header and, for browsers, a cookie; and the caller's (``who``,
    ``caller_key``) reads stay on the primary for ``read_your_writes_window`` seconds."""
    replicas.wrote(who)
    lsn = format_lsn(replicas.latest).encode()
    response.raw_headers += [(b"headwater-lsn", lsn),
                             (b"set-cookie",
                              b"hw_lsn=" + lsn + b"; Path=/; HttpOnly; SameSite=Lax")]
    return response


def build_routes(s: Services) -> Routes:
    settings = s.settings
    security = s.security
    reads = s.reads
    profiles = s.profiles
    compressor = s.compressor
    replicas = s.replicas

    def caller(request: Request, access: Access) -> str:
        return caller_key(access.principal, security.client_address(request))

    async def table(request: Request, h: dict[bytes, bytes] | None = None,
                    reads: Reads = reads, profile: str | None = None) -> Response:
        """The table endpoint. Called with the request alone; it calls itself again with the
        exposed schema's ``reads`` and ``profile`` when the request names a profile (one
        coroutine per request on the usual path, not a wrapper and a body)."""
        if h is None:
            h = header_map(request.scope)
            if profiles.several or b"accept-profile" in h or b"content-profile" in h:
                chosen = profiles.choose(h, request.method)
                other = profiles.others.get(chosen)
                response = await table(request, h, other.reads if other else reads,
                                       other.name if other else None)
                if profiles.several:
                    response.raw_headers[:] = [
                        (k, v + b", Accept-Profile" if k == b"vary" else v)
                        for k, v in response.raw_headers]
                    response.raw_headers.append((b"content-profile", chosen.encode()))
                return response
        name = request.path_params["table"]
        method = request.method
        access = security.fixed
        if access is None:
            access = await security.admit(request, name, method_action(method))
        timing: ServerTiming = request.scope[TIMING]
        if method in ("GET", "HEAD"):
            accept = h.get(b"accept", b"")
            if reads.plans and b"vnd.pgrst.plan" in accept and access.may_plan:
                return await _plan(request, name, h, access, accept.decode("latin-1"), reads)
            raw: RawRead = (name, request.scope["query_string"], accept, h.get(b"prefer", b""),
                            h.get(b"range", b""))
            answer = reads.read(raw, lambda: parse_request(request, name, h), access, timing,
                                NO_ORIGIN if replicas is None else ReadOrigin(
                                    read_token(h), lambda: caller(request, access)))
            if not isinstance(answer, ReadAnswer):
                answer = await answer
            began = time.perf_counter()
            request.scope["rows"] = answer.rows
            response = read_response(answer, ask=_negotiation(h, method), compressor=compressor,
                                     log=s.log)
            if answer.served_by is not None:
                response.raw_headers.append((b"headwater-served-by", answer.served_by.encode()))
            timing.since("encode", began)
            return response
        began = time.perf_counter()
        api = parse_request(request, name, h)
        # Preferences the settings do not allow this caller (tx=rollback) are ignored.
        api = replace(api, prefer=access.preferences(api.prefer))
        timing.since("parse", began)
        if api.media == "csv":
            # Writes answer JSON; only the read path renders CSV.
            raise RequestError("text/csv responses are only offered for reads",
                               code="PGRST107", status=406)
        if access.restricted:
            access.rule(name, method_action(method))  # refused before the body is read
        w = s.writer(access, request.scope.get("request_id"), profile)
        try:
            if method == "DELETE":
                result_w = await w.delete(api)
            else:
                body, from_csv = await read_body(request, settings)
                if method == "PATCH":
                    result_w = await w.update(api, body)
                else:
                    rows = body if isinstance(body, list) else [body]
                    await _require_objects(rows)
                    result_w = await w.insert(api, rows, from_csv=from_csv,
                                              put=method == "PUT")
        except SingularityError as exc:
            # Refused and rolled back by the writer; PostgREST still says how it ended.
            tx = api.prefer.tx
            return error_response(exc, {"Preference-Applied": f"tx={tx}"} if tx else None)
        request.scope["rows"] = result_w.affected
        response = write_response(result_w, method=method, returning=api.prefer.returning,
                                  applied=_applied(api), media=api.media,
                                  count=api.prefer.count in ("exact", "estimated"))
        if replicas is not None and api.prefer.tx != "rollback":
            with_token(response, replicas, caller(request, access))
        return response

    async def _plan(request: Request, name: str, h: dict[bytes, bytes], access: Access,
                    accept: str, reads: Reads) -> Response:
        """PostgREST's ``application/vnd.pgrst.plan`` (``db_plan_enabled``); another media
        type ranked first is negotiated as usual."""
        ask = headers.parse_plan_accept(accept)
        api = parse_request(request, name, {**h, b"accept": b""} if ask else h)
        if ask is None:
            raw: RawRead = (name, request.scope["query_string"], h.get(b"accept", b""),
                            h.get(b"prefer", b""), h.get(b"range", b""))
            answer = reads.read(raw, lambda: api, access, request.scope[TIMING])
            if not isinstance(answer, ReadAnswer):
                answer = await answer
            return read_response(answer, ask=_negotiation(h, request.method),
                                 compressor=compressor, log=s.log)
        body = await reads.explain(api, access, ask)
        return Response(b"" if request.method == "HEAD" else body, 200,
                        {"Content-Type": ask.content_type})

    async def database_function(request: Request, name: str, access: Access) -> Response:
        """``/rpc/{name}`` for a function of the database (no Python function has the name)."""
        h = header_map(request.scope)
        method = request.method
        pairs = grammar.split_query_string(request.scope["query_string"].decode("latin-1"))
        overloads = s.rpc.functions.overloads(name)
        prefer_text = [v.decode("latin-1") for k, v in request.scope["headers"]
                       if k == b"prefer"]
        # PostgREST's params=single-object: the whole body is the one json argument.
        whole = any(p.strip().lower() == "params=single-object"
                    for text in prefer_text for p in text.split(","))
        args: Any
        if method in ("GET", "HEAD"):
            args, pairs = query_args(overloads, pairs)
            whole = False
            is_object = True
        else:
            body, from_csv = await read_body(request, settings)
            if from_csv:
                raise InvalidBody("RPC arguments must be JSON", code="PGRST102")
            args, is_object = body, isinstance(body, dict)
        fn = choose(s.rpc.functions.schema, name, overloads,
                    tuple(args) if is_object and not whole else (),
                    whole_body=whole, body_is_object=is_object)
        access.may_call(fn.name)
        whole = whole or fn.single_unnamed
        kept = [t for t in prefer_text
                if not any(p.strip().lower().startswith("params=") for p in t.split(","))]
        api = ApiRequest(method=method, target=name, query=grammar.parse_query(pairs),
                         prefer=access.preferences(headers.parse_prefer(kept)),
                         media=headers.parse_accept(request.headers.get("accept")),
                         range=headers.parse_range(request.headers.get("range"))
                         if method in ("GET", "HEAD") else None)
        out = await s.rpc.functions.call(fn, args, api, access, whole=whole,
                                         rollback=api.prefer.tx == "rollback")
        if out.read is not None:
            request.scope["rows"] = out.read.rows
            return read_response(out.read, ask=_negotiation(h, method), compressor=compressor,
                                 log=s.log)
        if out.value is None:
            return Response(None, 204)
        return Response(b"" if method == "HEAD" else out.value, 200,
                        media_type=CONTENT_TYPES["json"])

    async def rpc(request: Request) -> Response:
        h = request.headers
        if profiles.several or "accept-profile" in h or "content-profile" in h:
            chosen = profiles.choose(header_map(request.scope), request.method)
            if chosen != profiles.names[0]:
                # Functions are served from the default schema only: never silently there.
                raise SchemaNotExposed(f"Functions are served from the schema "
                                       f"{profiles.names[0]} only",
                                       hint=f"call /rpc without a profile, or with "
                                            f"{profiles.names[0]!r}")
        access = await security.admit(request, None, None)
        response = await _rpc(request, access)
        if replicas is not None and request.method == "POST" and response.status_code < 400:
            # It may have written (a VOLATILE function, Python RPC): it ran on the primary,
            # and the caller's next reads must see what it did.
            with_token(response, replicas, caller(request, access))
        return response

    async def _rpc(request: Request, access: Access) -> Response:
        name = request.path_params["name"]
        if name not in s.rpc.app.rpcs and s.rpc.functions.overloads(name):
            try:
                return await database_function(request, name, access)
            except Raised as exc:
                return error_response(exc, exc.headers)
        spec = s.rpc.find(name)
        access.may_call(spec.name)
        if request.method in ("GET", "HEAD"):
            if not spec.read_only:
                raise MethodNotAllowed(f"{spec.name} may write: call it with POST",
                                       hint="declare it with @app.rpc(read_only=True) for GET")
            args: dict[str, Any] = dict(parse_qsl(request.scope["query_string"].decode("latin-1"),
                                                  keep_blank_values=True))
            from_text = True
        else:
            body, from_csv = await read_body(request, settings)
            if from_csv or not isinstance(body, dict):
                raise InvalidBody("RPC arguments must be one JSON object", code="PGRST102")
            args, from_text = body, False
        checked = check_args(spec, args, from_text=from_text)
        prefer = access.preferences(headers.parse_prefer(request.headers.getlist("prefer")))
        out = await s.rpc.call(spec, checked,
                               principal=access.principal if access.restricted else Principal(),
                               request_id=request.scope.get("request_id"),
                               rollback=prefer.tx == "rollback")
        return Response(b"" if request.method == "HEAD" else out, 200,
                        media_type=CONTENT_TYPES["json"])

    async def root(request: Request) -> Response:
        if s.console_dir is not None and wants_html(request.headers.get("accept", "")):
            # A browser (HTML first) is sent to the console; API clients (JSON, */*, no
            # Accept) get the OpenAPI document, as from PostgREST's root.
            return RedirectResponse("/-/console/", 302, headers={"Vary": "Accept"})
        access = await security.admit(request)
        vary = ", ".join((["Accept"] if s.console_dir is not None else [])
                         + (["Authorization, apikey"] if access.restricted else []))
        extra = {"Vary": vary} if vary else {}
        documents = None
        if profiles.several or "accept-profile" in request.headers:
            chosen = profiles.choose(header_map(request.scope), request.method)
            other = profiles.others.get(chosen)
            documents = other.documents if other else None
            if profiles.several:
                extra["Content-Profile"] = chosen
        return Response(security.openapi(access, documents),
                        media_type="application/openapi+json; charset=utf-8",
                        headers=extra or None)

    async def live(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        report = await s.readiness()
        return JSONResponse(report, status_code=200 if report["status"] in ("ok", "degraded")
                            else 503)

    async def metrics(request: Request) -> Response:
        await security.admit_operator(request)
        return Response(s.metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def stats(request: Request) -> Response:
        await security.admit_operator(request)
        return JSONResponse(s.stats())

    def g(fn: Endpoint) -> Endpoint:
        return guarded(s.log, fn)

    table_endpoint = g(table)
    routes: list[BaseRoute] = [
        # Table requests normally never reach the router (api.front calls the endpoint); CORS
        # requests do. The pattern cannot match "/", "/-/…" or "/rpc/…".
        Route("/{table}", table_endpoint, methods=sorted(TABLE_METHODS)),
        Route("/", g(root), methods=["GET", "HEAD"]),
        Route("/-/live", g(live), methods=["GET", "HEAD"]),
        Route("/-/ready", g(ready), methods=["GET", "HEAD"]),
        Route("/-/metrics", g(metrics), methods=["GET"]),
        Route("/-/stats", g(stats), methods=["GET"]),
        Route("/rpc/{name}", g(rpc), methods=["GET", "HEAD", "POST"]),
    ]
    if s.console_dir is not None:
        from starlette.staticfiles import StaticFiles

        routes.append(Mount("/-/console", StaticFiles(directory=s.console_dir, html=True)))
    return Routes(table_endpoint, routes)
