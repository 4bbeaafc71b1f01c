"""Which of a view's columns are a table's column as they are: the key columns a view shows
carry the table's relationships (PostgREST's relationships through views).

PostgreSQL: the parser marks each output column of a query that is a plain column reference
with its origin (``resorigtbl``/``resorigcol``, what the wire protocol reports as a column's
table), followed through subqueries and joins; the view's stored rule keeps them, so they are
read from the rule's node tree (only the top query's target list). SQLite keeps no such thing:
the view's ``SELECT`` is parsed, conservatively. A column either parser cannot follow gets no
source, so no relationship, never a wrong one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence

Source = tuple[str, str]

# --- PostgreSQL: the rule's node tree -----------------------------------------------------------


def _node_tokens(text: str) -> Iterator[tuple[int, str]]:
    """(depth, token) of a node tree's text: ``{`` ``}`` ``(`` ``)`` or a word, its escapes
    (``\\``) removed; a double-quoted string is one word."""
    depth = 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "{(":
            depth += 1
            yield depth, ch
            i += 1
        elif ch in "})":
            yield depth, ch
            depth -= 1
            i += 1
        elif ch.isspace():
            i += 1
        else:
            word: list[str] = []
            quoted = ch == '"'
            if quoted:
                i += 1
            while i < n:
                ch = text[i]
                if ch == "\\" and i + 1 < n:
                    word.append(text[i + 1])
                    i += 2
                    continue
                if (quoted and ch == '"') or (not quoted and (ch.isspace() or ch in "{}()")):
                    break
                word.append(ch)
                i += 1
            if quoted:
                i += 1
            yield depth, "".join(word)


def pg_target_origins(ev_action: str) -> list[tuple[str, int, int]]:
    """(output column, origin relation oid, attribute number) for each column of a view's
    top query that is a plain column of a relation; the others are left out."""
    out: list[tuple[str, int, int]] = []
    tokens = _node_tokens(ev_action)
    query_depth: int | None = None
    for depth, tok in tokens:
        if query_depth is None:
            if tok == "QUERY":
                query_depth = depth
            continue
        if depth < query_depth:
            break
        if depth == query_depth and tok == ":targetList":
            out = _target_list(tokens, query_depth + 1)
            break
    return out


def _target_list(tokens: Iterator[tuple[int, str]], list_depth: int,
                 ) -> list[tuple[str, int, int]]:
    out: list[tuple[str, int, int]] = []
    entry: dict[str, str] = {}
    pending: str | None = None
    for depth, tok in tokens:
        if depth == list_depth and tok == ")":
            break
        if depth == list_depth + 1:
            if tok == "}":
                name, tbl, col = entry.get(":resname"), entry.get(":resorigtbl"), \
                    entry.get(":resorigcol")
                if (name and name != "<>" and entry.get(":resjunk") != "true" and tbl
                        and col and tbl.isdigit() and col.isdigit() and int(tbl)):
                    out.append((name, int(tbl), int(col)))
                entry = {}
                pending = None
            elif pending is not None:
                entry[pending] = tok
                pending = None
            elif tok.startswith(":"):
                pending = tok
        elif pending is not None:
            pending = None  # a field whose value is a node (``:expr {...}``)
    return out


# --- SQLite: the view's SELECT ------------------------------------------------------------------

_TOKEN = re.compile(r"""
    \s+ | --[^\n]* | /\*.*?\*/
  | (?P<q>"(?:[^"]|"")*" | `(?:[^`]|``)*` | \[[^\]]*\])
  | (?P<s>'(?:[^']|'')*')
  | (?P<w>[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*)
  | (?P<n>\d+(?:\.\d*)?(?:[eE][+-]?\d+)? | \.\d+)
  | (?P<p>\|\||<<|>>|<=|>=|==|!=|<>|->>|->|.)
""", re.X | re.S)

#: Words after which a name is no alias (they continue the FROM clause or end it).
_KEYWORDS = frozenset((
    "select", "from", "where", "group", "having", "order", "limit", "window", "union",
    "intersect", "except", "values", "with", "join", "inner", "left", "right", "full",
    "outer", "cross", "natural", "on", "using", "as", "and", "or", "not", "is", "in", "like",
    "glob", "match", "regexp", "between", "case", "when", "then", "else", "end", "exists",
    "collate", "escape", "indexed", "distinct", "all", "returning", "offset"))
_CLAUSE_END = frozenset({"where", "group", "having", "order", "limit", "window"})
_SET_OPS = frozenset({"union", "intersect", "except"})


class _Tok:
    __slots__ = ("kind", "text")

    def __init__(self, kind: str, text: str) -> None:
        self.kind = kind  # "name" (bare or quoted), "quoted", "string", "number", "punct"
        self.text = text

    @property
    def word(self) -> str:
        """A bare word, lowercased ("" for anything else)."""
        return self.text.lower() if self.kind == "name" else ""


def _tokenize(sql: str) -> list[_Tok] | None:
    out: list[_Tok] = []
    pos = 0
    while pos < len(sql):
        m = _TOKEN.match(sql, pos)
        if m is None:
            return None
        pos = m.end()
        if m.group("q") is not None:
            raw = m.group("q")
            body = raw[1:-1]
            if raw[0] == '"':
                body = body.replace('""', '"')
            elif raw[0] == "`":
                body = body.replace("``", "`")
            out.append(_Tok("quoted", body))
        elif m.group("w") is not None:
            out.append(_Tok("name", m.group("w")))
        elif m.group("s") is not None:
            out.append(_Tok("string", m.group("s")))
        elif m.group("n") is not None:
            out.append(_Tok("number", m.group("n")))
        elif m.group("p") is not None:
            out.append(_Tok("punct", m.group("p")))
    return out


def _is_name(t: _Tok) -> bool:
    return t.kind == "quoted" or (t.kind == "name" and t.word not in _KEYWORDS)


def _split(tokens: Sequence[_Tok], sep: str) -> list[list[_Tok]]:
    """``tokens`` split at ``sep`` outside parentheses."""
    parts: list[list[_Tok]] = [[]]
    depth = 0
    for t in tokens:
        if t.text == "(" and t.kind == "punct":
            depth += 1
        elif t.text == ")" and t.kind == "punct":
            depth -= 1
        if depth == 0 and t.kind == "punct" and t.text == sep:
            parts.append([])
        else:
            parts[-1].append(t)
    return parts


def sqlite_view_sources(sql: str, columns_of: Callable[[str], Sequence[str] | None],
                        ) -> list[Source | None] | None:
    """The source of each of a view's output columns, in order (None: not a plain column),
    from its ``CREATE VIEW`` text; None when the statement is beyond this parser (a compound
    SELECT, a WITH clause, anything it does not read) or a ``*`` it cannot expand.
    ``columns_of(table)`` gives a table's columns in order (None: no such table); names
    are returned as the catalog spells them."""
    tokens = _tokenize(sql)
    if not tokens:
        return None
    body = _select_body(tokens)
    if body is None:
        return None
    depth = 0
    from_at = None
    for i, t in enumerate(body):
        if t.kind == "punct" and t.text in "()":
            depth += 1 if t.text == "(" else -1
        elif depth == 0 and (t.word in _SET_OPS or t.word in ("values", "with")):
            return None  # a compound SELECT: its columns are no one table's
        elif depth == 0 and t.word == "from" and from_at is None:
            from_at = i
    if from_at is None:
        return None
    items, rest = body[:from_at], body[from_at + 1:]
    if items and items[0].word in ("distinct", "all"):
        items = items[1:]
    sources = _from_clause(rest, columns_of)
    if sources is None:
        return None
    out: list[Source | None] = []
    for item in _split(items, ","):
        expanded = _item(item, sources, columns_of)
        if expanded is None:
            return None
        out.extend(expanded)
    return out


def _select_body(tokens: list[_Tok]) -> list[_Tok] | None:
    """The tokens after ``CREATE ... VIEW name [(cols)] AS SELECT``."""
    i = 0
    words = [t.word for t in tokens]
    if words[:1] != ["create"]:
        return None
    try:
        as_at = next(k for k, w in enumerate(words) if w == "as")
    except StopIteration:
        return None
    i = as_at + 1
    if i >= len(tokens) or words[i] != "select":
        return None
    body = tokens[i + 1:]
    if body and body[-1].kind == "punct" and body[-1].text == ";":
        body = body[:-1]
    return body


#: alias (lowercased) → table name, or None for a source that is not a plain table.
_Sources = dict[str, str | None]


def _from_clause(tokens: list[_Tok], columns_of: Callable[[str], Sequence[str] | None],
                 ) -> _Sources | None:
    sources: _Sources = {}
    i = 0
    n = len(tokens)
    unknown = 0
    while i < n:
        t = tokens[i]
        if t.word in _CLAUSE_END:
            break
        if t.kind == "punct" and t.text == "(":
            # a subquery or parenthesised join: not followed
            depth = 0
            while i < n:
                if tokens[i].kind == "punct" and tokens[i].text in "()":
                    depth += 1 if tokens[i].text == "(" else -1
                i += 1
                if depth == 0:
                    break
            alias = _alias(tokens, i)
            unknown += 1
            if alias is not None:
                sources[alias[0].lower()] = None
                i = alias[1]
            else:
                sources[f" unknown{unknown}"] = None
            i = _skip_constraint(tokens, i)
            continue
        if not (t.kind in ("name", "quoted") and _is_name(t)):
            return None
        name = t.text
        i += 1
        if i + 1 < n and tokens[i].text == "." and tokens[i].kind == "punct":
            if t.text.lower() != "main":
                return None
            name = tokens[i + 1].text
            i += 2
        if i < n and tokens[i].kind == "punct" and tokens[i].text == "(":
            return None  # a table-valued function
        alias = _alias(tokens, i)
        key = name
        if alias is not None:
            key, i = alias
        if columns_of(name) is None:
            return None
        if key.lower() in sources:
            return None
        sources[key.lower()] = name
        i = _skip_constraint(tokens, i)
    return sources


def _alias(tokens: list[_Tok], i: int) -> tuple[str, int] | None:
    if i < len(tokens) and tokens[i].word == "as":
        i += 1
        if i < len(tokens) and tokens[i].kind in ("name", "quoted", "string"):
            text = tokens[i].text
            return (text[1:-1] if tokens[i].kind == "string" else text), i + 1
        return None
    if i < len(tokens) and _is_name(tokens[i]):
        return tokens[i].text, i + 1
    return None


_JOIN_WORDS = frozenset({"join", "inner", "left", "right", "full", "outer", "cross",
                         "natural"})


def _skip_constraint(tokens: list[_Tok], i: int) -> int:
    """Past a join's ``ON ...``/``USING (...)`` and the next join operator, to the next
    table (or to the clause that ends FROM)."""
    depth = 0
    n = len(tokens)
    while i < n:
        t = tokens[i]
        if t.kind == "punct" and t.text in "()":
            depth += 1 if t.text == "(" else -1
        elif depth == 0 and (t.word in _CLAUSE_END):
            return i
        elif depth == 0 and (t.word in _JOIN_WORDS or (t.kind == "punct" and t.text == ",")):
            while i < n and (tokens[i].word in _JOIN_WORDS
                             or (tokens[i].kind == "punct" and tokens[i].text == ",")):
                i += 1
            return i
        i += 1
    return i


def _item(item: list[_Tok], sources: _Sources,
          columns_of: Callable[[str], Sequence[str] | None]) -> list[Source | None] | None:
    """One select item → the sources of the columns it makes (a ``*`` makes several)."""
    texts = [(t.kind, t.text) for t in item]
    if texts == [("punct", "*")]:
        out: list[Source | None] = []
        for table in sources.values():
            if table is None:
                return None
            out.extend((table, c) for c in columns_of(table) or ())
        return out
    if len(item) == 3 and texts[1:] == [("punct", "."), ("punct", "*")]:
        table = sources.get(item[0].text.lower()) if item[0].kind in ("name", "quoted") \
            else None
        if table is None:
            return None
        return [(table, c) for c in columns_of(table) or ()]
    expr = item
    if len(expr) >= 2 and expr[-2].word == "as":
        expr = expr[:-2]
    elif len(expr) >= 2 and expr[-1].kind in ("name", "quoted") and _is_name(expr[-1]) \
            and not (expr[-2].kind == "punct" and expr[-2].text == "."):
        expr = expr[:-1]
    return [_column_ref(expr, sources, columns_of)]


def _column_ref(expr: list[_Tok], sources: _Sources,
                columns_of: Callable[[str], Sequence[str] | None]) -> Source | None:
    if len(expr) == 1 and expr[0].kind in ("name", "quoted") and _is_name(expr[0]):
        known = list(sources.values())
        if len(known) != 1 or known[0] is None:
            return None  # unqualified over several sources: not followed
        return _find(known[0], expr[0].text, columns_of)
    if (len(expr) == 3 and expr[1].kind == "punct" and expr[1].text == "."
            and expr[0].kind in ("name", "quoted") and expr[2].kind in ("name", "quoted")):
        table = sources.get(expr[0].text.lower())
        if table is None:
            return None
        return _find(table, expr[2].text, columns_of)
    return None


def _find(table: str, column: str, columns_of: Callable[[str], Sequence[str] | None],
          ) -> Source | None:
    for c in columns_of(table) or ():
        if c.lower() == column.lower():
            return table, c
    return None


# --- both: views of views -----------------------------------------------------------------------


def follow(direct: Mapping[str, Mapping[str, Source]], tables: frozenset[str],
           ) -> dict[str, dict[str, Source]]:
    """Each view's columns traced to a table's column, through views of views (``direct``
    maps a view's column to a relation's column, which may be another view's)."""
    out: dict[str, dict[str, Source]] = {}
    for view, cols in direct.items():
        resolved: dict[str, Source] = {}
        for col, src in cols.items():
            seen = {view}
            while src[0] in direct and src[0] not in seen:
                seen.add(src[0])
                nxt = direct[src[0]].get(src[1])
                if nxt is None:
                    break
                src = nxt
            if src[0] in tables:
                resolved[col] = src
        if resolved:
            out[view] = resolved
    return out
