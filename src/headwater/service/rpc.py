"""RPC: a user's Python function, called with validated arguments inside one transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec

from headwater.db.database import Database
from headwater.errors import InvalidBody, NotFound
from headwater.events.recording import EventBuffer, Recorder
from headwater.model.catalog import Catalog
from headwater.model.principal import Principal, principal_json
from headwater.service.functions import DbFunctions
from headwater.service.hooks import App, Context, RpcSpec

_encode = msgspec.json.Encoder(decimal_format="number").encode


def find_rpc(app: App, name: str) -> RpcSpec:
    spec = app.rpcs.get(name)
    if spec is None:
        raise NotFound(f"Could not find the function public.{name} in the schema cache",
                       code="PGRST202",
                       hint=("Perhaps you meant one of: " + ", ".join(sorted(app.rpcs)))
                       if app.rpcs else None)
    return spec


def check_args(spec: RpcSpec, args: Mapping[str, Any], *, from_text: bool) -> dict[str, Any]:
    """Arguments → the declared types; every problem reported at once, each naming its field."""
    problems: list[str] = []
    out: dict[str, Any] = {}
    for name, value in args.items():
        if name not in spec.params:
            problems.append(f"{name}: unexpected argument")
            continue
        try:
            out[name] = msgspec.convert(value, spec.params[name], strict=not from_text)
        except msgspec.ValidationError as exc:
            problems.append(f"{name}: {exc}")
            continue
        v = out[name]
        if isinstance(v, int) and not isinstance(v, bool) and not -2**63 <= v < 2**63:
            # no database column holds it; reject it here rather than fail in the driver
            problems.append(f"{name}: integer out of range (64-bit)")
    missing = sorted(spec.required - set(args))
    if missing:
        # PostgREST: no function takes these arguments, so none is found (404)
        raise NotFound(f"Could not find the function {spec.name}({', '.join(sorted(args))}) "
                       "with these arguments", code="PGRST202",
                       details="missing required argument: " + ", ".join(missing),
                       hint=f"{spec.name} takes " + ", ".join(spec.params))
    if problems:
        raise InvalidBody(f"Invalid arguments for {spec.name}", details="; ".join(problems),
                          code="22P02")
    return out


async def call_rpc(db: Database, spec: RpcSpec, args: dict[str, Any], *, principal: Principal,
                   request_id: str | None, rollback: bool = False,
                   on_commit: Callable[[frozenset[str] | None], Awaitable[None]] | None = None,
                   recorder: Recorder | None = None, catalog: Catalog | None = None) -> bytes:
    """Run ``spec`` in one transaction. Rows it writes by SQL reach the outbox only through
    ``ctx.emit`` (recorded in one statement before commit)."""
    events = None
    if recorder is not None and recorder.enabled:
        if not recorder.outbox.ready:
            await recorder.outbox.ensure(db)
        events = EventBuffer(recorder, principal_json(principal), catalog)
    recorded = False
    async with db.transaction(rollback=rollback) as tx:
        ctx = Context(principal, None, tx, request_id, events=events)
        result = await spec.fn(ctx, **args)
        if events is not None and events.records:
            recorded = True
            await events.flush(tx, last=True)
    if recorded and not rollback and recorder is not None:
        recorder.outbox.committed()
    if ctx.wrote and not rollback and on_commit is not None:
        await on_commit(None)  # which tables it wrote is unknown
    return _encode(result)


class Rpc:
    """The user's Python functions as the endpoints call them: found by name, run in one
    transaction with the process's event recorder, their writes invalidating the cache."""

    def __init__(self, db: Database, app: App, *, recorder: Recorder,
                 catalog: Callable[[], Catalog | None],
                 on_commit: Callable[[frozenset[str] | None], Awaitable[None]]) -> None:
        self.db = db
        self.app = app
        self.recorder = recorder
        self.catalog = catalog
        self.on_commit = on_commit
        #: The database's own functions, served where no Python function has the name.
        self.functions = DbFunctions(db, catalog, max_rows=db.settings.max_rows,
                                     aggregates=db.settings.aggregates_enabled,
                                     on_commit=on_commit, recorder=recorder)

    def shadowed(self) -> list[str]:
        """Database functions a Python function of the same name hides (warned at start)."""
        return sorted(self.functions.names() & set(self.app.rpcs))

    def find(self, name: str) -> RpcSpec:
        return find_rpc(self.app, name)

    async def call(self, spec: RpcSpec, args: dict[str, Any], *, principal: Principal,
                   request_id: str | None, rollback: bool = False) -> bytes:
        return await call_rpc(self.db, spec, args, principal=principal, request_id=request_id,
                              rollback=rollback,
                              on_commit=None if spec.read_only else self.on_commit,
                              recorder=self.recorder, catalog=self.catalog())
