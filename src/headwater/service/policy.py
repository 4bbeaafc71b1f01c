"""Access policies (pure): which role may do what to which rows and columns.

Policies come from the settings file (``[[policy]]``) and are parsed once, at start. Row
filters are written in PostgREST's filter grammar and parsed by the same parser as requests;
``{claims.x}`` placeholders stand for whole values and are replaced, per request, by the
caller's claim values *after* parsing, so a claim can never change a filter's structure and
reaches SQL only as a bound parameter (invariant 4).

A request's ``Access`` is what the planner consults:

- ``rule(table, action)`` → the columns the caller may use and the row filter (USING) and
  check (WITH CHECK) that apply; no policy → ``Forbidden`` (401 anonymous, 403 otherwise).
- ``context``: the cache access context, the role plus a digest of the claim values the
  role's policies read; two callers share cached responses only when they would be planned
  identically (invariant 1).

Several policies for one role, table and action combine as PostgreSQL's permissive policies
do: their row filters are OR-ed and their column lists united.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from headwater.errors import Forbidden, HeadwaterError, SettingsError, UnknownColumn
from headwater.model.grammar import RESERVED, parse_filter, parse_logic, split_query_string
from headwater.model.principal import ACTIONS, Action, Principal
from headwater.model.request import Condition, Logic, Predicate, Preferences
from headwater.settings_file import PolicySpec, SecuritySettings

_PLACEHOLDER = re.compile(r"^\{claims\.([A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*)\}$")
_ANY_PLACEHOLDER = re.compile(r"\{claims\.")
#: The cache context of every caller when nothing is enforced.
OPEN_CONTEXT = "anon"


@dataclass(frozen=True, slots=True)
class Rule:
    """What a role may do to one table for one action (after claims are substituted)."""

    #: Columns it may name, read or write; None = all.
    columns: frozenset[str] | None = None
    #: Rows it may see or touch (USING); None = all.
    rows: Predicate | None = None
    #: Rows it may leave behind after an insert or update (WITH CHECK); None = any.
    check: Predicate | None = None
    #: May its reads aggregate (``[[policy]] aggregates = false`` forbids it)?
    aggregates: bool = True

    def allows(self, column: str) -> bool:
        return self.columns is None or column in self.columns


_ALL = Rule()


@dataclass(frozen=True, slots=True)
class _Template:
    """A parsed row filter with its ``{claims.x}`` placeholders still in it."""

    preds: tuple[Predicate, ...]
    claims: frozenset[str]


def parse_rows(text: str, where: str) -> _Template:
    """``a=eq.1&or=(b.is.null,c.gt.{claims.n})`` → predicates (AND-ed), as a query string."""
    preds: list[Predicate] = []
    for key, value in split_query_string(text.strip()):
        try:
            if key in ("or", "and", "not.or", "not.and"):
                preds.append(parse_logic(key, value))
            elif key in RESERVED or "." in key or not key:
                raise SettingsError(f"{where}: {key!r} is not a filter on a column of the table")
            else:
                preds.append(parse_filter(key, value))
        except SettingsError:
            raise  # already says where (and is a HeadwaterError itself)
        except HeadwaterError as exc:
            raise SettingsError(f"{where}: {exc.message} ({exc.details})") from None
    claims: set[str] = set()
    for c in conditions(preds):
        values = c.value if isinstance(c.value, tuple) else (c.value,)
        for v in values:
            m = _PLACEHOLDER.match(v)
            if m:
                claims.add(m[1])
            elif _ANY_PLACEHOLDER.search(v):
                raise SettingsError(f"{where}: a {{claims.…}} placeholder must be a whole value "
                                    f"(got {v!r})")
    if not preds:
        raise SettingsError(f"{where}: the filter is empty")
    return _Template(tuple(preds), frozenset(claims))


def conditions(preds: Iterable[Predicate]) -> Iterable[Condition]:
    for p in preds:
        if isinstance(p, Logic):
            yield from conditions(p.items)
        else:
            yield p


def claim(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by dotted path (``app_metadata.role``); None when absent."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Substitution:
    def __init__(self, claims: Mapping[str, Any], anonymous: bool) -> None:
        self.claims = claims
        self.anonymous = anonymous

    def value(self, v: str) -> list[str]:
        m = _PLACEHOLDER.match(v)
        if m is None:
            return [v]
        found = claim(self.claims, m[1])
        if found is None or isinstance(found, Mapping):
            raise forbidden(self.anonymous, f"the policy needs the claim {m[1]!r}, which the "
                                            "credentials do not carry")
        if isinstance(found, list):
            return [_text(i) for i in found if i is not None and not isinstance(i, (dict, list))]
        return [_text(found)]

    def pred(self, p: Predicate) -> Predicate:
        if isinstance(p, Logic):
            return Logic(p.op, tuple(self.pred(i) for i in p.items), p.negated)
        if isinstance(p.value, tuple):
            return Condition(p.column, p.op, tuple(x for v in p.value for x in self.value(v)),
                             p.negated, p.modifier)
        values = self.value(p.value)
        if len(values) != 1:
            raise forbidden(self.anonymous, f"the policy's filter on {p.column} needs a single "
                                            "value but the claim is a list")
        return Condition(p.column, p.op, values[0], p.negated, p.modifier)


def forbidden(anonymous: bool, message: str, *, hint: str | None = None) -> Forbidden:
    return Forbidden(message, status=401 if anonymous else 403, hint=hint)


def unknown_column(table: str, name: str, names: Iterable[str]) -> UnknownColumn:
    """The answer for a column that does not exist *or* that the caller may not read: the
    two must be indistinguishable, so the hint is picked only among ``names`` (the columns
    the caller may read), never among every column of the table."""
    close = difflib.get_close_matches(name, list(names), n=1)
    return UnknownColumn(f"column {table}.{name} does not exist",
                         hint=f'Perhaps you meant to reference the column "{close[0]}".'
                         if close else None)


@dataclass(frozen=True, slots=True)
class _Combined:
    """Every policy of one role for one table and action, not yet substituted."""

    columns: frozenset[str] | None
    #: Alternatives (OR); None = every row.
    rows: tuple[_Template, ...] | None
    check: tuple[_Template, ...] | None
    aggregates: bool = True

    def substitute(self, sub: _Substitution) -> Rule:
        return Rule(self.columns, _either(self.rows, sub), _either(self.check, sub),
                    self.aggregates)


def _either(templates: tuple[_Template, ...] | None, sub: _Substitution) -> Predicate | None:
    if templates is None:
        return None
    alternatives = [Logic("and", tuple(sub.pred(p) for p in t.preds)) for t in templates]
    return alternatives[0] if len(alternatives) == 1 else Logic("or", tuple(alternatives))


@dataclass(frozen=True, slots=True)
class _Entry:
    spec: PolicySpec
    rows: _Template | None
    check: _Template | None


class PolicySet:
    """Every policy, parsed; one per process, built from the settings at start."""

    def __init__(self, security: SecuritySettings) -> None:
        self.enforced = security.enforced
        self.encrypted = security.encryption.columns
        self.anonymous_role = security.auth.anonymous_role
        http = security.http
        #: May every caller ask for ``Prefer: tx=rollback``? PostgREST's ``db-tx-end``; by
        #: default only when nothing is enforced, since a write that is undone yet answers
        #: what it matched is a free oracle on rows and columns.
        self.tx_override = (not self.enforced if http.tx_end is None
                            else http.tx_end == "commit-allow-override")
        self.tx_override_roles = frozenset(http.tx_override_roles)
        self.plan_roles = frozenset(http.plan_roles)
        self._entries: dict[tuple[str, str, Action], list[_Entry]] = {}
        self._rpc: dict[str, set[str]] = {}
        self._claims: dict[str, frozenset[str]] = {}
        self._combined: dict[tuple[str, str, Action], _Combined | None] = {}
        self.roles: set[str] = set()
        for i, spec in enumerate(security.policies):
            where = f"policy[{i}] ({spec.role}, {spec.table or 'rpc'})"
            rows = parse_rows(spec.rows, where + ".rows") if spec.rows.strip() else None
            check = (parse_rows(spec.check, where + ".check") if spec.check is not None
                     and spec.check.strip() else rows)
            for t in (rows, check):
                for c in conditions(t.preds if t else ()):
                    if (spec.table, c.column) in self.encrypted:
                        raise SettingsError(f"{where}: cannot filter on the encrypted column "
                                            f"{spec.table}.{c.column}")
            entry = _Entry(spec, rows, check)
            self.roles.add(spec.role)
            for action in spec.actions:
                self._entries.setdefault((spec.role, spec.table, action), []).append(entry)
            if spec.rpc:
                self._rpc.setdefault(spec.role, set()).update(spec.rpc)
            names = {*(rows.claims if rows else ()), *(check.claims if check else ())}
            self._claims[spec.role] = self._claims.get(spec.role, frozenset()) | names

    # --- per role -----------------------------------------------------------------------------

    def combined(self, role: str, table: str, action: Action) -> _Combined | None:
        key = (role, table, action)
        if key in self._combined:
            return self._combined[key]
        entries = self._entries.get(key, []) + (
            self._entries.get((role, "*", action), []) if table != "*" else [])
        out: _Combined | None = None
        if entries:
            cols: set[str] | None = set()
            for e in entries:
                if e.spec.columns is None or cols is None:
                    cols = None
                else:
                    cols.update(e.spec.columns)
            rows = None if any(e.rows is None for e in entries) else tuple(
                e.rows for e in entries if e.rows is not None)
            check = None if any(e.check is None for e in entries) else tuple(
                e.check for e in entries if e.check is not None)
            # permissive, as the rest: one policy that allows aggregates is enough
            out = _Combined(None if cols is None else frozenset(cols), rows, check,
                            any(e.spec.aggregates for e in entries))
        self._combined[key] = out
        return out

    def tables(self, role: str) -> set[str]:
        """Tables (or ``*``) some policy names for the role."""
        return {t for (r, t, _a) in self._entries if r == role}

    def may_call(self, role: str, rpc: str) -> bool:
        """``rpc`` lists of the role's policies: names it may call, ``*`` for all, and
        ``!name`` for one it may not (``["*", "!reset_all"]``), whatever else is listed."""
        names = self._rpc.get(role, set())
        if "!" + rpc in names:
            return False
        return "*" in names or rpc in names

    def context(self, principal: Principal) -> str:
        """The cache access context: role + the claim values the role's policies read."""
        if not self.enforced:
            return OPEN_CONTEXT
        names = self._claims.get(principal.role)
        if not names:
            return "r:" + principal.role
        h = hashlib.blake2b(digest_size=12)
        for n in sorted(names):
            h.update(n.encode())
            h.update(b"\x1e")
            h.update(repr(claim(principal.claims, n)).encode("utf-8", "surrogateescape"))
            h.update(b"\x1f")
        return f"r:{principal.role}:{h.hexdigest()}"

    def access(self, principal: Principal, *, anonymous: bool) -> Access:
        return Access(self, principal, anonymous, self.context(principal))


