"""The settings file (``headwater.toml``, ``--config``): authentication, access policies,
rate limits, field encryption and HTTP security, as frozen objects (pure apart from reading
the file and the environment variables it names).

Secrets may be written as ``env:NAME``: the value is then read from that environment
variable, so the file itself can be committed. Every problem is reported as a
``SettingsError`` naming the offending key, at start, never during a request.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headwater.model.principal import ACTIONS, Action

#: Keys of ``[rate_limits]`` that are not role names.
_RATE_RESERVED = frozenset({"address", "failed_auth", "principal", "trusted_proxies",
                            "override", "roles_total"})
_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


class SettingsError(ValueError):
    """The settings file is missing, unreadable or invalid."""


@dataclass(frozen=True, slots=True)
class AuthSettings:
    #: HMAC secret for HS256/384/512 tokens.
    jwt_secret: str = ""
    #: A JSON Web Key Set file for RS256/ES256 (…) tokens; keys chosen by ``kid``.
    jwks_file: str = ""
    #: When set, a token's ``aud`` must contain it.
    audience: str = ""
    issuer: str = ""
    #: Dotted path of the claim naming the role (PostgREST's ``jwt-role-claim-key``).
    role_claim: str = "role"
    #: Seconds of clock difference tolerated on ``exp`` and ``nbf``.
    clock_skew_seconds: int = 30
    require_exp: bool = False
    #: Role of requests without credentials; empty = such requests get 401.
    anonymous_role: str = ""
    #: Accept API keys (``apikey:`` header, or as a bearer token).
    api_keys: bool = True
    #: Seconds a verified API key is trusted before it is looked up again (so revocation
    #: takes effect within this time on every node).
    api_key_cache_seconds: float = 5.0
    #: Seconds between writes of API keys' use counts and last use to the database.
    key_usage_flush_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """One ``[[policy]]`` entry, as written (the filter text is parsed by
    ``headwater.service.policy``)."""

    role: str
    #: A table name, or ``*`` for every table.
    table: str = ""
    actions: tuple[Action, ...] = ()
    #: None = every column.
    columns: tuple[str, ...] | None = None
    #: A PostgREST filter (``customer_id=eq.{claims.sub}&status=neq.cancelled``): USING.
    rows: str = ""
    #: Written rows must satisfy this (WITH CHECK); defaults to ``rows``.
    check: str | None = None
    #: RPC functions this role may call (``*`` = all).
    rpc: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rate:
    amount: int
    seconds: int
    text: str


@dataclass(frozen=True, slots=True)
class RateOverride:
    limit: Rate
    table: str = "*"
    action: str = "*"
    role: str = "*"


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    #: Per client address, before authentication.
    address: Rate | None = None
    #: Failed authentications per client address; past it the address gets 429 at once.
    failed_auth: Rate | None = None
    #: Per principal (token ``sub``, API key, or the address of an anonymous caller).
    principal: Rate | None = None
    #: Per principal of a role (replaces ``principal`` for that role).
    roles: Mapping[str, Rate] = field(default_factory=dict)
    #: Shared by every principal of a role.
    roles_total: Mapping[str, Rate] = field(default_factory=dict)
    overrides: tuple[RateOverride, ...] = ()
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.address or self.failed_auth or self.principal or self.roles
                    or self.roles_total or self.overrides)


@dataclass(frozen=True, slots=True)
class EncryptionSettings:
    #: Key id → 16, 24 or 32 bytes.
    keys: Mapping[str, bytes] = field(default_factory=dict)
    #: The key id new values are written with.
    current_key: str = ""
    #: (table, column) pairs stored encrypted.
    columns: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True, slots=True)
class HttpSettings:
    cors_origins: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    auth: AuthSettings = AuthSettings()
    policies: tuple[PolicySpec, ...] = ()
    rate_limits: RateLimitSettings = RateLimitSettings()
    encryption: EncryptionSettings = EncryptionSettings()
    http: HttpSettings = HttpSettings()
    #: The file these came from ("" = none).
    source: str = ""

    @property
    def enforced(self) -> bool:
        """False when nothing about access is configured: every caller may do everything."""
        a = self.auth
        return bool(self.policies or a.jwt_secret or a.jwks_file or a.anonymous_role)


# --- loading ----------------------------------------------------------------------------------

def load_security(path: str, env: Mapping[str, str] | None = None) -> SecuritySettings:
    """Read ``path`` (empty: no file, nothing enforced)."""
    if not path:
        return SecuritySettings()
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read the settings file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path} is not valid TOML: {exc}") from None
    return parse_security(data, os.environ if env is None else env, source=path)


def parse_security(data: Mapping[str, Any], env: Mapping[str, str], *,
                   source: str = "") -> SecuritySettings:
    unknown = set(data) - {"auth", "policy", "rate_limits", "encryption", "http"}
    if unknown:
        raise SettingsError(f"unknown section(s) in the settings file: {', '.join(sorted(unknown))}")
    return SecuritySettings(
        auth=_auth(_table(data, "auth"), env),
        policies=tuple(_policy(i, p) for i, p in enumerate(_list(data, "policy"))),
        rate_limits=_rates(_table(data, "rate_limits")),
        encryption=_encryption(_table(data, "encryption"), env),
        http=_http(_table(data, "http")),
        source=source,
    )


def secret(value: str, env: Mapping[str, str], where: str) -> str:
    """``env:NAME`` → the variable's value (which must be set); anything else as written."""
    if value.startswith("env:"):
        name = value[4:]
        found = env.get(name)
        if not found:
            raise SettingsError(f"{where} names the environment variable {name}, which is not set")
        return found
    return value


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise SettingsError(f"[{key}] must be a table")
    return value


