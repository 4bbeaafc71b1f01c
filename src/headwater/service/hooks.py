"""Business logic in Python: ``App`` collects hooks and RPC functions from a user's module.

```python
from headwater import App, Rejected
app = App()

@app.before_insert("orders")
async def check(ctx, row):
    if row["quantity"] > 100:
        raise Rejected("quantity too large", status=422)
    return row
```
Hooks run inside the request's transaction (``ctx.db``); any exception rolls it back.

Event handlers run after commit, from the outbox (``headwater.events``)::

    @app.on("orders.insert")
    async def ship(event: Event) -> None: ...
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar, get_type_hints, overload

from headwater.db.database import Transaction
from headwater.events.event import Handler, Subscription
from headwater.events.recording import EventBuffer
from headwater.model.principal import Principal, WriteAction

_DOLLAR = re.compile(r"\$(\d+)")
Row: TypeAlias = dict[str, Any]


@dataclass(slots=True)
class Context:
    """What a hook or RPC function sees of the request it runs in."""

    principal: Principal
    table: str | None
    db: Transaction
    request_id: str | None = None
    action: WriteAction | None = None
    #: Set when SQL other than a read ran here: the tables it touched are unknown, so the
    #: whole cache is invalidated after commit.
    wrote: bool = False
    #: The transaction's events (None when events are off).
    events: EventBuffer | None = None

    def emit(self, table: str, op: WriteAction, new: Row | None = None,
             old: Row | None = None) -> None:
        """Record an event for a row written by hand-written SQL (``ctx.fetch``).

        Writes through the API are recorded by themselves; SQL a hook or RPC function runs
        itself is not seen, so call this once per row it writes (``RETURNING`` gives them).
        The event commits or rolls back with the request, like the row."""
        if self.events is not None:
            self.events.emit(table, op, new, old)

    async def fetch(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """Run SQL inside the request's transaction, with ``$1``-style parameters on either
        database (rewritten to ``?1`` for SQLite; don't put ``$n`` inside string literals)."""
        if sql.lstrip()[:6].lower() not in ("select", "values"):
            self.wrote = True
        if self.db.dialect == "sqlite":
            sql = _DOLLAR.sub(r"?\1", sql)
        return [tuple(r) for r in await self.db.fetch(sql, params)]


BeforeHook: TypeAlias = Callable[[Context, Row], Awaitable[Row | None]]
AfterHook: TypeAlias = Callable[[Context, Row], Awaitable[None]]
RpcFunction: TypeAlias = Callable[..., Awaitable[Any]]
F = TypeVar("F", bound=RpcFunction)


@dataclass(frozen=True, slots=True)
class RpcSpec:
    name: str
    fn: RpcFunction
    #: Parameter name → annotated type (the context parameter excluded).
    params: Mapping[str, Any]
    required: frozenset[str]
    returns: Any
    cacheable: bool = False
    #: ``GET`` is offered only to functions that declare they do not write.
    read_only: bool = False


class App:
    """The registry a user's module fills in; ``headwater serve --app pkg.mod:app`` loads it."""

    def __init__(self) -> None:
        self._before: dict[tuple[WriteAction, str], list[BeforeHook]] = {}
        self._after: dict[tuple[WriteAction, str], list[AfterHook]] = {}
        self.rpcs: dict[str, RpcSpec] = {}
        self.subscriptions: dict[str, Subscription] = {}

    # hooks
    def _register_before(self, action: WriteAction, table: str) -> Callable[[BeforeHook], BeforeHook]:
        def deco(fn: BeforeHook) -> BeforeHook:
            self._before.setdefault((action, table), []).append(fn)
            return fn
        return deco

    def _register_after(self, action: WriteAction, table: str) -> Callable[[AfterHook], AfterHook]:
        def deco(fn: AfterHook) -> AfterHook:
            self._after.setdefault((action, table), []).append(fn)
            return fn
        return deco

    def before_insert(self, table: str) -> Callable[[BeforeHook], BeforeHook]:
        return self._register_before("insert", table)

    def before_update(self, table: str) -> Callable[[BeforeHook], BeforeHook]:
        return self._register_before("update", table)

    def before_delete(self, table: str) -> Callable[[BeforeHook], BeforeHook]:
        return self._register_before("delete", table)

    def after_insert(self, table: str) -> Callable[[AfterHook], AfterHook]:
        return self._register_after("insert", table)

    def after_update(self, table: str) -> Callable[[AfterHook], AfterHook]:
        return self._register_after("update", table)

    def after_delete(self, table: str) -> Callable[[AfterHook], AfterHook]:
        return self._register_after("delete", table)

    def before(self, action: WriteAction, table: str) -> list[BeforeHook]:
        return self._before.get((action, table), [])

    def after(self, action: WriteAction, table: str) -> list[AfterHook]:
        return self._after.get((action, table), [])

    # events
    def on(self, *patterns: str, name: str | None = None) -> Callable[[Handler], Handler]:
        """Run ``async def handler(event)`` for events whose ``{table}.{op}`` matches a
        pattern (``orders.insert``, ``orders.*``, ``#``), after commit, at least once and
        with its effects once per event id. ``name`` names its queue (default: the
        function's module and name); renaming it starts a new, empty queue."""
        if not patterns:
            raise ValueError("app.on needs at least one pattern, e.g. 'orders.insert'")

        def deco(fn: Handler) -> Handler:
            key = name or f"{fn.__module__}.{fn.__qualname__}"
            if key in self.subscriptions:
                raise ValueError(f"two event handlers are named {key!r}: give one a name=")
            self.subscriptions[key] = Subscription(key, tuple(patterns), fn)
            return fn

        return deco

    # rpc
    @overload
    def rpc(self, fn: F, /) -> F: ...

    @overload
    def rpc(self, *, name: str | None = None, cacheable: bool = False,
            read_only: bool = False) -> Callable[[F], F]: ...

    def rpc(self, fn: F | None = None, *, name: str | None = None,
            cacheable: bool = False, read_only: bool = False) -> F | Callable[[F], F]:
        """Expose ``async def f(ctx, a: int, ...)`` as ``POST /rpc/f`` (and ``GET`` if
        ``read_only``); arguments are validated from the type hints."""

        def deco(f: F) -> F:
            sig = inspect.signature(f)
            hints = get_type_hints(f)
            params = list(sig.parameters.values())[1:]  # the first is the context
            self.rpcs[name or f.__name__] = RpcSpec(
                name=name or f.__name__, fn=f,
                params={p.name: hints.get(p.name, Any) for p in params},
                required=frozenset(p.name for p in params if p.default is inspect.Parameter.empty),
                returns=hints.get("return", Any), cacheable=cacheable, read_only=read_only)
            return f

        return deco(fn) if fn is not None else deco


def load_app(spec: str) -> App:
    """``package.module:attribute`` → the ``App`` it names."""
    import os
    import sys

    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as uvicorn's --app-dir, so local modules import
    module = importlib.import_module(module_name)
    app = getattr(module, attr or "app")
    if not isinstance(app, App):
        raise TypeError(f"{spec} is a {type(app).__name__}, not a headwater.App")
    return app
