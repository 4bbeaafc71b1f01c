"""Settings: values derived from them."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

import pytest

from headwater.cli import main
from headwater.config import Settings
from headwater.errors import ConfigError, HeadwaterError, InvalidSetting


def test_retry_delays_double_up_to_the_cap() -> None:
    s = Settings(worker_max_attempts=6, worker_retry_delay=0.5, worker_retry_max_delay=3)
    assert s.retry_delays() == (0.5, 1.0, 2.0, 3.0, 3.0)
    assert Settings(worker_max_attempts=1).retry_delays() == ()
    assert Settings.from_env({"HEADWATER_WORKER_MAX_ATTEMPTS": "3"}).worker_max_attempts == 3


BOOL_HELP = "(true/false, 1/0, yes/no, on/off)"


@pytest.mark.parametrize(("raw", "value"), [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("On", True), (" true ", True),
    ("false", False), ("False", False), ("0", False), ("no", False), ("OFF", False),
])
def test_booleans_accept_the_usual_words(raw: str, value: bool) -> None:
    assert Settings.from_env({"HEADWATER_CACHE_ENABLED": raw}).cache_enabled is value


@pytest.mark.parametrize("raw", ["ture", "", "2", "y", "enabled", "nope"])
def test_a_misspelt_boolean_is_an_error_not_false(raw: str) -> None:
    # The old parser read anything but 1/true/yes/on as False: a typo disabled the cache.
    with pytest.raises(InvalidSetting) as exc:
        Settings.from_env({"HEADWATER_CACHE_ENABLED": raw})
    assert str(exc.value) == f"HEADWATER_CACHE_ENABLED: {raw!r} is not a boolean {BOOL_HELP}"


@pytest.mark.parametrize(("raw", "value"), [("8080", 8080), (" 42 ", 42), ("0", 0),
                                            ("+7", 7)])
def test_integers(raw: str, value: int) -> None:
    assert Settings.from_env({"HEADWATER_PORT": raw}).port == value


@pytest.mark.parametrize("raw", ["80a", "", "3.0", "1_000", "1e3", "\u0663"])
def test_a_bad_integer_is_an_error(raw: str) -> None:
    with pytest.raises(InvalidSetting) as exc:
        Settings.from_env({"HEADWATER_PORT": raw})
    assert str(exc.value) == f"HEADWATER_PORT: {raw!r} is not an integer"


@pytest.mark.parametrize(("raw", "value"), [("0.5", 0.5), ("2", 2.0), ("1e-3", 0.001)])
def test_numbers(raw: str, value: float) -> None:
    assert Settings.from_env({"HEADWATER_POOL_TIMEOUT": raw}).pool_timeout == value


@pytest.mark.parametrize("raw", ["soon", "", "nan", "inf", "-infinity", "1,5"])
def test_a_bad_number_is_an_error(raw: str) -> None:
    with pytest.raises(InvalidSetting) as exc:
        Settings.from_env({"HEADWATER_POOL_TIMEOUT": raw})
    assert str(exc.value) == f"HEADWATER_POOL_TIMEOUT: {raw!r} is not a number"


@pytest.mark.parametrize(("name", "raw"), [("HEADWATER_STATEMENT_TIMEOUT", "-3"),
                                           ("HEADWATER_MAX_ROWS", "-1")])
def test_a_negative_count_or_duration_is_an_error(name: str, raw: str) -> None:
    with pytest.raises(InvalidSetting) as exc:
        Settings.from_env({name: raw})
    assert str(exc.value) == f"{name}: {raw!r} is negative; give 0 or more"


def test_choices_are_checked_and_case_insensitive() -> None:
    s = Settings.from_env({"HEADWATER_CACHE_MODE": "Bounded", "HEADWATER_LOG_LEVEL": "WARNING"})
    assert (s.cache_mode, s.log_level) == ("bounded", "warning")
    with pytest.raises(InvalidSetting) as exc:
        Settings.from_env({"HEADWATER_CACHE_MODE": "bonded"})
    assert str(exc.value) == "HEADWATER_CACHE_MODE: 'bonded' is not one of strict, bounded"


def test_strings_are_taken_as_written() -> None:
    s = Settings.from_env({"HEADWATER_HOST": " 0.0.0.0", "HEADWATER_CACHE_EXCLUDE": ""})
    assert (s.host, s.cache_exclude) == (" 0.0.0.0", "")


def test_flags_go_through_the_same_checks() -> None:
    env = {"HEADWATER_PORT": "1", "HEADWATER_LOG_LEVEL": "debug"}
    s = Settings.from_env(env, port=8080, log_level="ERROR", host=None, insecure=True)
    assert (s.port, s.log_level, s.host, s.insecure) == (8080, "error", "127.0.0.1", True)
    assert Settings.from_env(env, relay_poll_interval="0.25").relay_poll_interval == 0.25
    with pytest.raises(InvalidSetting) as exc:
        Settings.from_env({}, log_level="verbose")
    assert str(exc.value) == ("--log-level: 'verbose' is not one of debug, info, warning, "
                              "error, critical")


def test_to_env_round_trips() -> None:
    # how worker processes get their settings: every value must parse back strictly
    s = Settings(port=8081, cache_enabled=False, insecure=True, cache_mode="bounded",
                 pool_timeout=0.5, log_level="warning", cache_exclude="a,b")
    assert Settings.from_env(s.to_env()) == s
    assert Settings.from_env(Settings().to_env()) == Settings()
    assert {f.name for f in fields(Settings)} == {
        k.removeprefix("HEADWATER_").lower() for k in s.to_env()}


def test_workers_is_a_number_or_auto() -> None:
    assert Settings().workers == "auto"
    assert Settings.from_env({"HEADWATER_WORKERS": "AUTO"}).workers == "auto"
    assert Settings.from_env({"HEADWATER_WORKERS": "3"}).workers == 3
    assert Settings.from_env({}, workers="2").workers == 2
    with pytest.raises(InvalidSetting, match=r"--workers: 'x' is not an integer or auto"):
        Settings.from_env({}, workers="x")


def test_invalid_setting_is_in_the_error_tree_and_still_a_value_error() -> None:
    with pytest.raises(ValueError, match="HEADWATER_WORKERS") as exc:
        Settings.from_env({"HEADWATER_WORKERS": "many"})
    assert isinstance(exc.value, ConfigError) and isinstance(exc.value, HeadwaterError)
    assert exc.value.code == InvalidSetting.code != ConfigError.code


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
            env: dict[str, str], *args: str) -> tuple[int, str]:
    """``headwater ARGS`` in-process, as the console script runs it: (status, stderr)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", ["headwater", *args])
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # Typer replaces it
    with pytest.raises(SystemExit) as exc:
        main()
    code = exc.value.code
    return code if isinstance(code, int) else 1, capsys.readouterr().err


