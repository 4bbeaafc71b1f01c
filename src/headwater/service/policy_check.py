"""The settings file checked against the served database, at start (issue 17): a policy
naming a table, column, role or claim that does not exist would otherwise lock callers out
silently, request by request. Each mistake is one ``SettingsError`` naming it, with the
closest existing name as a suggestion."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from headwater.errors import SettingsError
from headwater.model.catalog import Catalog
from headwater.service.policy import conditions, parse_rows
from headwater.settings_file import SecuritySettings

#: A filter value meant as a placeholder (``{claim.sub}``, ``{jwt.sub}``): a dotted name in
#: braces. (``{a,b}`` is an array literal and stays one.)
_BRACED = re.compile(r"^\{\s*(?P<inner>[A-Za-z_][\w-]*(?:\.[\w-]+)+)\s*\}$")
#: The claims an API key's principal carries (``api.auth``): with neither a JWT secret nor
#: a JWKS configured, these are the only claims a policy can read.
API_KEY_CLAIMS = ("role", "sub", "key_id", "key_name")


def _maybe(name: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_auth_section(security: SecuritySettings) -> None:
    """Policies restrict every caller to a role; without ``[auth]`` nobody has one."""
    if security.policies and not security.auth_section:
        raise SettingsError(
            f"{security.source}: [[policy]] is given but there is no [auth] section, so no "
            "caller could have a role (every request would be refused); add [auth] with "
            "jwt_secret, jwks_file, anonymous_role or api_keys = true")


def check_roles(security: SecuritySettings) -> None:
    """Roles named outside ``[[policy]]`` must be roles some policy grants something to."""
    granted = {p.role for p in security.policies}
    if not security.policies:
        return
    limits = security.rate_limits
    named: list[tuple[str, str]] = [("auth.anonymous_role", security.auth.anonymous_role)]
    named += [(f"rate_limits.{r}", r) for r in limits.roles]
    named += [(f"rate_limits.roles_total.{r}", r) for r in limits.roles_total]
    named += [(f"rate_limits.override[{i}].role", o.role) for i, o in enumerate(limits.overrides)
              if o.role != "*"]
    named += [("http.tx_override_roles", r) for r in security.http.tx_override_roles]
    for where, role in named:
        if role and role not in granted:
            raise SettingsError(f"{security.source}: {where}: unknown role {role!r}: no "
                                f"[[policy]] names it{_maybe(role, granted)}")


def check_claims(security: SecuritySettings) -> None:
    """Each ``{claims.x}`` a row filter reads is one the configured credentials can carry,
    and nothing that looks like a placeholder is left to be compared as literal text."""
    jwt = bool(security.auth.jwt_secret or security.auth.jwks_file)
    for i, spec in enumerate(security.policies):
        for text, key in ((spec.rows, "rows"), (spec.check or "", "check")):
            where = f"{security.source}: policy[{i}] ({spec.role}).{key}"
            if text.strip():
                for c in conditions(parse_rows(text, where).preds):
                    for v in c.value if isinstance(c.value, tuple) else (c.value,):
                        _check_placeholder(v, where, jwt)


def check_against_catalog(security: SecuritySettings, catalog: Catalog) -> None:
    """Every table, column and claim the policies and encrypted columns name exists."""
    tables = catalog.tables
    every_column = {c for t in tables.values() for c in t.columns}
    for i, spec in enumerate(security.policies):
        where = f"{security.source}: policy[{i}] ({spec.role})"
        if spec.table and spec.table != "*" and spec.table not in tables:
            raise SettingsError(f"{where}: unknown table {spec.table!r}"
                                f"{_maybe(spec.table, tables)}")
        if not spec.table:
            continue
        table = tables.get(spec.table)
        known = set(table.columns) if table is not None else every_column
        of = f" of {spec.table}" if table is not None else " of any table"
        named = list(spec.columns or ())
        for text, key in ((spec.rows, "rows"), (spec.check or "", "check")):
            if not text.strip():
                continue
            template = parse_rows(text, f"{where}.{key}")
            for c in conditions(template.preds):
                named.append(c.column.split("->")[0])
        for column in named:
            if column not in known:
                raise SettingsError(f"{where}: unknown column {column!r}{of}"
                                    f"{_maybe(column, known)}")
    for table_name, column in sorted(security.encryption.columns):
        table = tables.get(table_name)
        if table is None:
            raise SettingsError(f"{security.source}: encryption.columns: unknown table "
                                f"{table_name!r}{_maybe(table_name, tables)}")
        if column not in table.columns:
            raise SettingsError(f"{security.source}: encryption.columns: unknown column "
                                f"{column!r} of {table_name}{_maybe(column, table.columns)}")


def _check_placeholder(value: str, where: str, jwt: bool) -> None:
    m = _BRACED.match(value)
    if m is None:
        return
    inner = m["inner"]
    if inner.startswith("claims.") and value == "{" + inner + "}":
        name = inner.removeprefix("claims.")
        top = name.split(".")[0]
        if not jwt and top not in API_KEY_CLAIMS:
            raise SettingsError(f"{where}: unknown claim {name!r}: without a JWT secret or "
                                "JWKS only API keys authenticate, and they carry "
                                f"{', '.join(API_KEY_CLAIMS)}{_maybe(top, API_KEY_CLAIMS)}")
        return
    # ``{claim.sub}``, ``{jwt.sub}``, ``{sub}``: would be compared as literal text.
    name = inner.partition(".")[2]
    raise SettingsError(f"{where}: {value!r} is not a placeholder; a claim is written "
                        f"{{claims.NAME}} (did you mean '{{claims.{name}}}'?)")
