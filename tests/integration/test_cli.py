"""The command line off the happy path (issue 17): every mistake is one line on stderr with
exit status 2, never a traceback; serving changes nothing it need not; demo never overwrites."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from headwater.testing import ServerProcess, free_port
from tests.conftest import _pg_execute, pg_url_for


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    return subprocess.run([sys.executable, "-m", "headwater", *args], cwd=cwd,
                          env={**base, **(env or {})}, capture_output=True, text=True,
                          timeout=60, check=False)


def assert_usage_error(p: subprocess.CompletedProcess[str], *words: str) -> None:
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 2, p.stderr
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, p.stderr
    for w in words:
        assert w in lines[0], lines[0]


def make_db(path: Path) -> Path:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes (body) VALUES ('a'), ('b')")
        conn.commit()
    return path


def table_names(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(("url", "words"), [
    ("nope.db", ("no SQLite database", "nope.db")),
    ("sqlite:///nope.db", ("no SQLite database",)),
    ("mysql://u@h/db", ("unsupported", "mysql", "postgresql://")),
    ("http://example.com/x", ("unsupported", "http")),
    ("", ("empty",)),
    ("postgresql://postgres@127.0.0.1:99999/x", ("port",)),
    ("postgresql://postgres@127.0.0.1:abc/x", ("port",)),
])
def test_serve_bad_database(tmp_path: Path, url: str, words: tuple[str, ...]) -> None:
    assert_usage_error(run("serve", url, cwd=tmp_path), *words)


def test_serve_a_directory(tmp_path: Path) -> None:
    assert_usage_error(run("serve", str(tmp_path)), "directory")


def test_serve_a_text_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    assert_usage_error(run("serve", str(tmp_path / "notes.txt")), "not a SQLite database")


def test_bad_ports(tmp_path: Path) -> None:
    db = make_db(tmp_path / "my.db")
    assert_usage_error(run("serve", str(db), "--port", "99999"), "--port", "99999")
    assert_usage_error(run("serve", str(db), "--port", "abc"), "--port")
    assert_usage_error(run("serve", str(db), env={"HEADWATER_PORT": "abc"}), "HEADWATER_PORT")
    assert_usage_error(run("serve", str(db), env={"HEADWATER_PORT": "70000"}), "HEADWATER_PORT")


def test_missing_app_module(tmp_path: Path) -> None:
    db = make_db(tmp_path / "my.db")
    assert_usage_error(run("serve", str(db), "--app", "no_such_module_x:app", cwd=tmp_path),
                       "--app", "no_such_module_x")


def test_demo_scale_zero(tmp_path: Path) -> None:
    assert_usage_error(run("demo", "d.db", "--scale", "0", cwd=tmp_path), "--scale")
    assert not (tmp_path / "d.db").exists()


@pytest.mark.parametrize("args", [("keys", "list"), ("keys", "create", "--role", "r"),
                                  ("events", "dlq", "list")])
def test_no_database_argument(tmp_path: Path, args: tuple[str, ...]) -> None:
    assert_usage_error(run(*args, cwd=tmp_path), "no database given")
    assert list(tmp_path.iterdir()) == []


def test_postgres_unknown_database_and_role(pg_admin: str) -> None:
    name = "hw_missing_" + secrets.token_hex(4)
    assert_usage_error(run("serve", pg_url_for(name)), f'database "{name}" does not exist')
    role_url = pg_admin.replace("postgres@", "no_such_role_x@", 1)
    assert_usage_error(run("serve", role_url), 'role "no_such_role_x" does not exist')


def test_demo_refuses_existing_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("keep me\n")
    db = make_db(tmp_path / "mine.db")
    before = digest(db)
    assert_usage_error(run("demo", str(text), "--scale", "0.01"), "exists", "--force")
    assert_usage_error(run("demo", str(db), "--scale", "0.01"), "exists")
    assert text.read_text() == "keep me\n"
    assert digest(db) == before
    p = run("demo", str(db), "--scale", "0.01", "--force")
    assert p.returncode == 0, p.stderr
    assert "orders" in table_names(db)


@pytest.fixture
def pg_database(pg_admin: str) -> Iterator[str]:
    name = "hw_cli_" + secrets.token_hex(4)
    asyncio.run(_pg_execute(pg_admin, f'CREATE DATABASE "{name}"'))
    try:
        yield pg_url_for(name)
    finally:
        asyncio.run(_pg_execute(pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_demo_refuses_existing_postgres_tables(pg_database: str) -> None:
    asyncio.run(_pg_execute(pg_database, "CREATE TABLE customers (who text)",
                            "INSERT INTO customers VALUES ('precious')"))
    assert_usage_error(run("demo", pg_database, "--scale", "0.01"), "customers", "--force")

    async def rows() -> list[str]:
        conn = await asyncpg.connect(pg_database)
        try:
            return [r[0] for r in await conn.fetch("SELECT who FROM customers")]
        finally:
            await conn.close()

    assert asyncio.run(rows()) == ["precious"]


def _serve(args: list[str], cwd: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    env["HEADWATER_LOG_LEVEL"] = "warning"
    proc = subprocess.Popen([sys.executable, "-m", "headwater", "serve", *args,
                             "--port", str(port)], cwd=cwd, env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(_stop(proc))
        try:
            if httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(_stop(proc))


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    proc.wait(15)
    assert proc.stderr is not None
    with proc.stderr:
        return proc.stderr.read()


def test_serve_plain_relative_path(tmp_path: Path) -> None:
    make_db(tmp_path / "my.db")
    port = free_port()
    proc = _serve(["my.db"], tmp_path, port)
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/notes?order=id")
        assert r.status_code == 200
        assert [n["body"] for n in r.json()] == ["a", "b"]
    finally:
        err = _stop(proc)
    assert "Traceback" not in err
    assert f"127.0.0.1:{port}/" in err  # the address actually bound


def test_read_only_changes_nothing(tmp_path: Path) -> None:
    db = make_db(tmp_path / "ro.db")
    before = digest(db)
    with ServerProcess(str(db), args=("--read-only",)) as s:
        assert httpx.get(s.url + "/notes").json()[0]["body"] == "a"
        r = httpx.post(s.url + "/notes", json={"body": "c"})
        assert r.status_code == 405
        assert r.json()["code"] == "25006"
        assert "read-only" in r.json()["message"]
        assert httpx.delete(s.url + "/notes?id=eq.1").status_code == 405
    assert digest(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro.db"]


def test_reads_create_no_headwater_tables(tmp_path: Path) -> None:
    """Serving and reading leaves the schema alone; the outbox appears with the first write."""
    db = make_db(tmp_path / "rw.db")
    with ServerProcess(str(db)) as s:
        assert httpx.get(s.url + "/notes").status_code == 200
        names = table_names(db)
        assert not {n for n in names if n.startswith("_headwater")}
        assert httpx.post(s.url + "/notes", json={"body": "c"}).status_code == 201
    names = table_names(db)
    assert "_headwater_outbox" in names


def test_unwritable_file_is_served_read_only(tmp_path: Path) -> None:
    db = make_db(tmp_path / "locked.db")
    db.chmod(0o444)
    port = free_port()
    proc = _serve([str(db)], tmp_path, port)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/notes").status_code == 200
        assert httpx.post(f"http://127.0.0.1:{port}/notes", json={"body": "c"}).status_code == 405
    finally:
        err = _stop(proc)
    assert "not writable" in err and "read-only" in err


def test_version_and_help() -> None:
    p = run("--version")
    assert p.returncode == 0 and p.stdout.startswith("headwater ")
    h = run("serve", "--help", env={"COLUMNS": "200"}).stdout
    options = [line for line in h.splitlines() if line.strip().startswith("--")]
    assert options and not [line for line in options if "<" in line]
    for var in ("HEADWATER_DATABASE_URL", "HEADWATER_PORT", "HEADWATER_HOST", "HEADWATER_APP",
                "HEADWATER_READ_ONLY"):
        assert var in h
    assert "sqlite:////absolute/path.db" in h and "sqlite:///relative/path.db" in h
