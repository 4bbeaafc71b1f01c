"""The ``select=`` grammar: columns, aliases, embeds with hints (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from headwater.errors import ParseError
from headwater.model.request import Embed, Field, SelectItem
from headwater.model.scanner import Scanner, render_name


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


def _select_item(sc: Scanner) -> SelectItem:
    if sc.eat("*"):
        return Field("*")
    first = sc.name()
    alias: str | None = None
    if sc.peek(":") and not sc.peek("::"):
        sc.pos += 1
        alias, first = first, sc.name()
    if sc.peek("::"):
        raise ParseError("casts in select are not supported", details=f"column {first}")
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
        return Embed(first, sub, alias=alias, hint=hint, inner=inner)
    if hint is not None or inner:
        raise sc.error('"(" after the embedding hint')
    if first == "*":
        raise sc.error("a column name")
    return Field(first, alias)


def render_select(items: Sequence[SelectItem]) -> str:
    return ",".join(_render_item(i) for i in items)


def _render_item(item: SelectItem) -> str:
    if isinstance(item, Field):
        if item.name == "*":
            return "*"
        prefix = f"{render_name(item.alias)}:" if item.alias else ""
        return prefix + render_name(item.name)
    prefix = f"{render_name(item.alias)}:" if item.alias else ""
    hint = f"!{render_name(item.hint)}" if item.hint else ""
    inner = "!inner" if item.inner else ""
    return f"{prefix}{render_name(item.name)}{hint}{inner}({render_select(item.select)})"
