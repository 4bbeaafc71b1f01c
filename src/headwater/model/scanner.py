"""The cursor every grammar in ``headwater.model`` reads with, and the rules for names (pure)."""

from __future__ import annotations

import re

from headwater.errors import ParseError

#: Bounds on what one request may ask for, so hostile input gets a 400 rather than deep
#: recursion here or an expression too large for the database.
MAX_DEPTH = 32

#: Characters no identifier may hold: C0 and C1 controls (PostgreSQL cannot take a NUL in a
#: statement's text at all) and lone surrogates (not encodable as UTF-8).
_BAD_NAME_CHAR = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

#: Characters that end a bare name inside select/logic expressions.
NAME_STOP = frozenset(",()!:.\"")


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


class Scanner:
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
        while self.pos < len(text) and text[self.pos] not in NAME_STOP:
            self.pos += 1
        arrow = text.find("->", start, self.pos)
        if arrow >= 0:
            self.pos = arrow  # a JSON path follows (``data->key``)
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


def render_name(name: str) -> str:
    """``name`` bare when the grammar reads it back unchanged, else double-quoted."""
    if (name and not (set(name) & (NAME_STOP | {"*", "\\"})) and name == name.strip()
            and name != "not" and "->" not in name and not name.startswith(">")):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
