"""HTTP endpoints: tables in PostgREST's dialect, and the ``/-/`` system endpoints."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from headwater.api import grammar
from headwater.api.responses import JSONResponse, error_response, internal_error, read_response
from headwater.errors import HeadwaterError, MethodNotAllowed
from headwater.service.plan import plan_read
from headwater.service.reads import execute_read

if TYPE_CHECKING:
    from headwater.app import Headwater

Endpoint = Callable[[Request], Awaitable[Response]]


def guarded(hw: Headwater, fn: Endpoint) -> Endpoint:
    """Every endpoint's errors go through ``responses``; unexpected ones are logged, not sent."""

    async def endpoint(request: Request) -> Response:
        try:
            return await fn(request)
        except HeadwaterError as exc:
            if exc.status >= 500:
                hw.log.error("request_failed", request_id=request.scope.get("request_id"),
                             code=exc.code, error=exc.message, details=str(exc.__cause__ or ""))
            return error_response(exc)
        except Exception:
            hw.log.exception("unhandled_error", request_id=request.scope.get("request_id"),
                             path=request.url.path)
            return internal_error()

    return endpoint


def parse_request(request: Request, table: str) -> grammar.ApiRequest:
    headers = request.headers
    query = grammar.parse_query(
        parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True))
    return grammar.ApiRequest(
        method=request.method,
        target=table,
        query=query,
        prefer=grammar.parse_prefer(headers.getlist("prefer")),
        media=grammar.parse_accept(headers.get("accept")),
        range=grammar.parse_range(headers.get("range")),
    )


def build_routes(hw: Headwater) -> list[BaseRoute]:
    async def table(request: Request) -> Response:
        name = request.path_params["table"]
        method = request.method
        if method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{method} is not supported on /{name} yet")
        api = parse_request(request, name)
        plan = plan_read(hw.require_catalog(), api, max_rows=hw.settings.max_rows)
        result = await execute_read(hw.db, plan, hw.settings)
        request.scope["rows"] = result.rows
        return read_response(result, plan.media, head=method == "HEAD")

    async def root(request: Request) -> Response:
        return Response(hw.openapi(), media_type="application/openapi+json; charset=utf-8")

    async def live(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        report = await hw.readiness()
        return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)

    async def metrics(request: Request) -> Response:
        return Response(hw.metrics.render(hw.db.pool_stats()),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    async def stats(request: Request) -> Response:
        return JSONResponse(hw.metrics.stats(hw.db.pool_stats()))

    def g(fn: Endpoint) -> Endpoint:
        return guarded(hw, fn)

    methods = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"]
    routes: list[BaseRoute] = [
        Route("/", g(root), methods=["GET", "HEAD"]),
        Route("/-/live", g(live), methods=["GET", "HEAD"]),
        Route("/-/ready", g(ready), methods=["GET", "HEAD"]),
        Route("/-/metrics", g(metrics), methods=["GET"]),
        Route("/-/stats", g(stats), methods=["GET"]),
    ]
    console = hw.console_dir()
    if console is not None:
        from starlette.staticfiles import StaticFiles

        routes.append(Mount("/-/console", StaticFiles(directory=console, html=True)))
    routes.append(Route("/{table}", g(table), methods=methods))
    return routes
