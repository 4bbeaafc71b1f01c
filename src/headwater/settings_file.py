"""The settings file (``headwater.toml``, ``--config``): authentication, access policies,
rate limits, field encryption and HTTP security, as frozen objects (pure apart from reading
the file and the environment variables it names).

Secrets may be written as ``env:NAME``: the value is then read from that environment
variable, so the file itself can be committed. Every problem is reported as a
``SettingsError`` naming the file, the offending key and what is allowed, at start, never
during a request.

The file's shape (which keys each table has, their types, which are required) is declared
as msgspec Structs and checked by ``msgspec.convert``; what a type cannot say (rates, key
material, addresses, one key referring to another) is checked by hand after it.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import tomllib
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias, TypeVar, Union, get_args, get_origin

import msgspec

from headwater.errors import SettingsError
from headwater.model.principal import ACTIONS, Action

_T = TypeVar("_T")
_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


class _Table(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A table of the file: a key it does not declare is an error (a typo must not be
    silently ignored in a security setting)."""


class AuthSettings(_Table, frozen=True):
    """``[auth]``, as written; ``jwt_secret`` with its ``env:NAME`` resolved."""

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
    clock_skew_seconds: Annotated[int, msgspec.Meta(ge=0)] = 30
    require_exp: bool = False
    #: Role of requests without credentials; empty = such requests get 401.
    anonymous_role: str = ""
    #: Accept API keys (``apikey:`` header, or as a bearer token).
    api_keys: bool = True
    #: Seconds a verified API key is trusted before it is looked up again (so revocation
    #: takes effect within this time on every node).
    api_key_cache_seconds: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    #: Seconds between writes of API keys' use counts and last use to the database.
    key_usage_flush_seconds: Annotated[float, msgspec.Meta(ge=0)] = 10.0


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
    #: May reads use aggregates (``select=amount.sum()``)? Off in every policy of a role for
    #: a table (and ``*``), they are a 400 (PGRST123) for it.
    aggregates: bool = True


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
    #: Failed authentications per client address; past it, failing credentials get 429
    #: (valid ones from the address are still served).
    failed_auth: Rate | None = None
    #: Per principal (token ``sub``, API key, or the address of an anonymous caller).
    principal: Rate | None = None
    #: Per principal of a role (replaces ``principal`` for that role).
    roles: Mapping[str, Rate] = field(default_factory=dict)
    #: Shared by every principal of a role.
    roles_total: Mapping[str, Rate] = field(default_factory=dict)
    overrides: tuple[RateOverride, ...] = ()
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    #: IPv6 clients are counted by their network of this prefix length: one host is usually
    #: given a whole /64, and could otherwise take a fresh address for every request.
    ipv6_prefix: int = 64

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


#: PostgREST's ``db-tx-end`` values that Headwater offers: every write commits, or commits
#: unless the request says ``Prefer: tx=rollback``.
TxEnd: TypeAlias = Literal["commit", "commit-allow-override"]


@dataclass(frozen=True, slots=True)
class HttpSettings:
    cors_origins: tuple[str, ...] = ()
    #: None = "commit-allow-override" when nothing is enforced, "commit" otherwise.
    tx_end: TxEnd | None = None
    #: Roles whose ``Prefer: tx=rollback`` is honoured even when ``tx_end`` is "commit".
    tx_override_roles: tuple[str, ...] = ()
    #: Once authentication is configured, ``/-/metrics`` and ``/-/stats`` answer only
    #: principals of these roles, or a request bearing ``metrics_token``.
    metrics_roles: tuple[str, ...] = ()
    #: Once policies are enforced, only these roles get ``application/vnd.pgrst.plan``
    #: (EXPLAIN shows estimates of rows a role's policy hides); needs ``db_plan_enabled``.
    plan_roles: tuple[str, ...] = ()
    #: A bearer token for scrapers (``env:NAME`` allowed); "" = none.
    metrics_token: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    auth: AuthSettings = field(default_factory=AuthSettings)
    policies: tuple[PolicySpec, ...] = ()
    rate_limits: RateLimitSettings = RateLimitSettings()
    encryption: EncryptionSettings = EncryptionSettings()
    http: HttpSettings = HttpSettings()
    #: The file these came from ("" = none).
    source: str = ""
    #: Whether the file has an ``[auth]`` section (policies without one lock everyone out).
    auth_section: bool = False

    @property
    def enforced(self) -> bool:
        """False when nothing about access is configured: every caller may do everything."""
        a = self.auth
        return bool(self.policies or a.jwt_secret or a.jwks_file or a.anonymous_role)