def _list(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise SettingsError(f"[[{key}]] must be an array of tables")
    return value


def _str(d: Mapping[str, Any], key: str, where: str, default: str = "") -> str:
    v = d.get(key, default)
    if not isinstance(v, str):
        raise SettingsError(f"{where}.{key} must be a string")
    return v


def _strs(d: Mapping[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise SettingsError(f"{where}.{key} must be a list of strings")
    return tuple(v)


def _auth(d: Mapping[str, Any], env: Mapping[str, str]) -> AuthSettings:
    fields = set(AuthSettings.__dataclass_fields__)
    unknown = set(d) - fields
    if unknown:
        raise SettingsError(f"unknown key(s) in [auth]: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    defaults = AuthSettings()
    for name in fields:
        if name not in d:
            continue
        default = getattr(defaults, name)
        v = d[name]
        if isinstance(default, bool):
            if not isinstance(v, bool):
                raise SettingsError(f"auth.{name} must be true or false")
        elif isinstance(default, (int, float)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise SettingsError(f"auth.{name} must be a non-negative number")
            v = type(default)(v)
        elif not isinstance(v, str):
            raise SettingsError(f"auth.{name} must be a string")
        values[name] = v
    if "jwt_secret" in values:
        values["jwt_secret"] = secret(values["jwt_secret"], env, "auth.jwt_secret")
        if len(values["jwt_secret"]) < 32:
            raise SettingsError("auth.jwt_secret must be at least 32 characters long "
                                "(as PostgREST requires)")
    if values.get("jwks_file") and not Path(values["jwks_file"]).is_file():
        raise SettingsError(f"auth.jwks_file: no file at {values['jwks_file']}")
    return AuthSettings(**values)


def _policy(i: int, d: Mapping[str, Any]) -> PolicySpec:
    where = f"policy[{i}]"
    unknown = set(d) - {"role", "table", "actions", "columns", "rows", "check", "rpc"}
    if unknown:
        raise SettingsError(f"unknown key(s) in {where}: {', '.join(sorted(unknown))}")
    role = _str(d, "role", where)
    if not role:
        raise SettingsError(f"{where}.role is required")
    table = _str(d, "table", where)
    rpc = _strs(d, "rpc", where) or ()
    if not table and not rpc:
        raise SettingsError(f"{where} needs a table (or rpc)")
    actions_raw = _strs(d, "actions", where)
    if table and not actions_raw:
        raise SettingsError(f"{where}.actions is required, e.g. [\"select\"]")
    actions: list[Action] = []
    for a in actions_raw or ():
        if a in ("*", "all"):
            actions.extend(ACTIONS)
        elif a in ACTIONS:
            actions.append(a)
        else:
            raise SettingsError(f"{where}.actions: {a!r} is not one of {', '.join(ACTIONS)}")
    check = d.get("check")
    if check is not None and not isinstance(check, str):
        raise SettingsError(f"{where}.check must be a string")
    return PolicySpec(role=role, table=table, actions=tuple(dict.fromkeys(actions)),
                      columns=_strs(d, "columns", where), rows=_str(d, "rows", where),
                      check=check, rpc=rpc)


def parse_rate(text: Any, where: str) -> Rate:
    """``300/minute``, ``10/second``, ``5 per 10 seconds`` style is not needed: N/period,
    where period is second, minute, hour or day (optionally with a count: ``100/5minute``)."""
    if not isinstance(text, str):
        raise SettingsError(f"{where} must be a string such as \"60/minute\"")
    amount, _, period = text.replace(" ", "").partition("/")
    multiple = ""
    while period[:1].isdigit():
        multiple, period = multiple + period[0], period[1:]
    period = period.removesuffix("s")
    if not amount.isdigit() or int(amount) <= 0 or period not in _PERIODS:
        raise SettingsError(f"{where}: {text!r} is not a rate such as \"60/minute\"")
    return Rate(int(amount), _PERIODS[period] * int(multiple or "1"), text)


def _rates(d: Mapping[str, Any]) -> RateLimitSettings:
    def rate(key: str) -> Rate | None:
        return parse_rate(d[key], f"rate_limits.{key}") if key in d else None

    roles = {k: parse_rate(v, f"rate_limits.{k}") for k, v in d.items()
             if k not in _RATE_RESERVED}
    totals_raw = d.get("roles_total", {})
    if not isinstance(totals_raw, Mapping):
        raise SettingsError("rate_limits.roles_total must be a table of role = \"N/period\"")
    totals = {k: parse_rate(v, f"rate_limits.roles_total.{k}") for k, v in totals_raw.items()}
    overrides = []
    for i, o in enumerate(_list(d, "override")):
        where = f"rate_limits.override[{i}]"
        unknown = set(o) - {"table", "action", "role", "limit"}
        if unknown:
            raise SettingsError(f"unknown key(s) in {where}: {', '.join(sorted(unknown))}")
        action = _str(o, "action", where, "*")
        if action not in (*ACTIONS, "*"):
            raise SettingsError(f"{where}.action: {action!r} is not one of {', '.join(ACTIONS)}")
        overrides.append(RateOverride(parse_rate(o.get("limit"), where + ".limit"),
                                      _str(o, "table", where, "*"), action,
                                      _str(o, "role", where, "*")))
    proxies = []
    for p in _strs(d, "trusted_proxies", "rate_limits") or ():
        try:
            proxies.append(ipaddress.ip_network(p, strict=False))
        except ValueError:
            raise SettingsError(f"rate_limits.trusted_proxies: {p!r} is not an address or "
                                "network") from None
    return RateLimitSettings(address=rate("address"), failed_auth=rate("failed_auth"),
                             principal=rate("principal"), roles=roles, roles_total=totals,
                             overrides=tuple(overrides), trusted_proxies=tuple(proxies))


def _encryption(d: Mapping[str, Any], env: Mapping[str, str]) -> EncryptionSettings:
    unknown = set(d) - {"keys", "current_key", "columns"}
    if unknown:
        raise SettingsError(f"unknown key(s) in [encryption]: {', '.join(sorted(unknown))}")
    raw_keys = d.get("keys", {})
    if not isinstance(raw_keys, Mapping):
        raise SettingsError("encryption.keys must be a table of key-id = \"base64\"")
    keys: dict[str, bytes] = {}
    for kid, value in raw_keys.items():
        where = f"encryption.keys.{kid}"
        if not isinstance(value, str):
            raise SettingsError(f"{where} must be a string")
        if not kid.replace("-", "").replace("_", "").isalnum() or ":" in kid:
            raise SettingsError(f"{where}: key ids are letters, digits, - and _")
        try:
            key = base64.b64decode(secret(value, env, where), validate=True)
        except ValueError:
            raise SettingsError(f"{where} is not base64") from None
        if len(key) not in (16, 24, 32):
            raise SettingsError(f"{where} must decode to 16, 24 or 32 bytes (AES-GCM)")
        keys[kid] = key
    columns: set[tuple[str, str]] = set()
    for c in _strs(d, "columns", "encryption") or ():
        table, dot, column = c.partition(".")
        if not dot or not table or not column:
            raise SettingsError(f"encryption.columns: {c!r} is not table.column")
        columns.add((table, column))
    current = _str(d, "current_key", "encryption")
    if columns and not keys:
        raise SettingsError("encryption.columns are listed but encryption.keys is empty")
    if keys and not current:
        if len(keys) != 1:
            raise SettingsError("encryption.current_key must name one of encryption.keys")
        current = next(iter(keys))
    if current and current not in keys:
        raise SettingsError(f"encryption.current_key {current!r} is not in encryption.keys")
    return EncryptionSettings(keys=keys, current_key=current, columns=frozenset(columns))


def _http(d: Mapping[str, Any]) -> HttpSettings:
    unknown = set(d) - {"cors_origins"}
    if unknown:
        raise SettingsError(f"unknown key(s) in [http]: {', '.join(sorted(unknown))}")
    return HttpSettings(cors_origins=_strs(d, "cors_origins", "http") or ())
