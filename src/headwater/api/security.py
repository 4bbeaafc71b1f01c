"""The security runtime: rate limits → authentication → rate limits → an ``Access``, for every
API request; security headers on every response; the OpenAPI document as each role sees it.

Order, per request (``Security.admit``):
1. the client address's limit (before authentication, so it also bounds failed logins; an
   IPv6 address counts as its /64), and whether the address is past its failed-authentication
   limit;
2. authentication (``api.auth``), whose failures are counted against the address; past that
   limit a request whose credentials fail gets 429, one whose credentials are valid is served;
3. the principal's limit (its role's, or ``principal``), the role's shared limit, and any
   per-table/per-action override, counted once for every table and action the request
   touches (tables embedded in ``select=``, the update of an upsert);
4. the caller's ``Access`` (``service.policy``), which carries the cache access context.

The tightest window answered ``RateLimit-Limit``/``-Remaining``/``-Reset``; a 429 carries
``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Mapping
from typing import Any

import msgspec
from prometheus_client import Counter
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.types import Scope

from headwater.api.auth import Authenticator, Identity
from headwater.api.openapi import OpenApi
from headwater.api.ratelimit import (
    RateLimiter,
    Touch,
    Window,
    address_key,
    client_address,
    override_applies,
    touches,
)
from headwater.config import Settings
from headwater.errors import RateLimited, Unauthorized
from headwater.model.principal import ACTIONS, Action, Principal
from headwater.observability.metrics import Metrics
from headwater.resilience.breaker import CircuitBreaker
from headwater.service.api_keys import KeyStore
from headwater.service.crypto import FieldCipher
from headwater.service.policy import Access, PolicySet
from headwater.settings_file import SecuritySettings

WINDOW_KEY = "hw.ratelimit"
#: Label sets stay bounded: roles not named in the settings, and keys past this many, are
#: counted as "other".
MAX_KEY_LABELS = 200
_METHOD_ACTION: dict[str, Action] = {"GET": "select", "HEAD": "select", "POST": "insert",
                                     "PUT": "insert", "PATCH": "update", "DELETE": "delete"}


def method_action(method: str) -> Action:
    return _METHOD_ACTION.get(method, "select")


class Security:
    def __init__(self, settings: SecuritySettings, *, app_settings: Settings, keys: KeyStore,
                 metrics: Metrics, log: Any, redis_breaker: CircuitBreaker | None,
                 openapi: OpenApi) -> None:
        self.settings = settings
        self.metrics = metrics
        self.log = log
        self.documents = openapi
        self.policies = PolicySet(settings)
        self.keys = keys
        self.auth = Authenticator(settings.auth, self.keys) if settings.enforced else None
        self.rates = settings.rate_limits
        self.limiter: RateLimiter | None = None
        if self.rates.enabled:
            s = app_settings
            namespace = s.cache_namespace or _namespace(s.database_url)
            self.limiter = RateLimiter(
                redis_url=s.redis_url, prefix=f"hw:{namespace}", timeout=s.redis_timeout,
                breaker=redis_breaker, log=log, shared_dir=s.runtime_dir)
        self.cipher = FieldCipher(settings.encryption) if settings.encryption.columns else None
        self._open = self.policies.access(Principal(), anonymous=True)
        self._trivial = not settings.enforced and self.limiter is None
        #: Every request's ``Access`` when nothing is enforced or limited: the hot path then
        #: skips ``admit``'s coroutine.
        self.fixed: Access | None = self._open if self._trivial else None
        roles = set(self.policies.roles) | set(self.rates.roles) | set(self.rates.roles_total)
        if settings.auth.anonymous_role:
            roles.add(settings.auth.anonymous_role)
        self._known_roles = frozenset(roles or {"anonymous"})
        registry = metrics.registry
        self.by_role = Counter("headwater_requests_by_role", "API requests by role",
                               ["role"], registry=registry)
        self.by_key = Counter("headwater_requests_by_api_key", "API requests by API key id",
                              ["key"], registry=registry)
        self.limited = Counter("headwater_rate_limited", "Requests refused by a rate limit",
                               ["scope"], registry=registry)
        self.auth_failures = Counter("headwater_auth_failures", "Requests with credentials "
                                     "that were refused", ["code"], registry=registry)
        self._key_labels: set[str] = set()
        self._openapi: dict[str, tuple[Any, bytes]] = {}
        self._flusher: asyncio.Task[None] | None = None
        if self.limiter is not None:
            metrics.rate_limit_rejections = 0

    def middleware(self) -> list[Middleware]:
        """CORS, when origins are configured (security headers are added by ``api.front``)."""
        out = []
        origins = self.settings.http.cors_origins
        if origins:
            out.append(Middleware(
                CORSMiddleware, allow_origins=list(origins),
                allow_methods=["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"],
                allow_headers=["authorization", "apikey", "content-type", "prefer", "range",
                               "accept", "accept-profile", "content-profile", "x-client-info",
                               "if-none-match", "x-request-id"],
                expose_headers=["content-range", "location", "etag", "x-cache",
                                "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset",
                                "retry-after", "x-request-id", "preference-applied",
                                "content-profile"],
                max_age=600))
        return out

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self.auth is not None and self.settings.auth.api_keys:
            self._flusher = asyncio.create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.auth.key_usage_flush_seconds)
            await self._flush()

    async def _flush(self) -> None:
        try:
            await self.keys.flush()
        except Exception as exc:  # a database hiccup: the counts wait for the next round
            self.log.warning("api_key_usage_flush_failed", error=type(exc).__name__)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            await self._flush()
        if self.limiter is not None:
            await self.limiter.close()

    # --- per request --------------------------------------------------------------------------

    async def admit(self, request: Request, table: str | None = None,
                    action: Action | None = None) -> Access:
        if self._trivial:
            return self._open
        scope = request.scope
        limiter, rates = self.limiter, self.rates
        windows: list[Window] = []
        address = ""
        locked: Window | None = None
        if limiter is not None:
            address = await self._address(request, windows)
            if rates.failed_auth is not None and _has_credentials(request):
                w = await limiter.peek(rates.failed_auth, "failed_auth", address)
                if w.remaining <= 0:
                    # Not refused yet: valid credentials from this address are still served
                    # (a brute force must not lock its victims out); failing ones get 429.
                    locked = Window(w.limit, -1, w.reset, w.scope)
        identity = await self._identify(request, address, locked, windows)
        principal = identity.principal
        if limiter is not None:
            ident = identity.subject or f"addr:{address}"
            role = principal.role
            per = rates.roles.get(role) or rates.principal
            if per is not None:
                windows.append(await limiter.hit(per, "principal", ident))
            total = rates.roles_total.get(role)
            if total is not None:
                windows.append(await limiter.hit(total, f"role:{role}", role))
            if rates.overrides:
                await self._overrides(request, table, action, role, ident, windows)
            self._check(scope, windows)
        self._count(identity)
        if not self.settings.enforced:
            return self._open
        return self.policies.access(principal, anonymous=identity.anonymous)

    async def admit_operator(self, request: Request) -> None:
        """``/-/metrics`` and ``/-/stats``: rate-limited like any request, and, once
        authentication is configured, only for ``http.metrics_roles`` or a request bearing
        ``http.metrics_token`` (they name roles and API keys)."""
        if self._trivial:
            return
        http = self.settings.http
        if self.settings.enforced and http.metrics_token:
            presented = _bearer(request)
            if presented is not None and hmac.compare_digest(
                    presented.encode(), http.metrics_token.encode()):
                if self.limiter is not None:
                    windows: list[Window] = []
                    await self._address(request, windows)
                    self._check(request.scope, windows)
                return
        access = await self.admit(request)
        if self.settings.enforced and access.principal.role not in http.metrics_roles:
            raise access.forbidden(f"permission denied for {request.url.path}",
                                   hint="roles in [http] metrics_roles, or the "
                                        "[http] metrics_token, may read it")

    def client_address(self, request: Request) -> str:
        """The caller's address as rate limits count it: the peer, or the client a trusted
        proxy (``rate_limits.trusted_proxies``) forwarded for."""
        client = request.scope.get("client")
        rates = self.rates
        return address_key(client_address(client[0] if client else None,
                                          request.headers.getlist("x-forwarded-for"),
                                          rates.trusted_proxies), rates.ipv6_prefix)

    async def _address(self, request: Request, windows: list[Window]) -> str:
        """The client address's key, counted against the address limit (429 past it)."""
        assert self.limiter is not None
        address = self.client_address(request)
        rates = self.rates
        if rates.address is not None:
            windows.append(await self.limiter.hit(rates.address, "address", address))
            self._check(request.scope, windows)
        return address

    async def _overrides(self, request: Request, table: str | None, action: Action | None,
                         role: str, ident: str, windows: list[Window]) -> None:
        """Per-table/per-action overrides count every table and action the request touches
        (embedded reads, upserts that update), found only when one could tell."""
        assert self.limiter is not None
        touched: list[Touch] = [(table, action)]
        if table is not None and action is not None and any(
                o.table not in ("*", table) or o.action not in ("*", action)
                for o in self.rates.overrides):
            touched = touches(table, action, request.method, request.scope["query_string"],
                              request.headers.getlist("prefer"), self.documents.catalog)
        for i, o in enumerate(self.rates.overrides):
            if override_applies(o, touched, role):
                windows.append(await self.limiter.hit(o.limit, f"override:{i}", ident))

    async def _identify(self, request: Request, address: str, locked: Window | None,
                        windows: list[Window]) -> Identity:
        if self.auth is None:
            return Identity(self._open.principal, True)
        try:
            return await self.auth.authenticate(request.headers)
        except Unauthorized as exc:
            self.auth_failures.labels(exc.code).inc()
            if (self.limiter is not None and self.rates.failed_auth is not None
                    and _has_credentials(request)):
                await self.limiter.hit(self.rates.failed_auth, "failed_auth", address)
            if locked is not None:
                self._check(request.scope, [*windows, locked])
            raise

    def _check(self, scope: Scope, windows: list[Window]) -> None:
        if not windows:
            return
        tightest = min(windows, key=lambda w: (w.remaining, -w.reset))
        scope[WINDOW_KEY] = tightest
        if tightest.exceeded:
            self.limited.labels(tightest.scope.split(":")[0]).inc()
            self.metrics.rate_limit_rejections = (self.metrics.rate_limit_rejections or 0) + 1
            raise RateLimited("Too many requests", retry_after=tightest.reset,
                              details=f"limit {tightest.limit} per window ({tightest.scope})",
                              hint=f"retry after {tightest.reset} s")

    def _count(self, identity: Identity) -> None:
        role = identity.principal.role
        self.by_role.labels(role if role in self._known_roles else "other").inc()
        key = identity.key_id
        if key is not None:
            self.keys.used(key)
            if key not in self._key_labels and len(self._key_labels) < MAX_KEY_LABELS:
                self._key_labels.add(key)
            self.by_key.labels(key if key in self._key_labels else "other").inc()

    # --- the OpenAPI document, per role -------------------------------------------------------

    def openapi(self, access: Access, documents: OpenApi | None = None) -> bytes:
        """``documents``: another exposed schema's (``Accept-Profile``); default: the first."""
        docs = self.documents if documents is None else documents
        if not access.restricted:
            return docs.body()
        catalog = docs.catalog()
        role = access.principal.role
        cached = self._openapi.get(role) if documents is None else None
        if cached is not None and cached[0] is catalog:
            return cached[1]
        doc = docs.document(catalog)
        body = msgspec.json.encode(visible_document(doc, access, catalog))
        if documents is None:
            self._openapi[role] = (catalog, body)
        return body


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _has_credentials(request: Request) -> bool:
    h = request.headers
    return bool(h.get("authorization") or h.get("apikey"))