# --- the file's shape -------------------------------------------------------------------------

#: A list of names; one name may be written alone.
_Names: TypeAlias = str | list[str]
_ActionName: TypeAlias = Literal[Action, "*", "all"]


class _Policy(_Table, frozen=True):
    role: str
    table: str = ""
    actions: _ActionName | list[_ActionName] | None = None
    columns: _Names | None = None
    rows: str = ""
    check: str | None = None
    rpc: _Names | None = None
    aggregates: bool = True


class _Override(_Table, frozen=True):
    limit: str
    table: str = "*"
    action: Literal[Action, "*"] = "*"
    role: str = "*"


class _RateLimits(_Table, frozen=True):
    """The keys of ``[rate_limits]`` that are not role names (every other key is one)."""

    address: str | None = None
    failed_auth: str | None = None
    principal: str | None = None
    roles_total: dict[str, Any] = {}
    override: list[_Override] = []
    trusted_proxies: _Names = []
    ipv6_prefix: Annotated[int, msgspec.Meta(ge=1, le=128)] = 64


class _Encryption(_Table, frozen=True):
    keys: dict[str, Any] = {}
    current_key: str = ""
    columns: _Names = []


class _Http(_Table, frozen=True):
    cors_origins: _Names = []
    tx_end: TxEnd | None = None
    tx_override_roles: _Names = []
    metrics_roles: _Names = []
    plan_roles: _Names = []
    metrics_token: str = ""


class _File(_Table, frozen=True):
    auth: AuthSettings = AuthSettings()
    policy: list[_Policy] = []
    #: Role names mixed with the keys of ``_RateLimits``: split before conversion.
    rate_limits: dict[str, Any] = {}
    encryption: _Encryption = _Encryption()
    http: _Http = _Http()


# --- loading ----------------------------------------------------------------------------------

