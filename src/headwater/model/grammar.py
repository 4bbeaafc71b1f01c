"""PostgREST's query grammar: the query string → a typed ``Query`` (pure).

Every function here is total: any input either parses or raises ``ParseError`` (or one of
its siblings from ``headwater.errors``), never anything else. ``render_*`` functions are the
inverse, used by the client and by the property tests (``parse(render(x)) == x``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote_plus

from headwater.errors import InvalidRange, ParseError
from headwater.model.request import (
    Condition,
    Field,
    JsonPath,
    Logic,
    OrderTerm,
    Path,
    Predicate,
    Query,
    SelectItem,
)
from headwater.model.scanner import Scanner, check_name, render_name
from headwater.model.select import json_path, parse_select, render_json, render_select, split_json

#: Binary operators whose value is a single literal.
SCALAR_OPS = frozenset({"eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "isdistinct",
                        "match", "imatch"})
#: Full-text search (``fts(english).word``): the parentheses name a text search configuration.
FTS_OPS = frozenset({"fts", "plfts", "phfts", "wfts"})
#: Containment and overlap: arrays (``{1,2}``), ranges (``[1,2)``) and, on SQLite, JSON arrays.
ARRAY_OPS = frozenset({"cs", "cd", "ov"})
#: Range positions (PostgreSQL ranges only).
RANGE_OPS = frozenset({"sl", "sr", "nxl", "nxr", "adj"})
#: Operators that take ``(any)`` or ``(all)`` and then a ``{a,b}`` list, as in PostgREST.
QUANTIFIABLE = frozenset({"eq", "gt", "gte", "lt", "lte", "like", "ilike", "match", "imatch"})
QUANTIFIERS = frozenset({"any", "all"})
IS_VALUES = frozenset({"null", "not_null", "true", "false", "unknown"})
OPS = SCALAR_OPS | FTS_OPS | ARRAY_OPS | RANGE_OPS | {"in", "is"}
RESERVED = frozenset({"select", "order", "limit", "offset", "on_conflict", "columns", "or", "and",
                      "not.or", "not.and"})
#: Conditions in one request, so hostile input gets a 400 rather than an expression too large
#: for the database.
MAX_CONDITIONS = 500
#: Order terms in one request, all paths together (SQLite refuses more than 2,000 in one
#: statement; nobody sorts by more than a handful of columns).
MAX_ORDER_TERMS = 100

# --- filters ----------------------------------------------------------------------------------

def _unknown_op(column: str, text: str) -> ParseError:
    return ParseError(
        f'"failed to parse filter ({text})" (line 1, column 1)',
        details=f"unknown or missing operator in {column}={text}",
        hint="operators: " + ", ".join(sorted(OPS)) + "; like(any), fts(english) and the "
             "like take a modifier in parentheses")


def split_op(token: str) -> tuple[str, str | None] | None:
    """``like(any)`` → (``like``, ``any``); ``fts(english)`` → (``fts``, ``english``);
    ``eq`` → (``eq``, None); None when the token is no operator."""
    op, paren, rest = token.partition("(")
    if op not in OPS:
        return None
    if not paren:
        return op, None
    if not rest.endswith(")") or not rest[:-1] or set(rest[:-1]) & set('(),."'):
        return None
    modifier = rest[:-1]
    if op in FTS_OPS:
        check_name(modifier, "filter")
        return op, modifier
    if op in QUANTIFIABLE and modifier in QUANTIFIERS:
        return op, modifier
    return None


def parse_filter(column: str, text: str) -> Condition:
    """``col=[not.]op.value`` as in the query string (the value is taken literally)."""
    negated = False
    rest = text
    if rest.startswith("not."):
        negated, rest = True, rest[4:]
    token, dot, value = rest.partition(".")
    split = split_op(token) if dot else None
    if split is None:
        raise _unknown_op(column, text)
    op, modifier = split
    name, json = split_json(column, "filter")
    return _condition(name, op, value, negated, modifier, json)


def _condition(column: str, op: str, value: str, negated: bool,
               modifier: str | None = None, json: JsonPath = ()) -> Condition:
    if op == "in":
        return Condition(column, op, _parse_list(value), negated, json=json)
    if op == "is" and value not in IS_VALUES:
        raise ParseError(
            f'"failed to parse filter (is.{value})" (line 1, column 4)',
            details="is. takes null, not_null, true, false or unknown")
    if modifier in QUANTIFIERS:
        return Condition(column, op, parse_array(value), negated, modifier, json)
    return Condition(column, op, value, negated, modifier, json)


def parse_array(text: str) -> tuple[str, ...]:
    """``{a,"b,c",d}``: the list a quantified operator (``like(any)``) takes, as PostgreSQL
    writes an array literal (double quotes around an element with a comma or brace)."""
    sc = Scanner(text, "array")
    sc.expect("{")
    out: list[str] = []
    if sc.eat("}"):
        if not sc.done:
            raise sc.error("end of input")
        return ()
    while True:
        out.append(sc.value(",}"))
        if sc.eat("}"):
            break
        sc.expect(",")
    if not sc.done:
        raise sc.error("end of input")
    return tuple(out)


def _parse_list(text: str) -> tuple[str, ...]:
    sc = Scanner(text, "in list")
    sc.expect("(")
    out: list[str] = []
    if sc.eat(")"):
        if not sc.done:
            raise sc.error("end of input")
        return ()
    while True:
        out.append(sc.value(",)"))
        if sc.eat(")"):
            break
        sc.expect(",")
    if not sc.done:
        raise sc.error("end of input")
    return tuple(out)


def parse_logic(key: str, text: str) -> Logic:
    """``or=(a.eq.1,and(b.gt.2,c.is.null))``; ``key`` is ``or``/``and``/``not.or``/``not.and``."""
    negated = key.startswith("not.")
    op = key[4:] if negated else key
    sc = Scanner(text, "logic tree")
    sc.expect("(")
    items = _logic_items(sc)
    if not sc.done:
        raise sc.error("end of input")
    return Logic("or" if op == "or" else "and", items, negated)


def _logic_items(sc: Scanner) -> tuple[Predicate, ...]:
    items: list[Predicate] = []
    while True:
        items.append(_logic_item(sc))
        if sc.eat(")"):
            return tuple(items)
        sc.expect(",")


def _logic_item(sc: Scanner) -> Predicate:
    negated = sc.eat("not.")
    for op in ("and", "or"):
        if sc.eat(op + "("):
            sc.enter()
            items = _logic_items(sc)
            sc.depth -= 1
            return Logic("and" if op == "and" else "or", items, negated)
    if negated:
        # ``not.`` in front of a condition's column is not PostgREST; it goes before the op.
        raise sc.error('"and(" or "or("')
    column = sc.name()
    json = json_path(sc)
    sc.expect(".")
    neg = sc.eat("not.")
    start = sc.pos
    word = sc.name()
    token = word
    if sc.peek("("):
        close = sc.text.find(")", sc.pos)
        if close < 0:
            raise sc.error('")"')
        token = word + sc.text[sc.pos:close + 1]
        sc.pos = close + 1
    split = split_op(token)
    if split is None:
        sc.pos = start
        raise sc.error("an operator (" + ", ".join(sorted(OPS)) + ")")
    op, modifier = split
    sc.expect(".")
    if op == "in":
        vstart = sc.pos
        sc.expect("(")
        _skip_balanced(sc, "(", ")")
        return Condition(column, op, _parse_list(sc.text[vstart:sc.pos]), neg, json=json)
    if sc.peek("{"):
        # an array literal (``cs.{1,2}``, ``like(any).{a,b}``) holds commas of its own
        vstart = sc.pos
        sc.pos += 1
        _skip_balanced(sc, "{", "}")
        value = sc.text[vstart:sc.pos]
    else:
        value = sc.value(",)")
    return _condition(column, op, value, neg, modifier, json)


def _skip_balanced(sc: Scanner, left: str, right: str) -> None:
    """Past the ``right`` that closes an already opened ``left``, skipping quoted text."""
    depth = 1
    in_quote = False
    while not sc.done and depth:
        ch = sc.text[sc.pos]
        if in_quote:
            if ch == "\\":
                sc.pos += 1
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == left:
            depth += 1
        elif ch == right:
            depth -= 1
        sc.pos += 1
    if depth:
        raise sc.error(f'"{right}"')


def _render_value(value: str, *, in_tree: bool) -> str:
    if not in_tree:
        return value  # a plain filter's value is taken literally
    if value and not (set(value) & set(',()"\\')) and value == value.strip():
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render_element(value: str) -> str:
    if value and not (set(value) & set(',{}()"\\ ')) and value.upper() != "NULL":
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_condition(cond: Condition, *, in_tree: bool = False) -> str:
    neg = "not." if cond.negated else ""
    op = cond.op + (f"({cond.modifier})" if cond.modifier else "")
    if isinstance(cond.value, tuple) and cond.op == "in":
        body = "(" + ",".join(_render_value(v, in_tree=True) for v in cond.value) + ")"
    elif isinstance(cond.value, tuple):
        body = "{" + ",".join(_render_element(v) for v in cond.value) + "}"
    elif in_tree and cond.value.startswith("{"):
        body = '"' + cond.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        body = _render_value(cond.value, in_tree=in_tree)
    return f"{neg}{op}.{body}"


def render_logic(logic: Logic, *, nested: bool = False) -> str:
    parts = []
    for item in logic.items:
        if isinstance(item, Logic):
            parts.append(render_logic(item, nested=True))
        else:
            parts.append(f"{render_name(item.column)}{render_json(item.json)}."
                         f"{render_condition(item, in_tree=True)}")
    body = "(" + ",".join(parts) + ")"
    if nested:
        return ("not." if logic.negated else "") + logic.op + body
    return body


def logic_key(logic: Logic) -> str:
    return ("not." if logic.negated else "") + logic.op


# --- order ------------------------------------------------------------------------------------

_ORDER_TERM = re.compile(r"^(?P<col>[^.]+?)(?:\.(?P<dir>asc|desc))?(?:\.(?P<nulls>nullsfirst|nullslast))?$")
_ORDER_MODIFIERS = re.compile(r"^(?:\.(?P<dir>asc|desc))?(?:\.(?P<nulls>nullsfirst|nullslast))?$")


def parse_order(text: str) -> tuple[OrderTerm, ...]:
    terms: list[OrderTerm] = []
    for raw in _order_terms(text):
        term = raw.strip()
        if term.startswith('"'):
            # a quoted name (``"Company Name".desc``) may hold dots and commas of its own
            sc = Scanner(term, "order")
            column = check_name(sc.quoted(), "order")
            m = _ORDER_MODIFIERS.match(term[sc.pos:])
        else:
            m = _ORDER_TERM.match(term)
            column = m["col"] if m is not None else ""
        if m is None:
            raise ParseError(f'"failed to parse order ({text})" (line 1, column 1)',
                             details=f"unexpected \"{raw}\" expecting column[.asc|.desc]"
                                     "[.nullsfirst|.nullslast]")
        nulls = m["nulls"]
        json: JsonPath = ()
        if not term.startswith('"'):
            column, json = split_json(column, "order")
        terms.append(OrderTerm(check_name(column, "order"), m["dir"] == "desc",
                               None if nulls is None else ("first" if nulls == "nullsfirst"
                                                           else "last"), json))
    return tuple(terms)


def _order_terms(text: str) -> list[str]:
    """``order=`` split at its commas, except those inside a quoted name."""
    if '"' not in text:
        return text.split(",")
    out: list[str] = []
    start = 0
    in_quote = False
    i = 0
    while i < len(text):
        ch = text[i]
        if in_quote and ch == "\\":
            i += 1
        elif ch == '"' and (in_quote or not text[start:i].strip()):
            in_quote = not in_quote
        elif ch == "," and not in_quote:
            out.append(text[start:i])
            start = i + 1
        i += 1
    out.append(text[start:])
    return out


def render_order(terms: Iterable[OrderTerm]) -> str:
    out = []
    for t in terms:
        s = _render_key_name(t.column) + render_json(t.json) + (".desc" if t.desc else "")
        if t.nulls:
            s += ".nulls" + t.nulls
        out.append(s)
    return ",".join(out)


def _render_key_name(name: str) -> str:
    """A name in a parameter key or in ``order=``: bare unless it needs quotes there."""
    if (name and not name.startswith('"') and "." not in name and "," not in name
            and name == name.strip() and name not in RESERVED and name not in ("limit", "offset")
            and "->" not in name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- the whole query string -------------------------------------------------------------------

def parse_names(key: str, text: str) -> tuple[str, ...]:
    """``a,"b c",d``: the column lists of ``columns=`` and ``on_conflict=``."""
    sc = Scanner(text, key)
    names: list[str] = []
    while True:
        names.append(sc.name())
        if sc.done:
            return tuple(names)
        sc.expect(",")


def _non_negative(key: str, text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise ParseError(f'"failed to parse {key} ({text})"',
                         details=f"{key} must be a non-negative integer")
    return int(text)


def _split_key(key: str) -> tuple[Path, str]:
    """``customers.order_items.quantity`` → ((customers, order_items), quantity); a quoted
    part (``"Company Name"``, ``"a.b"``) is one name, quotes removed; a quoted last part
    comes back with one leading ``"`` (a column, whatever its name)."""
    check_name(key, "parameter name")
    if key.startswith('"') or '."' in key:
        return _split_quoted_key(key)
    if "." not in key:
        if not key:
            raise ParseError("bad parameter name ''")
        return (), key
    for logic in ("not.or", "not.and"):
        if key == logic or key.endswith("." + logic):
            head = key[: -len(logic)].rstrip(".")
            return (tuple(head.split(".")) if head else ()), logic
    parts = key.split(".")
    if any(p == "" for p in parts):
        raise ParseError(f"bad parameter name {key!r}")
    return tuple(parts[:-1]), parts[-1]


