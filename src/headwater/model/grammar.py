"""PostgREST's query grammar: query string and headers → a typed ``ApiRequest`` (pure).

Every function here is total: any input either parses or raises ``ParseError`` (or one of
its siblings from ``headwater.errors``), never anything else. ``render_*`` functions are the
inverse, used by the client and by the property tests (``parse(render(x)) == x``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from urllib.parse import unquote_plus

from headwater.errors import InvalidRange, NotAcceptable, ParseError
from headwater.model.request import (
    Condition,
    Embed,
    Field,
    Logic,
    MediaType,
    OrderTerm,
    Path,
    Predicate,
    Preferences,
    Query,
    SelectItem,
)

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
#: Bounds on what one request may ask for, so hostile input gets a 400 rather than deep
#: recursion here or an expression too large for the database.
MAX_DEPTH = 32
MAX_CONDITIONS = 500
#: Order terms in one request, all paths together (SQLite refuses more than 2,000 in one
#: statement; nobody sorts by more than a handful of columns).
MAX_ORDER_TERMS = 100

#: Characters no identifier may hold: C0 and C1 controls (PostgreSQL cannot take a NUL in a
#: statement's text at all) and lone surrogates (not encodable as UTF-8).
_BAD_NAME_CHAR = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

# Characters that end a bare name inside select/logic expressions.
_NAME_STOP = set(",()!:.\"")


# --- the scanner ------------------------------------------------------------------------------

def check_name(name: str, what: str) -> str:
    """``name`` as given, or a ``ParseError`` when it holds a character no database takes in
    an identifier; such a name must never reach the database (a NUL there is a protocol
    error on PostgreSQL and a 500 on SQLite)."""
    bad = _BAD_NAME_CHAR.search(name)
    if bad is not None:
        raise ParseError(
            f'"failed to parse {what}": a name may not contain control characters',
            details=f"{name[:40]!r} holds U+{ord(bad[0]):04X} at position {bad.start() + 1}",
            hint="names are printable text; percent-encode only printable characters")
    return name


class _Scanner:
    """A cursor over one parameter value, with errors that point at the offending spot."""

    __slots__ = ("depth", "pos", "text", "what")

    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.pos = 0
        self.what = what
        self.depth = 0

    def enter(self) -> None:
        """One level deeper into ``(...)``; refuses nesting past ``MAX_DEPTH``."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError(f'"failed to parse {self.what}": nested more than {MAX_DEPTH} '
                             "levels deep", details=f"at column {self.pos + 1}")

    def error(self, expected: str) -> ParseError:
        found = self.text[self.pos:self.pos + 10] or "end of input"
        return ParseError(
            f'"failed to parse {self.what} ({self.text})" (line 1, column {self.pos + 1})',
            details=f"unexpected \"{found}\" expecting {expected}",
        )

    def peek(self, s: str) -> bool:
        return self.text.startswith(s, self.pos)

    def eat(self, s: str) -> bool:
        if self.text.startswith(s, self.pos):
            self.pos += len(s)
            return True
        return False

    def expect(self, s: str) -> None:
        if not self.eat(s):
            raise self.error(f'"{s}"')

    @property
    def done(self) -> bool:
        return self.pos >= len(self.text)

    def name(self) -> str:
        """A bare identifier, or a double-quoted one (``""`` not allowed); never one with a
        control character in it (``check_name``)."""
        if self.peek('"'):
            return check_name(self.quoted(), self.what)
        start = self.pos
        text = self.text
        while self.pos < len(text) and text[self.pos] not in _NAME_STOP:
            self.pos += 1
        out = text[start:self.pos].strip()
        if not out:
            raise self.error("a name")
        return check_name(out, self.what)

    def quoted(self) -> str:
        self.expect('"')
        out: list[str] = []
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == "\\" and self.pos + 1 < len(text):
                out.append(text[self.pos + 1])
                self.pos += 2
                continue
            if ch == '"':
                self.pos += 1
                return "".join(out)
            out.append(ch)
            self.pos += 1
        raise self.error('closing "')

    def value(self, stops: str) -> str:
        """A literal inside a list or logic tree: quoted, or bare up to a stop character."""
        if self.peek('"'):
            return self.quoted()
        start = self.pos
        text = self.text
        depth = 0
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == "(":
                depth += 1
            elif ch == ")":
                if depth == 0 and ")" in stops:
                    break
                depth -= 1
            elif ch in stops and depth == 0:
                break
            self.pos += 1
        return text[start:self.pos]


