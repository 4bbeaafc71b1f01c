"""Parses query strings with Headwater's own grammar and prints what it understood, as JSON.

Used by contract.test.ts: the filter builder must produce exactly what the server parses.
Reads a JSON list of query strings on stdin; decodes them the way Starlette does.
"""

import json
import sys
from urllib.parse import parse_qsl

from headwater.model import grammar as g
from headwater.model.request import Logic


def pred(p):
    if isinstance(p, Logic):
        return {"l": p.op, "n": p.negated, "items": [pred(i) for i in p.items]}
    value = list(p.value) if isinstance(p.value, tuple) else p.value
    return {"c": p.column, "op": p.op, "v": value, "n": p.negated}


def describe(query_string):
    try:
        q = g.parse_query(parse_qsl(query_string, keep_blank_values=True))
    except Exception as e:  # any parse failure is reported to the test
        return {"error": f"{type(e).__name__}: {e}"}
    return {
        "select": g.render_select(q.select),
        "where": [pred(p) for p in q.where.get((), ())],
        "order": [{"c": t.column, "desc": t.desc, "nulls": t.nulls} for t in q.order.get((), ())],
        "limit": q.limit.get(()),
        "offset": q.offset.get(()),
    }


print(json.dumps([describe(s) for s in json.load(sys.stdin)]))