def _split_quoted_key(key: str) -> tuple[Path, str]:
    sc = Scanner(key, "parameter name")
    parts: list[str] = []
    while True:
        if sc.peek('"'):
            parts.append(check_name(sc.quoted(), "parameter name"))
        else:
            start = sc.pos
            while not sc.done and sc.text[sc.pos] != ".":
                sc.pos += 1
            part = key[start:sc.pos]
            if not part:
                raise ParseError(f"bad parameter name {key!r}",
                                 hint='quote a whole name: "Company Name"=eq.x')
            parts.append(part)
        if sc.done:
            break
        sc.expect(".")
    if key.endswith('"'):
        # a quoted last name is always a column, even one called "order" or "or"
        return tuple(parts[:-1]), '"' + parts[-1]
    if len(parts) >= 2 and parts[-2:] in (["not", "or"], ["not", "and"]):
        return tuple(parts[:-2]), "not." + parts[-1]
    return tuple(parts[:-1]), parts[-1]


def parse_query(pairs: Iterable[tuple[str, str]]) -> Query:
    select: tuple[SelectItem, ...] = (Field("*"),)
    where: dict[Path, list[Predicate]] = {}
    order: dict[Path, tuple[OrderTerm, ...]] = {}
    limit: dict[Path, int] = {}
    offset: dict[Path, int] = {}
    on_conflict: tuple[str, ...] | None = None
    columns: tuple[str, ...] | None = None
    for key, value in pairs:
        if key == "select":
            select = parse_select(value)
            continue
        if key in ("on_conflict", "columns"):
            names = parse_names(key, value)
            if key == "columns":
                columns = names
            else:
                on_conflict = names
            continue
        path, last = _split_key(key)
        if last.startswith('"'):
            where.setdefault(path, []).append(parse_filter(last[1:], value))
        elif last == "order":
            order[path] = parse_order(value)
        elif last == "limit":
            if value.startswith("-") and value[1:].isascii() and value[1:].isdigit():
                raise InvalidRange("Requested range not satisfiable",
                                   details="Limit should be greater than or equal to zero.")
            limit[path] = _non_negative("limit", value)
        elif last == "offset":
            offset[path] = _non_negative("offset", value)
        elif last in ("or", "and", "not.or", "not.and"):
            where.setdefault(path, []).append(parse_logic(last, value))
        else:
            where.setdefault(path, []).append(parse_filter(last, value))
    if sum(_conditions(p) for preds in where.values() for p in preds) > MAX_CONDITIONS:
        raise ParseError(f"too many filter conditions (at most {MAX_CONDITIONS})",
                         hint="use in.(...) for long lists of values")
    if sum(len(terms) for terms in order.values()) > MAX_ORDER_TERMS:
        raise ParseError(f"too many order terms (at most {MAX_ORDER_TERMS})",
                         details=f"{sum(len(t) for t in order.values())} terms in order=")
    return Query(select=select, where={k: tuple(v) for k, v in where.items()}, order=order,
                 limit=limit, offset=offset, on_conflict=on_conflict, columns=columns)