def test_serve_reports_a_bad_variable_as_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    status, err = run_cli(monkeypatch, capsys, {"HEADWATER_CACHE_ENABLED": "ture"},
                          "serve", f"sqlite:///{tmp_path / 'none.db'}")
    assert status == 2
    assert err == f"HEADWATER_CACHE_ENABLED: 'ture' is not a boolean {BOOL_HELP}\n"


def test_serve_reports_a_bad_flag_as_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    status, err = run_cli(monkeypatch, capsys, {}, "serve", f"sqlite:///{tmp_path / 'x.db'}",
                          "--log-level", "loud")
    assert status == 2
    assert err == "--log-level: 'loud' is not one of debug, info, warning, error, critical\n"


def test_serve_reports_a_bad_settings_file_as_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    config = tmp_path / "headwater.toml"
    config.write_text('[[policy]]\nrole = "x"\ntable = "t"\nactions = ["selct"]\n')
    status, err = run_cli(monkeypatch, capsys, {}, "serve", f"sqlite:///{tmp_path / 'x.db'}",
                          "--config", str(config))
    assert status == 2
    assert err == (f"{config}: policy[0].actions[0]: 'selct' is not one of select, insert, "
                   "update, delete, *, all\n")
    config.write_text('[[policy]]\nrole = "x"\ntable = "t"\nactions = ["select"]\n'
                      'rows = "select=a"\n')
    status, err = run_cli(monkeypatch, capsys, {}, "serve", f"sqlite:///{tmp_path / 'x.db'}",
                          "--config", str(config))
    assert status == 2
    assert err == (f"{config}: policy[0] (x, t).rows: 'select' is not a filter on a column "
                   "of the table\n")


def test_worker_reports_a_bad_variable_as_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    status, err = run_cli(monkeypatch, capsys, {"HEADWATER_WORKER_MAX_ATTEMPTS": "lots"},
                          "worker")
    assert (status, err) == (2, "HEADWATER_WORKER_MAX_ATTEMPTS: 'lots' is not an integer\n")
