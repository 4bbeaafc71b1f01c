"""The settings file: errors that name the key, env indirection, rates."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

import pytest

from headwater.errors import ConfigError, HeadwaterError, SettingsError
from headwater.service.policy import PolicySet
from headwater.settings_file import (
    AuthSettings,
    EncryptionSettings,
    HttpSettings,
    PolicySpec,
    Rate,
    RateLimitSettings,
    RateOverride,
    SecuritySettings,
    load_security,
    parse_rate,
    parse_security,
)


@pytest.mark.parametrize(("text", "error"), [
    ("[[policy]]\nrole='x'\ntable='t'\n", "actions"),
    ("[[policy]]\nrole='x'\ntable='t'\nactions=['drop']\n", "drop"),
    ("[auth]\njwt_secret='short'\n", "32 characters"),
    ("[auth]\njwt_secret='env:NOPE_NOT_SET'\n", "NOPE_NOT_SET"),
    ("[auth]\nbogus=1\n", "bogus"),
    ("[rate_limits]\naddress='lots'\n", "60/minute"),
    ("[rate_limits]\ntrusted_proxies=['not-an-ip']\n", "trusted_proxies"),
    ("[encryption]\nkeys={k='AAAA'}\n", "16, 24 or 32"),
    ("[encryption]\ncolumns=['t.c']\n", "keys"),
    ("[nonsense]\n", "nonsense"),
])
def test_settings_errors_name_the_key(text: str, error: str) -> None:
    import tomllib

    with pytest.raises(SettingsError, match=error):
        parse_security(tomllib.loads(text), {})


def test_settings_file_env_indirection(tmp_path: Path) -> None:
    path = tmp_path / "headwater.toml"
    path.write_text('[auth]\njwt_secret = "env:HW_UNIT_SECRET"\nanonymous_role = "anon"\n')
    s = load_security(str(path), {"HW_UNIT_SECRET": "z" * 40})
    assert s.auth.jwt_secret == "z" * 40 and s.enforced
    assert not load_security("").enforced
    with pytest.raises(SettingsError, match="cannot read"):
        load_security(str(tmp_path / "missing.toml"))


def test_rates() -> None:
    assert (parse_rate("300/minute", "x").amount, parse_rate("300/minute", "x").seconds) == \
        (300, 60)
    assert parse_rate("10/5minutes", "x").seconds == 300
    assert parse_rate("1 / day", "x").seconds == 86400


KEY16 = "MDEyMzQ1Njc4OWFiY2RlZg=="  # b"0123456789abcdef"

FULL = f"""
[auth]
jwt_secret = "env:HW_TEST_SECRET"
audience = "headwater"
clock_skew_seconds = 5
require_exp = true
anonymous_role = "anon"
api_key_cache_seconds = 2
key_usage_flush_seconds = 0.5

[[policy]]
role = "anon"
table = "products"
actions = "select"
columns = "name"

[[policy]]
role = "admin"
table = "*"
actions = ["*", "select"]
rows = "id=gt.0"
check = ""
rpc = ["checkout"]

[[policy]]
role = "svc"
rpc = "ping"

[rate_limits]
address = "300/minute"
failed_auth = "10/minute"
principal = "2/5seconds"
anon = "60/minute"
trusted_proxies = ["10.0.0.0/8", "127.0.0.1"]
[rate_limits.roles_total]
anon = "5000/hour"
[[rate_limits.override]]
table = "orders"
action = "insert"
limit = "10/minute"

[encryption]
keys = {{ k1 = "{KEY16}", k2 = "env:HW_TEST_KEY" }}
current_key = "k2"
columns = ["orders.note"]