@dataclass(slots=True)
class Access:
    """What one request's caller may do; consulted by the planner and the writer."""

    policies: PolicySet
    principal: Principal
    anonymous: bool
    context: str
    _rules: dict[tuple[str, Action], Rule] = field(default_factory=dict)

    @property
    def restricted(self) -> bool:
        return self.policies.enforced

    @property
    def encrypted(self) -> frozenset[tuple[str, str]]:
        return self.policies.encrypted

    def forbidden(self, message: str, *, hint: str | None = None) -> Forbidden:
        return forbidden(self.anonymous, message, hint=hint)

    def rule(self, table: str, action: Action) -> Rule:
        """The rule for ``action`` on ``table``; ``Forbidden`` when no policy allows it."""
        if not self.policies.enforced:
            return _ALL
        key = (table, action)
        found = self._rules.get(key)
        if found is not None:
            return found
        combined = self.policies.combined(self.principal.role, table, action)
        if combined is None:
            raise self.forbidden(f"permission denied for table {table}",
                                 hint=f"no policy lets the role {self.principal.role!r} "
                                      f"{action} {table}")
        rule = combined.substitute(_Substitution(self.principal.claims, self.anonymous))
        self._rules[key] = rule
        return rule

    def may(self, table: str, action: Action) -> bool:
        return (not self.policies.enforced
                or self.policies.combined(self.principal.role, table, action) is not None)

    def require_columns(self, table: str, action: Action, names: Iterable[str],
                        rule: Rule | None = None) -> None:
        rule = rule or self.rule(table, action)
        if rule.columns is None:
            return
        denied = sorted(n for n in names if n not in rule.columns)
        if denied and action == "select":
            # A column it may not read answers as one that does not exist (issue 16).
            raise unknown_column(table, denied[0], sorted(rule.columns))
        if denied:
            raise self.forbidden(
                f"permission denied for column {denied[0]} of table {table}",
                hint=f"the role {self.principal.role!r} may {action} only: "
                     + ", ".join(sorted(rule.columns)))

    def readable(self, table: str) -> frozenset[str] | None:
        """Columns of ``table`` the caller may read, and so filter, order and get back, for
        every action (None = all): a write's filters would otherwise tell, by what they
        match, the values of columns it may not read. No select policy: ``Forbidden``."""
        if not self.policies.enforced:
            return None
        if not self.may(table, "select"):
            raise self.forbidden(
                f"permission denied for table {table}",
                hint=f"filtering, ordering or returning columns of {table} needs a select "
                     f"policy for the role {self.principal.role!r}")
        return self.rule(table, "select").columns

    def filterable(self, table: str, action: Action) -> frozenset[str] | None:
        """Columns a filter or order may name, whatever the action: what the caller may read
        (empty without a select policy; None = all)."""
        if self.policies.enforced and not self.may(table, "select"):
            return frozenset()
        return self.readable(table)

    @property
    def may_roll_back(self) -> bool:
        """May this caller's ``Prefer: tx=rollback`` be honoured (``[http] tx_end``)?"""
        p = self.policies
        return p.tx_override or self.principal.role in p.tx_override_roles

    @property
    def may_plan(self) -> bool:
        """May this caller see a read's EXPLAIN (``[http] plan_roles`` once enforced)?"""
        return not self.policies.enforced or self.principal.role in self.policies.plan_roles

    def preferences(self, prefer: Preferences) -> Preferences:
        """``prefer`` without what the settings do not let this caller ask for; as in
        PostgREST, a preference that is not allowed is ignored (and not applied)."""
        if prefer.tx == "rollback" and not self.may_roll_back:
            return dataclasses.replace(prefer, tx=None)
        return prefer

    def may_call(self, rpc: str) -> None:
        if self.policies.enforced and not self.policies.may_call(self.principal.role, rpc):
            raise self.forbidden(f"permission denied for function {rpc}")


def key_filter(primary_key: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> Predicate:
    """The rows by primary key, as a predicate (``id=in.(…)`` or an OR of ANDs)."""
    if len(primary_key) == 1:
        k = primary_key[0]
        return Condition(k, "in", tuple(_text(r[k]) for r in rows))
    return Logic("or", tuple(Logic("and", tuple(Condition(c, "eq", _text(r[c]))
                                                for c in primary_key)) for r in rows))


__all__ = ["ACTIONS", "Access", "PolicySet", "Rule", "claim", "conditions", "forbidden",
           "key_filter", "parse_rows", "unknown_column"]
