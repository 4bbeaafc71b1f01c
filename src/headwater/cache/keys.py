"""Cache keys (pure): from the normalized plan, or from the raw request as a fast path.

The normalized key is what entries are stored under, so the same query written two ways
(filters in another order, an ``or`` reordered, ``select=a,b`` spelled with spaces) shares one
entry. The raw key, a hash of the request exactly as sent, only points at a normalized key, so
a repeated request skips parsing and planning altogether.

Both keys always include the caller's access context: a cached response is never served to
a principal who could not have read it (invariant 1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from headwater.model.plan import (
    BoolExpr,
    Compare,
    Cond,
    EmbedExists,
    IsTest,
    JsonSteps,
    OutputColumn,
    ReadNode,
    ReadPlan,
    Value,
)


def _json(j: JsonSteps | None, params: Sequence[Value]) -> str:
    if j is None:
        return ""
    return repr(tuple(params[i] for i in j.params)) + (">>" if j.text else ">")


def _cond(c: Cond, params: Sequence[Value]) -> str:
    neg = "!" if c.negated else ""
    if isinstance(c, Compare):
        # every part of the shape that changes the SQL or its values: the quantifier, the
        # full-text configuration and the cast (arrays and ranges) besides the operator
        config = params[c.config] if c.config is not None else None
        return (f"{neg}{c.column}{_json(c.json, params)}:{c.op}:{c.quantifier}:{config!r}:"
                f"{c.cast}:{params[c.param]!r}")
    if isinstance(c, IsTest):
        return f"{neg}{c.column}{_json(c.json, params)}:is:{c.value}"
    if isinstance(c, BoolExpr):
        # AND and OR are commutative: sort their members.
        return f"{neg}{c.op}(" + ",".join(sorted(_cond(i, params) for i in c.items)) + ")"
    assert isinstance(c, EmbedExists)
    return f"{neg}exists({_node(c.node, params)})"


def _node(n: ReadNode, params: Sequence[Value]) -> str:
    outs = []
    for o in n.outputs:
        if isinstance(o, OutputColumn):
            out = o.column if o.key == o.column else f"{o.key}={o.column}"
            if o.json is not None or o.cast or o.aggregate or o.agg_cast:
                out += f"{_json(o.json, params)}::{o.cast}.{o.aggregate}::{o.agg_cast}"
            outs.append(out)
        else:
            outs.append(f"{'...' if o.spread else ''}{o.key}={_node(o.node, params)}")
    # an empty embed (``customers()``) shapes nothing but its ``!inner`` filter, in ``where``
    where = ",".join(sorted(_cond(c, params) for c in n.where))
    order = ",".join(f"{o.column}{_json(o.json, params)}:{int(o.desc)}:{o.nulls}"
                     for o in n.order)
    page = (params[n.limit] if n.limit is not None else None,
            params[n.offset] if n.offset is not None else None)
    join = ",".join(f"{a}={b}" for a, b in n.join)
    if n.via is not None:
        # a many-to-many embed: which junction, joined how, under which policy
        v = n.via
        join += (f"~{v.table}:" + ",".join(f"{a}={b}" for a, b in v.to_node) + ":"
                 + ",".join(f"{a}={b}" for a, b in v.to_parent) + ":"
                 + ",".join(sorted(_cond(c, params) for c in v.where)))
    if n.function is not None:
        join += f"~{n.function}()"
    return (f"{n.table}[{','.join(outs)}|{where}|{order}|{page}|{join}|{int(n.to_many)}"
            f"{int(n.inner)}]")


def canonical(plan: ReadPlan) -> str:
    p = plan.params
    return (f"{_node(plan.root, p)}#{p[plan.limit_param]!r}#{p[plan.offset_param]!r}"
            f"#{plan.count_kind if plan.count else 0}#{plan.media}")


def _digest(parts: Iterable[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part.encode("utf-8", "surrogateescape"))
        h.update(b"\x1f")
    return h.hexdigest()


def plan_key(plan: ReadPlan, context: str) -> str:
    return "q:" + _digest((context, canonical(plan)))


def raw_key(path: str, query: bytes, accept: bytes, prefer: bytes, range_: bytes,
            context: str) -> str:
    """The request exactly as sent (headers as raw bytes), digested in one call: this runs on
    every cached read before anything else."""
    return "r:" + hashlib.blake2b(b"\x1f".join((
        context.encode("utf-8", "surrogateescape"), path.encode("utf-8", "surrogateescape"),
        query, accept, prefer, range_)), digest_size=16).hexdigest()


def etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
