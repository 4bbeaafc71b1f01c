"""The settings file: errors that name the key, env indirection, rates."""

from __future__ import annotations

from pathlib import Path

import pytest

from headwater.settings_file import SettingsError, load_security, parse_rate, parse_security


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
