"""PostgreSQL's text search queries rewritten for SQLite's FTS5 (pure).

``fts`` takes ``to_tsquery`` syntax (``fat & rat``, ``fat | rat``, ``fat & !rat``,
parentheses), ``plfts`` plain words (all of them), ``phfts`` a phrase, ``wfts`` web search
syntax (``"a phrase"``, ``or``, ``-word``). Words are quoted for FTS5, so nothing in them is
FTS5 syntax; stemming and stop words are the FTS5 table's tokenizer's, not PostgreSQL's.
"""

from __future__ import annotations

import re

from headwater.errors import UnsupportedFilter

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*|\d+", re.UNICODE)


def _quote(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _bad(text: str, why: str) -> UnsupportedFilter:
    return UnsupportedFilter(f"full-text query not supported on SQLite: {text!r}",
                             details=why, code="PGRST100")


def _tsquery(text: str) -> str:
    tokens = re.findall(r"\(|\)|&|\||!|<->|[^\s()&|!<>]+", text)
    out: list[str] = []
    for tok in tokens:
        if tok == "&":
            out.append("AND")
        elif tok == "|":
            out.append("OR")
        elif tok == "!":
            if not out or out[-1] != "AND":
                raise _bad(text, "SQLite's FTS5 negates only after another term: a & !b")
            out[-1] = "NOT"
        elif tok == "<->":
            raise _bad(text, "phrase operators: use phfts")
        elif tok in ("(", ")"):
            out.append(tok)
        else:
            words = _words(tok.split(":", 1)[0])
            if not words:
                continue
            out.append(_quote(" ".join(words)) if len(words) > 1 else _quote(words[0]))
    return " ".join(out)


def _websearch(text: str) -> str:
    out: list[str] = []
    pending = "AND"
    for m in re.finditer(r'"([^"]*)"?|(\S+)', text):
        tok = m[2]
        if tok is not None and tok.lower() == "or":
            pending = "OR"
            continue
        words = _words(m[1] if m[1] is not None else tok)
        if not words:
            continue
        op = "NOT" if tok is not None and tok.startswith("-") else pending
        if op == "NOT" and not out:
            raise _bad(text, "SQLite's FTS5 negates only after another term: a -b")
        if out:
            out.append(op)
        out.append(_quote(" ".join(words)))
        pending = "AND"
    return " ".join(out)


def fts5_query(op: str, text: str) -> str:
    """The FTS5 query for ``op`` (fts, plfts, phfts, wfts); "" when it has no words."""
    if op == "fts":
        return _tsquery(text)
    if op == "plfts":
        return " AND ".join(_quote(w) for w in _words(text))
    if op == "phfts":
        words = _words(text)
        return _quote(" ".join(words)) if words else ""
    assert op == "wfts"
    return _websearch(text)