def _namespace(database_url: str) -> str:
    import hashlib

    return hashlib.blake2b(database_url.encode(), digest_size=6).hexdigest()


_OP_ACTIONS: dict[str, tuple[Action, ...]] = {
    "get": ("select",), "post": ("insert",), "patch": ("update",), "delete": ("delete",),
    "put": ("insert", "update"),
}


def visible_document(doc: dict[str, Any], access: Access, catalog: Any) -> dict[str, Any]:
    """The OpenAPI document with only what ``access`` may use: tables, methods, columns
    (properties and filter parameters) and RPC functions."""
    paths: dict[str, Any] = {}
    schemas = doc["components"]["schemas"]
    for path, ops in doc["paths"].items():
        if path == "/":
            paths[path] = ops
            continue
        if path.startswith("/rpc/"):
            if access.policies.may_call(access.principal.role, path[5:]):
                paths[path] = ops
            continue
        table = path[1:]
        kept: dict[str, Any] = {}
        for method, op in ops.items():
            actions = _OP_ACTIONS.get(method, ())
            if not actions or not all(access.may(table, a) for a in actions):
                continue
            cols = access.filterable(table, actions[-1])
            if cols is not None:
                op = {**op, "parameters": [
                    p for p in op.get("parameters", [])
                    if "$ref" in p or p.get("in") != "query" or p.get("name") in cols]}
            kept[method] = op
        if kept:
            paths[path] = kept
        else:
            schemas.pop(table, None)
            continue
        readable: set[str] | None = set()
        for a in ACTIONS:
            if access.may(table, a):
                cols = access.rule(table, a).columns
                if cols is None or readable is None:
                    readable = None
                else:
                    readable |= cols
        schema = schemas.get(table)
        if readable is not None and isinstance(schema, Mapping):
            props = {k: v for k, v in schema.get("properties", {}).items() if k in readable}
            new = {**schema, "properties": props}
            if "required" in schema:
                required = [c for c in schema["required"] if c in props]
                if required:
                    new["required"] = required
                else:
                    new.pop("required")
            schemas[table] = new
    return {**doc, "paths": paths}
