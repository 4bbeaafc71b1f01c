"""The settings file checked against the served database at start (issue 17 item 11), and
bad setting values: one line naming the mistake (with a suggestion), exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_cli import assert_usage_error, make_db, run

AUTH = '[auth]\nanonymous_role = "anon"\n'


def policy(table: str = "notes", **keys: str) -> str:
    extra = "".join(f"{k} = {v}\n" for k, v in keys.items())
    return f'[[policy]]\nrole = "anon"\ntable = "{table}"\nactions = ["select"]\n{extra}'


@pytest.mark.parametrize(("text", "words"), [
    (policy(), ("no [auth] section", "[[policy]]")),
    (AUTH + policy("nots"), ("unknown table 'nots'", "did you mean 'notes'")),
    (AUTH + policy(columns='["id", "bdy"]'), ("unknown column 'bdy' of notes",
                                               "did you mean 'body'")),
    (AUTH + policy(rows='"bodi=eq.a"'), ("unknown column 'bodi'", "did you mean 'body'")),
    (AUTH + policy(check='"bodyy=eq.a"'), ("unknown column 'bodyy'",)),
    (AUTH + policy("*", rows='"idd=gt.0"'), ("unknown column 'idd' of any table",
                                             "did you mean 'id'")),
    ('[auth]\nanonymous_role = "anonymous"\n' + policy(),
     ("auth.anonymous_role", "unknown role 'anonymous'", "did you mean 'anon'")),
    (AUTH + policy() + '[rate_limits]\nanno = "5/minute"\n',
     ("rate_limits.anno", "unknown role", "did you mean 'anon'")),
    (AUTH + policy(rows='"id=eq.{claim.sub}"'), ("'{claim.sub}' is not a placeholder",
                                                 "did you mean '{claims.sub}'")),
    (AUTH + policy(rows='"id=eq.{claims.subject}"'), ("unknown claim 'subject'",
                                                      "did you mean 'sub'")),
    (AUTH + policy() + '[encryption]\nkeys = { k1 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYm'
     'NkZWY=" }\ncolumns = ["notes.bdy"]\n', ("encryption.columns", "unknown column 'bdy'")),
])
def test_settings_file_against_the_catalog(tmp_path: Path, text: str,
                                           words: tuple[str, ...]) -> None:
    db = make_db(tmp_path / "my.db")
    config = tmp_path / "headwater.toml"
    config.write_text(text)
    assert_usage_error(run("serve", str(db), "--config", str(config)), "headwater.toml", *words)


@pytest.mark.parametrize(("args", "env", "words"), [
    (("--log-level", "loud"), {}, ("--log-level", "'loud'", "debug, info, warning, error")),
    ((), {"HEADWATER_LOG_LEVEL": "verbose"}, ("HEADWATER_LOG_LEVEL", "debug, info")),
    ((), {"HEADWATER_CACHE_MODE": "eventual"}, ("HEADWATER_CACHE_MODE", "strict, bounded")),
    ((), {"HEADWATER_LOG_FORMAT": "xml"}, ("HEADWATER_LOG_FORMAT", "auto, json, console")),
])
def test_bad_choices_name_the_allowed_values(tmp_path: Path, args: tuple[str, ...],
                                             env: dict[str, str], words: tuple[str, ...]) -> None:
    db = make_db(tmp_path / "my.db")
    assert_usage_error(run("serve", str(db), *args, env=env), *words)


@pytest.mark.parametrize("command", [
    ("serve",), ("demo",), ("worker",), ("relay",), ("events", "dlq", "list"),
    ("events", "dlq", "replay"), ("keys", "create"), ("keys", "list"), ("keys", "revoke"),
    ("keys", "rotate-data")])
def test_help_has_no_type_labels_or_markup(command: tuple[str, ...]) -> None:
    p = run(*command, "--help", env={"COLUMNS": "200"})
    assert p.returncode == 0, p.stderr
    listed = [line for line in p.stdout.splitlines() if line.startswith("  ")]
    assert not [line for line in listed if "<" in line.split("  ")[1]], p.stdout
    assert "``" not in p.stdout and "[bold" not in p.stdout and "[/" not in p.stdout
    if "DATABASE" in p.stdout:
        assert "sqlite:////absolute/path.db" in p.stdout and "my.db" in p.stdout
        assert "postgresql://" in p.stdout and "HEADWATER_DATABASE_URL" in p.stdout


def _without(modules: tuple[str, ...], *args: str, env: dict[str, str] | None = None,
             ) -> subprocess.CompletedProcess[str]:
    """``headwater`` in a process where ``modules`` cannot be imported, as in an install
    without the extra that brings them."""
    code = ("import sys\n"
            f"for m in {modules!r}: sys.modules[m] = None\n"
            f"sys.argv = ['headwater', *{args!r}]\n"
            "from headwater.cli import main\nmain()\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    return subprocess.run([sys.executable, "-c", code], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(("modules", "args", "env", "extra"), [
    (("asyncpg",), ("serve", "postgresql://postgres@127.0.0.1:5432/test"), {}, "postgres"),
    (("asyncpg",), ("demo", "postgresql://postgres@127.0.0.1:5432/test"), {}, "postgres"),
    (("asyncpg",), ("keys", "list", "postgresql://postgres@127.0.0.1:5432/test"), {},
     "postgres"),
    (("redis",), ("serve", "{db}"), {"HEADWATER_REDIS_URL": "redis://127.0.0.1:6379/0"},
     "redis"),
    (("aio_pika",), ("relay", "{db}", "--amqp-url", "amqp://guest:guest@127.0.0.1:5672/"), {},
     "rabbitmq"),
    (("aio_pika",), ("serve", "{db}"), {"HEADWATER_AMQP_URL": "amqp://127.0.0.1:5672/"},
     "rabbitmq"),
])
def test_a_missing_extra_names_its_pip_install(tmp_path: Path, modules: tuple[str, ...],
                                               args: tuple[str, ...], env: dict[str, str],
                                               extra: str) -> None:
    db = str(make_db(tmp_path / "my.db"))
    p = _without(modules, *(a.replace("{db}", db) for a in args), env=env)
    assert_usage_error(p, f"pip install 'headwater[{extra}]'", modules[0])


def test_the_sqlite_demo_imports_no_optional_client(tmp_path: Path) -> None:
    """Serving SQLite never imports asyncpg, redis or aio-pika (the extras it does not need)."""
    db = make_db(tmp_path / "my.db")
    code = ("import sys\n"
            "from headwater.app import create_app\nfrom headwater.config import Settings\n"
            f"create_app(Settings(database_url='sqlite:///{db}'))\n"
            "import headwater.cli, headwater.demo.dataset, headwater.events.worker\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('asyncpg', 'redis', 'aio_pika', 'aiormq', 'pamqp')))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"