def _conditions(pred: Predicate) -> int:
    if isinstance(pred, Logic):
        return sum(_conditions(i) for i in pred.items)
    return 1


def render_query(query: Query) -> list[tuple[str, str]]:
    """Query → (key, value) pairs in a canonical order; ``parse_query`` inverts it."""
    pairs: list[tuple[str, str]] = []
    if query.select != (Field("*"),):
        pairs.append(("select", render_select(query.select)))
    for path, preds in query.where.items():
        prefix = _render_path(path)
        for pred in preds:
            if isinstance(pred, Logic):
                pairs.append((prefix + logic_key(pred), render_logic(pred)))
            else:
                pairs.append((prefix + _render_key_name(pred.column) + render_json(pred.json),
                              render_condition(pred)))
    for path, terms in query.order.items():
        pairs.append((_render_path(path) + "order", render_order(terms)))
    for path, n in query.limit.items():
        pairs.append((_render_path(path) + "limit", str(n)))
    for path, n in query.offset.items():
        pairs.append((_render_path(path) + "offset", str(n)))
    if query.on_conflict:
        pairs.append(("on_conflict", ",".join(map(render_name, query.on_conflict))))
    if query.columns:
        pairs.append(("columns", ",".join(map(render_name, query.columns))))
    return pairs


def _render_path(path: Path) -> str:
    return "".join(_render_key_name(p) + "." for p in path)


def split_query_string(raw: str) -> list[tuple[str, str]]:
    """``a=1&b=x%20y`` → pairs, as ``urllib.parse.parse_qsl(keep_blank_values=True)`` gives
    them, but without its per-pair overhead when nothing needs unquoting (the common case)."""
    if not raw:
        return []
    pairs: list[tuple[str, str]] = []
    for part in raw.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        if "%" in part or "+" in part:
            key = unquote_plus(key)
            value = unquote_plus(value)
        pairs.append((key, value))
    return pairs