def load_security(path: str, env: Mapping[str, str] | None = None) -> SecuritySettings:
    """Read ``path`` (empty: no file, nothing enforced)."""
    if not path:
        return SecuritySettings()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the settings file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path}: cannot read the settings file: not UTF-8 text (byte "
                            f"{exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(_toml_error(path, str(exc))) from None
    return parse_security(data, os.environ if env is None else env, source=path)


def parse_security(data: Mapping[str, Any], env: Mapping[str, str], *,
                   source: str = "") -> SecuritySettings:
    """The parsed TOML (``tomllib``) → settings; errors start with ``source`` when given."""
    try:
        file = _convert(data, _File, "")
        written_auth = data.get("auth", {})
        return SecuritySettings(
            auth=_auth(file.auth, "jwt_secret" in written_auth, env),
            policies=tuple(_policy(p, f"policy[{i}]") for i, p in enumerate(file.policy)),
            rate_limits=_rates(file.rate_limits),
            encryption=_encryption(file.encryption, env),
            http=_http(file.http, env),
            source=source,
            auth_section="auth" in data,
        )
    except SettingsError as exc:
        if not source:
            raise
        raise SettingsError(f"{source}: {exc.message}") from None


def secret(value: str, env: Mapping[str, str], where: str) -> str:
    """``env:NAME`` → the variable's value (which must be set); anything else as written."""
    if value.startswith("env:"):
        name = value[4:]
        found = env.get(name)
        if not found:
            raise SettingsError(f"{where} names the environment variable {name}, which is not set")
        return found
    return value


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


def _names(value: _Names | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list) else (value,)


def _auth(auth: AuthSettings, secret_written: bool, env: Mapping[str, str]) -> AuthSettings:
    if secret_written:
        jwt_secret = secret(auth.jwt_secret, env, "auth.jwt_secret")
        if len(jwt_secret) < 32:
            raise SettingsError("auth.jwt_secret must be at least 32 characters long "
                                "(as PostgREST requires)")
        auth = msgspec.structs.replace(auth, jwt_secret=jwt_secret)
    if auth.jwks_file and not Path(auth.jwks_file).is_file():
        raise SettingsError(f"auth.jwks_file: no file at {auth.jwks_file}")
    return auth


def _expand(action: _ActionName) -> tuple[Action, ...]:
    match action:
        case "*" | "all":
            return ACTIONS
        case _:
            return (action,)


def _policy(p: _Policy, where: str) -> PolicySpec:
    if not p.role:
        raise SettingsError(f"{where}.role is required")
    rpc = _names(p.rpc)
    if not p.table and not rpc:
        raise SettingsError(f"{where} needs a table (or rpc)")
    named: tuple[_ActionName, ...] = (() if p.actions is None else tuple(p.actions)
                                      if isinstance(p.actions, list) else (p.actions,))
    if p.table and not named:
        raise SettingsError(f"{where}.actions is required, e.g. [\"select\"]")
    actions = dict.fromkeys(a for name in named for a in _expand(name))
    return PolicySpec(role=p.role, table=p.table, actions=tuple(actions),
                      columns=None if p.columns is None else _names(p.columns), rows=p.rows,
                      check=p.check, rpc=rpc, aggregates=p.aggregates)


def _rates(written: Mapping[str, Any]) -> RateLimitSettings:
    reserved = _RateLimits.__struct_fields__
    d = _convert({k: v for k, v in written.items() if k in reserved}, _RateLimits,
                 "rate_limits")

    def rate(text: str | None, where: str) -> Rate | None:
        return None if text is None else parse_rate(text, where)

    roles = {k: parse_rate(v, f"rate_limits.{k}") for k, v in written.items()
             if k not in reserved}
    totals = {k: parse_rate(v, f"rate_limits.roles_total.{k}")
              for k, v in d.roles_total.items()}
    overrides = tuple(RateOverride(parse_rate(o.limit, f"rate_limits.override[{i}].limit"),
                                   o.table, o.action, o.role)
                      for i, o in enumerate(d.override))
    proxies = []
    for p in _names(d.trusted_proxies):
        try:
            proxies.append(ipaddress.ip_network(p, strict=False))
        except ValueError:
            raise SettingsError(f"rate_limits.trusted_proxies: {p!r} is not an address or "
                                "network") from None
    return RateLimitSettings(address=rate(d.address, "rate_limits.address"),
                             failed_auth=rate(d.failed_auth, "rate_limits.failed_auth"),
                             principal=rate(d.principal, "rate_limits.principal"),
                             roles=roles, roles_total=totals, overrides=overrides,
                             trusted_proxies=tuple(proxies), ipv6_prefix=d.ipv6_prefix)


def _http(h: _Http, env: Mapping[str, str]) -> HttpSettings:
    token = secret(h.metrics_token, env, "http.metrics_token") if h.metrics_token else ""
    if token and len(token) < 16:
        raise SettingsError("http.metrics_token must be at least 16 characters long")
    return HttpSettings(cors_origins=_names(h.cors_origins), tx_end=h.tx_end,
                        tx_override_roles=_names(h.tx_override_roles),
                        metrics_roles=_names(h.metrics_roles), metrics_token=token,
                        plan_roles=_names(h.plan_roles))


def _encryption(e: _Encryption, env: Mapping[str, str]) -> EncryptionSettings:
    keys: dict[str, bytes] = {}
    for kid, value in e.keys.items():
        where = f"encryption.keys.{kid}"
        if not kid.replace("-", "").replace("_", "").isalnum() or ":" in kid:
            raise SettingsError(f"{where}: key ids are letters, digits, - and _")
        # Resolved before the try: a missing variable is its own error, not "not base64".
        text = secret(_convert(value, str, where), env, where)
        try:
            key = base64.b64decode(text, validate=True)
        except ValueError:
            raise SettingsError(f"{where} is not base64") from None
        if len(key) not in (16, 24, 32):
            raise SettingsError(f"{where} must decode to 16, 24 or 32 bytes (AES-GCM)")
        keys[kid] = key
    columns: set[tuple[str, str]] = set()
    for c in _names(e.columns):
        table, dot, column = c.partition(".")
        if not dot or not table or not column:
            raise SettingsError(f"encryption.columns: {c!r} is not table.column")
        columns.add((table, column))
    current = e.current_key
    if columns and not keys:
        raise SettingsError("encryption.columns are listed but encryption.keys is empty")
    if keys and not current:
        if len(keys) != 1:
            raise SettingsError("encryption.current_key must name one of encryption.keys")
        current = next(iter(keys))
    if current and current not in keys:
        raise SettingsError(f"encryption.current_key {current!r} is not in encryption.keys")
    return EncryptionSettings(keys=keys, current_key=current, columns=frozenset(columns))


# --- errors in the file's terms ---------------------------------------------------------------

_TOML_AT = re.compile(r"(?P<reason>.*?) \((?:at )?(?P<at>line \d+, column \d+|end of document)\)")
_MSGSPEC_AT = re.compile(r"(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?")
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_EXPECTED = re.compile(r"Expected `(?P<kinds>[^`]+)`(?P<bound>[^,]*)(?:, got `(?P<got>[^`]+)`)?")
_KINDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
          "array": "an array", "object": "a table", "datetime": "a date-time", "date": "a date",
          "time": "a time"}


