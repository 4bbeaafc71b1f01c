"""The ``select=`` grammar: columns, casts, JSON paths, aggregates, aliases, embeds with
hints, spreads (pure); and the JSON paths filters and ``order=`` share with it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal, cast

from headwater.model.request import (
    AGGREGATES,
    Aggregate,
    Embed,
    Field,
    JsonPath,
    SelectItem,
    is_index,
)
from headwater.model.scanner import Scanner, render_name

#: What may follow ``::``: a type's name, words separated by single spaces
#: (``double precision``), optionally an array (``text[]``).
_CAST = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?: [A-Za-z_][A-Za-z0-9_]*)*(?:\[\])?")


def parse_select(text: str) -> tuple[SelectItem, ...]:
    sc = Scanner(text, "select")
    items = _select_list(sc, top=True)
    if not sc.done:
        raise sc.error('"," or end of input')
    return items


def _select_list(sc: Scanner, *, top: bool) -> tuple[SelectItem, ...]:
    items: list[SelectItem] = []
    if (top and sc.done) or sc.peek(")"):
        return ()
    while True:
        items.append(_select_item(sc))
        if not sc.eat(","):
            return tuple(items)


def json_path(sc: Scanner) -> JsonPath:
    """``->key``, ``->>key``, ``->0`` steps after a column name (none: ``()``)."""
    steps: list[tuple[Literal["->", "->>"], str]] = []
    while sc.peek("->"):
        arrow: Literal["->", "->>"] = "->>" if sc.eat("->>") else "->"
        if arrow == "->":
            sc.pos += 2
        start = sc.pos
        key = sc.name()
        if key.startswith("-") and not sc.text.startswith('"', start) and not is_index(key):
            # ``-`` starts a negative array index only (PostgREST: "expecting digit")
            sc.pos = start + 1
            raise sc.error("digit")
        steps.append((arrow, key))
    return tuple(steps)


def _cast(sc: Scanner) -> str | None:
    if not sc.eat("::"):
        return None
    m = _CAST.match(sc.text, sc.pos)
    if m is None:
        raise sc.error("a type name after ::")
    sc.pos = m.end()
    return m[0]


def _aggregate(sc: Scanner) -> Aggregate | None:
    """``.sum()`` after a field, or nothing."""
    if not sc.peek("."):
        return None
    start = sc.pos
    sc.pos += 1
    word = sc.name()
    if word not in AGGREGATES or not sc.eat("()"):
        sc.pos = start
        raise sc.error("an aggregate: .count(), .sum(), .avg(), .min() or .max()")
    return cast(Aggregate, word)


def _select_item(sc: Scanner) -> SelectItem:
    if sc.eat("*"):
        return Field("*")
    spread = sc.eat("...")
    if not spread and sc.eat("count()"):
        # bare, as PostgREST reads it: an embed named count is written "count"(...)
        return Field("", None, aggregate="count", agg_cast=_cast(sc))
    first = sc.name()
    alias: str | None = None
    if sc.peek(":") and not sc.peek("::"):
        if spread:
            raise sc.error('"(" after the spread embed')
        sc.pos += 1
        alias = first
        if sc.peek("..."):
            raise sc.error("a name (a spread embed takes no alias)")
        if sc.eat("count()"):
            return Field("", alias, aggregate="count", agg_cast=_cast(sc))
        first = sc.name()
    json = json_path(sc)
    if json or sc.peek("::") or sc.peek("."):
        cast_to = _cast(sc)
        aggregate = _aggregate(sc)
        agg_cast = _cast(sc) if aggregate else None
        if spread:
            raise sc.error('"(" after the spread embed')
        return Field(first, alias, json, cast_to, aggregate, agg_cast)
    hint: str | None = None
    inner = False
    while sc.eat("!"):
        word = sc.name()
        if word == "inner":
            inner = True
        elif word == "left":
            inner = False
        elif hint is None:
            hint = word
        else:
            raise sc.error('"(" after the embedding hint')
    if sc.eat("("):
        sc.enter()
        sub = _select_list(sc, top=False)
        sc.depth -= 1
        sc.expect(")")
        return Embed(first, sub, alias=alias, hint=hint, inner=inner, spread=spread)
    if hint is not None or inner or spread:
        raise sc.error('"(" after the embedding hint')
    if first == "*":
        raise sc.error("a column name")
    return Field(first, alias)


def split_json(text: str, what: str) -> tuple[str, JsonPath]:
    """A filter's or an order term's column, ``data->a->>b``, into the name and its path."""
    if "->" not in text:
        return text, ()
    sc = Scanner(text, what)
    name = sc.name()
    path = json_path(sc)
    if not sc.done:
        raise sc.error("->, ->> or the end of the column")
    return name, path


def render_json(path: JsonPath) -> str:
    return "".join(arrow + (key if is_index(key) else _render_key(key)) for arrow, key in path)


def _render_key(key: str) -> str:
    out = render_name(key)
    return f'"{key}"' if out == key and key.startswith("-") else out


def render_select(items: Sequence[SelectItem]) -> str:
    return ",".join(_render_item(i) for i in items)


def _render_item(item: SelectItem) -> str:
    prefix = f"{render_name(item.alias)}:" if item.alias else ""
    if isinstance(item, Field):
        if item.name == "*":
            return "*"
        if item.name == "" and item.aggregate == "count":
            return prefix + "count()" + (f"::{item.agg_cast}" if item.agg_cast else "")
        out = prefix + render_name(item.name) + render_json(item.json)
        if item.cast:
            out += f"::{item.cast}"
        if item.aggregate:
            out += f".{item.aggregate}()"
            if item.agg_cast:
                out += f"::{item.agg_cast}"
        return out
    hint = f"!{render_name(item.hint)}" if item.hint else ""
    inner = "!inner" if item.inner else ""
    spread = "..." if item.spread else ""
    name = render_name(item.name)
    if name == "count" and not (hint or inner or item.select):
        name = '"count"'  # ``count()`` is the aggregate
    return f"{spread}{prefix}{name}{hint}{inner}({render_select(item.select)})"