# --- select -----------------------------------------------------------------------------------

def parse_select(text: str) -> tuple[SelectItem, ...]:
    sc = _Scanner(text, "select")
    items = _select_list(sc, top=True)
    if not sc.done:
        raise sc.error('"," or end of input')
    return items


def _select_list(sc: _Scanner, *, top: bool) -> tuple[SelectItem, ...]:
    items: list[SelectItem] = []
    if (top and sc.done) or sc.peek(")"):
        return ()
    while True:
        items.append(_select_item(sc))
        if not sc.eat(","):
            return tuple(items)


def _select_item(sc: _Scanner) -> SelectItem:
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


def _render_name(name: str) -> str:
    if (name and not (set(name) & (_NAME_STOP | {"*", "\\"})) and name == name.strip()
            and name != "not"):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render_item(item: SelectItem) -> str:
    if isinstance(item, Field):
        if item.name == "*":
            return "*"
        prefix = f"{_render_name(item.alias)}:" if item.alias else ""
        return prefix + _render_name(item.name)
    prefix = f"{_render_name(item.alias)}:" if item.alias else ""
    hint = f"!{_render_name(item.hint)}" if item.hint else ""
    inner = "!inner" if item.inner else ""
    return f"{prefix}{_render_name(item.name)}{hint}{inner}({render_select(item.select)})"


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
    return _condition(column, op, value, negated, modifier)


def _condition(column: str, op: str, value: str, negated: bool,
               modifier: str | None = None) -> Condition:
    if op == "in":
        return Condition(column, op, _parse_list(value), negated)
    if op == "is" and value not in IS_VALUES:
        raise ParseError(
            f'"failed to parse filter (is.{value})" (line 1, column 4)',
            details="is. takes null, not_null, true, false or unknown")
    if modifier in QUANTIFIERS:
        return Condition(column, op, parse_array(value), negated, modifier)
    return Condition(column, op, value, negated, modifier)


def parse_array(text: str) -> tuple[str, ...]:
    """``{a,"b,c",d}``: the list a quantified operator (``like(any)``) takes, as PostgreSQL
    writes an array literal (double quotes around an element with a comma or brace)."""
    sc = _Scanner(text, "array")
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
    sc = _Scanner(text, "in list")
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
    sc = _Scanner(text, "logic tree")
    sc.expect("(")
    items = _logic_items(sc)
    if not sc.done:
        raise sc.error("end of input")
    return Logic("or" if op == "or" else "and", items, negated)


def _logic_items(sc: _Scanner) -> tuple[Predicate, ...]:
    items: list[Predicate] = []
    while True:
        items.append(_logic_item(sc))
        if sc.eat(")"):
            return tuple(items)
        sc.expect(",")


def _logic_item(sc: _Scanner) -> Predicate:
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
        return Condition(column, op, _parse_list(sc.text[vstart:sc.pos]), neg)
    if sc.peek("{"):
        # an array literal (``cs.{1,2}``, ``like(any).{a,b}``) holds commas of its own
        vstart = sc.pos
        sc.pos += 1
        _skip_balanced(sc, "{", "}")
        value = sc.text[vstart:sc.pos]
    else:
        value = sc.value(",)")
    return _condition(column, op, value, neg, modifier)


def _skip_balanced(sc: _Scanner, left: str, right: str) -> None:
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
            parts.append(f"{_render_name(item.column)}.{render_condition(item, in_tree=True)}")
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
            sc = _Scanner(term, "order")
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
        terms.append(OrderTerm(check_name(column, "order"), m["dir"] == "desc",
                               None if nulls is None else ("first" if nulls == "nullsfirst"
                                                           else "last")))
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
        s = _render_key_name(t.column) + (".desc" if t.desc else "")
        if t.nulls:
            s += ".nulls" + t.nulls
        out.append(s)
    return ",".join(out)