def _toml_error(path: str, message: str) -> str:
    """tomllib's ``Invalid value (at line 3, column 7)`` → ``path: line 3, column 7: ...``."""
    m = _TOML_AT.fullmatch(message)
    reason, at = (m["reason"], m["at"].replace("document", "file")) if m else (message, "")
    return f"{path}: {at + ': ' if at else ''}not valid TOML: {reason[:1].lower()}{reason[1:]}"


def _convert(value: Any, kind: type[_T], where: str) -> _T:
    """``msgspec.convert``, its error told in the file's terms: the key path from the file's
    top, the value found and what is allowed."""
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise SettingsError(_explain(str(exc), value, kind, where)) from None


def _explain(message: str, value: Any, kind: Any, where: str) -> str:
    m = _MSGSPEC_AT.fullmatch(message)
    what, path = (m["what"], m["path"] or "") if m else (message, "")
    steps: list[str | int] = [key or int(index) for key, index in _STEP.findall(path)]
    at = (where + path).lstrip(".")
    prefix = f"{at}: " if at else ""
    found = _value_at(value, steps)
    if unknown := re.fullmatch(r"Object contains unknown field `(.*)`", what):
        noun = "key" if at else "section"
        allowed = ", ".join(_keys(_type_at(kind, steps)))
        return f"{prefix}unknown {noun} {unknown[1]!r} (allowed: {allowed})"
    if missing := re.fullmatch(r"Object missing required field `(.*)`", what):
        return f"{at + '.' if at else ''}{missing[1]} is required"
    if what.startswith("Invalid enum value"):
        allowed = ", ".join(str(v) for v in _values(_type_at(kind, steps)))
        return f"{prefix}{_show(found)} is not one of {allowed}"
    if expected := _EXPECTED.fullmatch(what):
        # TOML has no null: "or nothing" would only confuse
        kinds = " or ".join(_KINDS.get(k, k) for k in expected["kinds"].split(" | ")
                            if k != "null")
        if isinstance(found, (str, int, float)):
            return f"{prefix}{_show(found)} is not {kinds}{expected['bound']}"
        got = expected["got"]
        return f"{prefix}expected {kinds}{expected['bound']}" + (
            f", got {_KINDS.get(got, got)}" if got else "")
    return f"{prefix}{what[:1].lower()}{what[1:]}"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _value_at(value: Any, steps: list[str | int]) -> Any:
    for step in steps:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _alternatives(kind: Any) -> tuple[Any, ...]:
    return get_args(kind) if get_origin(kind) in (Union, types.UnionType) else (kind,)


def _type_at(kind: Any, steps: list[str | int]) -> Any:
    """The declared type found at a msgspec error path, for the allowed keys or values."""
    for step in steps:
        inner: Any = None
        for k in _alternatives(kind):
            if isinstance(step, int) and get_origin(k) is list:
                inner = get_args(k)[0]
            elif isinstance(step, str) and get_origin(k) is dict:
                inner = get_args(k)[1]
            elif isinstance(step, str) and isinstance(k, type) and issubclass(k, msgspec.Struct):
                fields = {f.encode_name: f.type for f in msgspec.structs.fields(k)}
                inner = fields.get(step, inner)
            if inner is not None:
                break
        kind = inner
    return kind


def _keys(kind: Any) -> list[str]:
    return [f.encode_name for k in _alternatives(kind)
            if isinstance(k, type) and issubclass(k, msgspec.Struct)
            for f in msgspec.structs.fields(k)]


def _values(kind: Any) -> list[Any]:
    found = [v for k in _alternatives(kind) if get_origin(k) is Literal for v in get_args(k)]
    return list(dict.fromkeys(found))
