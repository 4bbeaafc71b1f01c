"""POSIX regular expressions (``match``/``imatch``) for SQLite, where Python's ``re`` runs them.

PostgreSQL runs ``~`` itself, inside the statement timeout. On SQLite the ``REGEXP`` function
Headwater registers calls Python's ``re``, and one call cannot be interrupted: it holds the
GIL until it returns, so a pattern with catastrophic backtracking (``(a+)+$``) would stop the
whole server, and SQLite's progress handler (the statement timeout) only runs between calls.
So a pattern is checked before it is used: the constructs that make backtracking exponential
(a repeat inside a repeat, a repeated alternation, backreferences) are refused with a 400, and
so are very long patterns and patterns with many unbounded repeats.

Python's ``re`` is close to POSIX extended syntax but not equal: the bracket classes
(``[[:alpha:]]``) are translated here; PostgreSQL's own extensions (``\\m``, ``\\y``,
embedded options such as ``(?i)``) and Python's (lookarounds, named groups) are refused.
"""

from __future__ import annotations

import re

from headwater.errors import InvalidValue

MAX_PATTERN = 512
MAX_UNBOUNDED = 6

_CLASSES = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z", "lower": "a-z",
    "space": " \\t\\n\\r\\f\\v", "blank": " \\t", "xdigit": "0-9A-Fa-f",
    "punct": "!-/:-@\\[-`{-~", "word": "a-zA-Z0-9_", "cntrl": "\\x00-\\x1f\\x7f",
    "print": " -~", "graph": "!-~",
}
_CLASS = re.compile(r"\[:([a-z]+):\]")


def _refuse(pattern: str, why: str) -> InvalidValue:
    return InvalidValue(
        f"invalid regular expression: {why}", code="2201B",
        details=f"pattern {pattern[:60]!r}",
        hint="on SQLite, match and imatch take POSIX extended patterns without nested or "
             "alternated repeats, backreferences or lookarounds (see the README)")


def sqlite_pattern(pattern: str) -> str:
    """The Python pattern for a POSIX one, or ``InvalidValue`` (2201B, as PostgreSQL
    answers an invalid expression) when it is invalid or could backtrack for too long."""
    if len(pattern) > MAX_PATTERN:
        raise _refuse(pattern, f"longer than {MAX_PATTERN} characters")
    if "(?" in pattern:
        raise _refuse(pattern, "(? constructs are not POSIX")

    def cls(m: re.Match[str]) -> str:
        name = m[1]
        if name not in _CLASSES:
            raise _refuse(pattern, f"unknown character class [:{name}:]")
        return _CLASSES[name]

    python = _CLASS.sub(cls, pattern)
    try:
        tree = re._parser.parse(python)  # type: ignore[attr-defined]
    except re.error as exc:
        raise _refuse(pattern, str(exc)) from None
    except RecursionError:
        raise _refuse(pattern, "nested too deeply") from None
    unbounded = _check(pattern, tree, in_repeat=False)
    if unbounded > MAX_UNBOUNDED:
        raise _refuse(pattern, f"more than {MAX_UNBOUNDED} unbounded repeats")
    return python


def _check(pattern: str, tree: object, *, in_repeat: bool) -> int:
    """Walks ``re``'s parse tree; returns the number of unbounded repeats."""
    unbounded = 0
    for op, arg in tree:  # type: ignore[attr-defined]
        name = str(op)
        if name in ("GROUPREF", "GROUPREF_EXISTS"):
            raise _refuse(pattern, "backreferences are not supported")
        if name in ("ASSERT", "ASSERT_NOT", "ATOMIC_GROUP", "POSSESSIVE_REPEAT"):
            raise _refuse(pattern, "lookarounds and possessive repeats are not POSIX")
        if name in ("MAX_REPEAT", "MIN_REPEAT"):
            low, high, sub = arg
            variable = high != low
            if in_repeat and variable:
                raise _refuse(pattern, "a repeat inside a repeat can take exponential time")
            if variable and _has_branch(sub):
                raise _refuse(pattern, "a repeated alternation can take exponential time")
            if high == re._constants.MAXREPEAT:  # type: ignore[attr-defined]
                unbounded += 1
            unbounded += _check(pattern, sub, in_repeat=in_repeat or variable)
        elif name == "SUBPATTERN":
            unbounded += _check(pattern, arg[-1], in_repeat=in_repeat)
        elif name == "BRANCH":
            for branch in arg[1]:
                unbounded += _check(pattern, branch, in_repeat=in_repeat)
    return unbounded


def _has_branch(tree: object) -> bool:
    for op, arg in tree:  # type: ignore[attr-defined]
        name = str(op)
        if name == "BRANCH":
            return True
        if name == "SUBPATTERN" and _has_branch(arg[-1]):
            return True
        if name in ("MAX_REPEAT", "MIN_REPEAT") and _has_branch(arg[2]):
            return True
    return False