[http]
cors_origins = "https://shop.example"
"""


def test_a_full_file_gives_the_same_objects_as_before() -> None:
    env = {"HW_TEST_SECRET": "s" * 32, "HW_TEST_KEY": KEY16}
    got = parse_security(tomllib.loads(FULL), env, source="hw.toml")
    minute = 60
    assert got == SecuritySettings(
        auth=AuthSettings(jwt_secret="s" * 32, audience="headwater", clock_skew_seconds=5,
                          require_exp=True, anonymous_role="anon", api_key_cache_seconds=2.0,
                          key_usage_flush_seconds=0.5),
        policies=(
            PolicySpec(role="anon", table="products", actions=("select",), columns=("name",)),
            PolicySpec(role="admin", table="*", actions=("select", "insert", "update", "delete"),
                       rows="id=gt.0", check="", rpc=("checkout",)),
            PolicySpec(role="svc", rpc=("ping",)),
        ),
        rate_limits=RateLimitSettings(
            address=Rate(300, minute, "300/minute"), failed_auth=Rate(10, minute, "10/minute"),
            principal=Rate(2, 5, "2/5seconds"), roles={"anon": Rate(60, minute, "60/minute")},
            roles_total={"anon": Rate(5000, 3600, "5000/hour")},
            overrides=(RateOverride(Rate(10, minute, "10/minute"), "orders", "insert", "*"),),
            trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),
                             ipaddress.ip_network("127.0.0.1/32"))),
        encryption=EncryptionSettings(keys={"k1": b"0123456789abcdef",
                                            "k2": b"0123456789abcdef"},
                                      current_key="k2", columns=frozenset({("orders", "note")})),
        http=HttpSettings(cors_origins=("https://shop.example",)),
        source="hw.toml",
        auth_section=True,
    )
    assert isinstance(got.auth.api_key_cache_seconds, float)
    assert got.enforced and got.rate_limits.enabled


def test_operator_endpoints_and_ipv6_settings() -> None:
    text = ("[http]\nmetrics_roles = 'admin'\nmetrics_token = 'env:HW_M'\n"
            "[rate_limits]\nipv6_prefix = 56\n")
    got = parse_security(tomllib.loads(text), {"HW_M": "m" * 20})
    assert got.http.metrics_roles == ("admin",)
    assert got.http.metrics_token == "m" * 20
    assert "m" * 20 not in repr(got)  # a secret is not logged with the settings
    assert got.rate_limits.ipv6_prefix == 56
    assert SecuritySettings().rate_limits.ipv6_prefix == 64


def test_defaults() -> None:
    empty = parse_security({}, {})
    assert empty == SecuritySettings() and not empty.enforced
    assert not empty.rate_limits.enabled
    assert load_security("") == SecuritySettings()


def error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    path = tmp_path / "headwater.toml"
    path.write_text(text)
    with pytest.raises(SettingsError) as exc:
        PolicySet(load_security(str(path), env or {}))
    message = str(exc.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message.removeprefix(f"{path}: ")


@pytest.mark.parametrize(("text", "message"), [
    # the shape, from msgspec
    ("[nonsense]\n", "unknown section 'nonsense' (allowed: auth, policy, rate_limits, "
                     "encryption, http)"),
    ("[auth]\nbogus = 1\n", "auth: unknown key 'bogus' (allowed: jwt_secret, jwks_file, "
     "audience, issuer, role_claim, clock_skew_seconds, require_exp, anonymous_role, "
     "api_keys, api_key_cache_seconds, key_usage_flush_seconds)"),
    ("[[policy]]\nrole = 'x'\ntable = 't'\nactions = ['selct']\n",
     "policy[0].actions[0]: 'selct' is not one of select, insert, update, delete, *, all"),
    ("[[policy]]\nrole = 'x'\ntable = 't'\nactions = 'drop'\n",
     "policy[0].actions: 'drop' is not one of select, insert, update, delete, *, all"),
    ("[[policy]]\nrole = 'x'\ntable = 't'\nactions = ['select']\nwhere = 'a=eq.1'\n",
     "policy[0]: unknown key 'where' (allowed: role, table, actions, columns, rows, check, "
     "rpc, aggregates)"),
    ("[[policy]]\ntable = 't'\nactions = ['select']\n", "policy[0].role is required"),
    ("[policy]\nrole = 'x'\n", "policy: expected an array, got a table"),
    ("[[policy]]\nrole = 'x'\ntable = 't'\nactions = ['select']\ncolumns = [1]\n",
     "policy[0].columns[0]: 1 is not a string"),
    ("[auth]\nrequire_exp = 'yes'\n", "auth.require_exp: 'yes' is not true or false"),
    ("[auth]\nclock_skew_seconds = -1\n", "auth.clock_skew_seconds: -1 is not an integer >= 0"),
    ("[auth]\napi_key_cache_seconds = true\n",
     "auth.api_key_cache_seconds: true is not a number"),
    ("[rate_limits]\naddress = 5\n", "rate_limits.address: 5 is not a string"),
    ("[rate_limits]\nroles_total = 'x'\n", "rate_limits.roles_total: 'x' is not a table"),
    ("[[rate_limits.override]]\naction = 'drop'\nlimit = '1/second'\n",
     "rate_limits.override[0].action: 'drop' is not one of select, insert, update, delete, *"),
    ("[[rate_limits.override]]\ntable = 'orders'\n", "rate_limits.override[0].limit is required"),
    ("[encryption]\nkeys = { k1 = 3 }\n", "encryption.keys.k1: 3 is not a string"),
    ("[http]\ncors = []\n", "http: unknown key 'cors' (allowed: cors_origins, tx_end, "
                              "tx_override_roles, metrics_roles, plan_roles, metrics_token)"),
    ("[rate_limits]\nipv6_prefix = 0\n",
     "rate_limits.ipv6_prefix: 0 is not an integer >= 1"),
    ("[http]\nmetrics_token = 'short'\n",
     "http.metrics_token must be at least 16 characters long"),
    ("[http]\nmetrics_token = 'env:HW_NOT_SET'\n",
     "http.metrics_token names the environment variable HW_NOT_SET, which is not set"),
    # what a type cannot say, by hand: the messages as before
    ("[[policy]]\nrole = ''\ntable = 't'\nactions = ['select']\n", "policy[0].role is required"),
    ("[[policy]]\nrole = 'x'\n", "policy[0] needs a table (or rpc)"),
    ("[[policy]]\nrole = 'x'\ntable = 't'\n", 'policy[0].actions is required, e.g. ["select"]'),
    ("[auth]\njwt_secret = 'short'\n",
     "auth.jwt_secret must be at least 32 characters long (as PostgREST requires)"),
    ("[auth]\njwt_secret = ''\n",
     "auth.jwt_secret must be at least 32 characters long (as PostgREST requires)"),
    ("[auth]\njwt_secret = 'env:NOPE_NOT_SET'\n",
     "auth.jwt_secret names the environment variable NOPE_NOT_SET, which is not set"),
    ("[auth]\njwks_file = '/nonexistent/keys.json'\n",
     "auth.jwks_file: no file at /nonexistent/keys.json"),
    ("[rate_limits]\nanon = 5\n", 'rate_limits.anon must be a string such as "60/minute"'),
    ("[rate_limits]\naddress = 'lots'\n",
     "rate_limits.address: 'lots' is not a rate such as \"60/minute\""),
    ("[rate_limits.roles_total]\nanon = '1/fortnight'\n",
     "rate_limits.roles_total.anon: '1/fortnight' is not a rate such as \"60/minute\""),
    ("[rate_limits]\ntrusted_proxies = ['not-an-ip']\n",
     "rate_limits.trusted_proxies: 'not-an-ip' is not an address or network"),
    ("[encryption]\nkeys = { k1 = 'AAAA' }\n",
     "encryption.keys.k1 must decode to 16, 24 or 32 bytes (AES-GCM)"),
    ("[encryption]\nkeys = { k1 = '!!' }\n", "encryption.keys.k1 is not base64"),
    ("[encryption]\nkeys = { 'k:1' = 'AAAA' }\n",
     "encryption.keys.k:1: key ids are letters, digits, - and _"),
    # the variable is resolved first: a missing one is not reported as "not base64"
    ("[encryption]\nkeys = { k1 = 'env:NO_KEY' }\n",
     "encryption.keys.k1 names the environment variable NO_KEY, which is not set"),
    ("[encryption]\ncolumns = ['t.c']\n",
     "encryption.columns are listed but encryption.keys is empty"),
    ("[encryption]\ncolumns = 'nodot'\n", "encryption.columns: 'nodot' is not table.column"),
    (f"[encryption]\nkeys = {{ a = '{KEY16}', b = '{KEY16}' }}\n",
     "encryption.current_key must name one of encryption.keys"),
    (f"[encryption]\nkeys = {{ a = '{KEY16}' }}\ncurrent_key = 'z'\n",
     "encryption.current_key 'z' is not in encryption.keys"),
    # the row filters, checked by the policy set (prefixed by the caller: see test_config)
    ("[[policy]]\nrole = 'x'\ntable = 't'\nactions = ['select']\nrows = 'select=a'\n",
     "policy[0] (x, t).rows: 'select' is not a filter on a column of the table"),
])
def test_errors_name_the_file_the_key_and_what_is_allowed(tmp_path: Path, text: str,
                                                          message: str) -> None:
    if "rows = " in text:
        # PolicySet's own errors carry no file name: check_serving adds it
        with pytest.raises(SettingsError) as exc:
            PolicySet(parse_security(tomllib.loads(text), {}))
        assert str(exc.value) == message
        return
    assert error(tmp_path, text) == message


def test_toml_syntax_errors_give_line_and_column(tmp_path: Path) -> None:
    assert error(tmp_path, "[auth]\nrole_claim = = 1\n") == (
        "line 2, column 14: not valid TOML: invalid value")
    assert error(tmp_path, "[auth]\nrole_claim = 'x") == (
        "end of file: not valid TOML: expected \"'\"")


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(SettingsError) as exc:
        load_security(str(missing))
    assert str(exc.value) == f"{missing}: cannot read the settings file: No such file or directory"
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"[auth]\nrole_claim = 'r\xf4le'\n")
    with pytest.raises(SettingsError, match="not UTF-8 text"):
        load_security(str(latin))


def test_settings_error_is_a_config_error_and_still_a_value_error() -> None:
    with pytest.raises(ValueError, match="nonsense") as exc:
        parse_security({"nonsense": {}}, {})
    assert isinstance(exc.value, ConfigError) and isinstance(exc.value, HeadwaterError)
    assert exc.value.code == SettingsError.code != ConfigError.code