def _render_key_name(name: str) -> str:
    """A name in a parameter key or in ``order=``: bare unless it needs quotes there."""
    if (name and not name.startswith('"') and "." not in name and "," not in name
            and name == name.strip() and name not in RESERVED and name not in ("limit", "offset")):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- the whole query string -------------------------------------------------------------------

def parse_names(key: str, text: str) -> tuple[str, ...]:
    """``a,"b c",d``: the column lists of ``columns=`` and ``on_conflict=``."""
    sc = _Scanner(text, key)
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
    sc = _Scanner(key, "parameter name")
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
                pairs.append((prefix + _render_key_name(pred.column), render_condition(pred)))
    for path, terms in query.order.items():
        pairs.append((_render_path(path) + "order", render_order(terms)))
    for path, n in query.limit.items():
        pairs.append((_render_path(path) + "limit", str(n)))
    for path, n in query.offset.items():
        pairs.append((_render_path(path) + "offset", str(n)))
    if query.on_conflict:
        pairs.append(("on_conflict", ",".join(map(_render_name, query.on_conflict))))
    if query.columns:
        pairs.append(("columns", ",".join(map(_render_name, query.columns))))
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


# --- headers ----------------------------------------------------------------------------------

_PREFER_VALUES: dict[str, frozenset[str]] = {
    "count": frozenset({"exact", "planned", "estimated"}),
    "return": frozenset({"minimal", "headers-only", "representation"}),
    "resolution": frozenset({"merge-duplicates", "ignore-duplicates"}),
    "missing": frozenset({"default", "null"}),
    "handling": frozenset({"lenient", "strict"}),
    "tx": frozenset({"commit", "rollback"}),
}


def parse_prefer(headers: Iterable[str]) -> Preferences:
    found: dict[str, str] = {}
    invalid: list[str] = []
    for header in headers:
        for part in header.split(","):
            name, _, val = part.strip().partition("=")
            name, val = name.strip().lower(), val.strip()
            if not name:
                continue
            if name == "max-affected":
                if val.isascii() and val.isdigit() and len(val) < 12:
                    found[name] = val
                else:
                    invalid.append(part.strip())
            elif name in _PREFER_VALUES and val in _PREFER_VALUES[name]:
                found[name] = val
            else:
                invalid.append(part.strip())
    prefs = Preferences(
        count=found.get("count"),  # type: ignore[arg-type]
        returning=found.get("return"),  # type: ignore[arg-type]
        resolution=found.get("resolution"),  # type: ignore[arg-type]
        missing=found.get("missing"),  # type: ignore[arg-type]
        handling=found.get("handling"),  # type: ignore[arg-type]
        max_affected=int(found["max-affected"]) if "max-affected" in found else None,
        tx=found.get("tx"),  # type: ignore[arg-type]
    )
    if invalid and prefs.handling == "strict":
        raise ParseError("Invalid preferences given with handling=strict",
                         details="Invalid preferences: " + ", ".join(invalid), code="PGRST122")
    return prefs


_MEDIA: dict[str, MediaType] = {
    "application/json": "json",
    "application/*": "json",
    "*/*": "json",
    "application/vnd.pgrst.object+json": "object",
    "application/vnd.pgrst.object": "object",
    "text/csv": "csv",
}


def parse_accept(header: str | None) -> MediaType:
    """The first acceptable media type by q-value; 406 when none is one we produce."""
    if not header or not header.strip():
        return "json"
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            k, _, v = p.partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if media:
            ranked.append((-q, i, media.lower()))
    for negq, _, media in sorted(ranked):
        if negq < 0 and media in _MEDIA:
            return _MEDIA[media]
    raise NotAcceptable(f"None of these media types are available: {header}")


_RANGE = re.compile(r"^\s*(?:items=)?(\d{1,18})-(\d{0,18})\s*$")


def parse_range(header: str | None) -> tuple[int, int | None] | None:
    """``Range: 0-9`` (items); a malformed header is ignored, as HTTP asks."""
    if not header:
        return None
    m = _RANGE.match(header)
    if m is None:
        return None
    first = int(m[1])
    last = int(m[2]) if m[2] else None
    if last is not None and last < first:
        raise InvalidRange("Requested range not satisfiable",
                           details=f"the range {header!r} ends before it starts")
    return first, last
