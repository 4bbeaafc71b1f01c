"""Real-world SQLite files: every answer checked against ``sqlite3`` itself on the same file.

The files have what real ones have and a fresh schema does not: views over aggregates (whose
columns have no declared type), BLOBs, untyped columns, text in INTEGER columns, names with
spaces and mixed case, tables without a primary key.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from headwater.testing import ServerProcess, free_port
from tests.conftest import Served
from tests.integration import oracle

SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id),
                     total NUMERIC);
CREATE VIEW totals AS
  SELECT c.id AS customer_id, c.name, count(o.id) AS order_count,
         coalesce(sum(o.total), 0) AS spent, max(o.total) AS biggest
  FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.id, c.name;
CREATE TABLE files (id INTEGER PRIMARY KEY, name TEXT, data BLOB, anything);
CREATE TABLE codes (code INTEGER, label TEXT, "Mixed Case" TEXT, "with space" INTEGER);
CREATE TABLE strict_t (id INTEGER PRIMARY KEY, n INTEGER) STRICT;
CREATE VIEW untyped AS SELECT id, NULL AS blank, anything FROM files;
"""


def _build(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.executemany("INSERT INTO customers VALUES (?, ?)",
                     [(i, f"c{i}") for i in range(1, 41)])
    # customer i has i % 5 orders: 0 to 4, totals integer and real alike
    orders = [(None, i, (j * 7 + i) if j % 2 else (j * 7 + i) + 0.5)
              for i in range(1, 41) for j in range(i % 5)]
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?)", orders)
    conn.executemany("INSERT INTO files VALUES (?, ?, ?, ?)", [
        (1, "png", bytes([0x89, 0x50, 0x4E, 0x47, 0x00, 0xFF]), 10),
        (2, "empty", b"", "10"),
        (3, "none", None, 2.5),
        (4, "text in blob", "plain", b"\x01\x02"),
        (5, "big", bytes(range(256)) * 4, "abc"),
    ])
    conn.executemany("INSERT INTO codes VALUES (?, ?, ?, ?)", [
        (1, "one", "A b", 10), (2, "two", "c D", 20), ("AMANU49", "text code", "E f", 30),
        ("49", "looks numeric", "g h", 40), (2.5, "real", "i j", 50), (None, "null", None, None),
    ])
    conn.execute("INSERT INTO strict_t VALUES (1, 1)")
    conn.commit()
    conn.close()


@pytest.fixture(scope="module")
def sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    path = Path(tmp_path_factory.mktemp("files")) / "real.db"
    _build(path)
    with ServerProcess(f"sqlite:///{path}") as server:
        yield server.url, path


def _sqlite(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def _get(url: str, path: str, **headers: str) -> httpx.Response:
    return httpx.get(url + path, headers=headers, timeout=30)


def _hex(v: Any) -> Any:
    return "\\x" + v.hex() if isinstance(v, bytes) else v


# --- 1. computed view columns ------------------------------------------------------------------

@pytest.mark.parametrize(("query", "where"), [
    ("order_count=lt.2", "order_count < 2"),
    ("order_count=eq.3", "order_count = 3"),
    ("order_count=gte.4", "order_count >= 4"),
    ("order_count=in.(0,4)", "order_count IN (0, 4)"),
    ("order_count=neq.0", "order_count <> 0"),
    ("spent=gt.100", "spent > 100"),
    ("spent=lte.57.5", "spent <= 57.5"),
    ("spent=eq.0", "spent = 0"),
    ("biggest=is.null", "biggest IS NULL"),
    ("biggest=gt.30.5", "biggest > 30.5"),
    ("name=eq.c7", "name = 'c7'"),
])
def test_view_filters_match_sqlite3(sqlite_file: tuple[str, Path], query: str,
                                    where: str) -> None:
    url, path = sqlite_file
    r = _get(url, f"/totals?select=customer_id&{query}&order=customer_id")
    assert r.status_code == 200, r.text
    expected = [c for (c,) in _sqlite(path, f"SELECT customer_id FROM totals WHERE {where} "
                                            "ORDER BY customer_id")]
    assert expected, "the oracle should select something"
    assert [row["customer_id"] for row in r.json()] == expected


def test_view_columns_have_real_types(sqlite_file: tuple[str, Path]) -> None:
    url, _ = sqlite_file
    doc = _get(url, "/", Accept="application/openapi+json").json()
    props = doc["definitions"]["totals"]["properties"] if "definitions" in doc else \
        doc["components"]["schemas"]["totals"]["properties"]
    text = repr(props)
    assert "nulltype" not in text.lower(), props
    assert props["order_count"]["type"] == "integer", props["order_count"]
    assert props["spent"]["type"] == "number", props["spent"]


def test_untyped_columns_are_named_any(sqlite_file: tuple[str, Path]) -> None:
    """No declared type and no one type in the values: SQLite's ANY, not SQLAlchemy's
    ``nulltype`` (the console shows the name)."""
    url, _ = sqlite_file
    schemas = _get(url, "/", Accept="application/openapi+json").json()["components"]["schemas"]
    for table, column in (("files", "anything"), ("untyped", "blank"),
                          ("untyped", "anything")):
        prop = schemas[table]["properties"][column]
        assert prop["x-db-type"] == "any", (table, column, prop)
        assert "type" not in prop, prop  # any JSON value


def test_demo_customer_totals_filters_match_sqlite3(served: Served) -> None:
    if served.dialect != "sqlite":
        pytest.skip("SQLite's view typing; PostgreSQL's view has declared types")
    for query, where in (("order_count=lt.2", "order_count < 2"),
                         ("order_count=eq.21", "order_count = 21"),
                         ("order_count=gt.20", "order_count > 20"),
                         ("total_spent=gt.5000", "total_spent > 5000")):
        r = httpx.get(f"{served.url}/customer_totals?select=customer_id&{query}"
                      "&order=customer_id", timeout=30)
        assert r.status_code == 200, r.text
        expected = oracle.ids(served.database_url,
                              f"SELECT customer_id FROM customer_totals WHERE {where} "
                              "ORDER BY customer_id")
        assert [row["customer_id"] for row in r.json()] == expected, query


# --- 2. BLOBs ----------------------------------------------------------------------------------

def test_blobs_read_as_postgrest_hex_in_json(sqlite_file: tuple[str, Path]) -> None:
    url, path = sqlite_file
    r = _get(url, "/files?order=id")
    assert r.status_code == 200, r.text
    expected = [{"id": i, "name": n, "data": _hex(d), "anything": _hex(a)}
                for i, n, d, a in _sqlite(path, "SELECT id, name, data, anything FROM files "
                                                "ORDER BY id")]
    assert r.json() == expected
    assert r.json()[0]["data"] == "\\x89504e4700ff"
    single = _get(url, "/files?id=eq.1", Accept="application/vnd.pgrst.object+json")
    assert single.status_code == 200 and single.json()["data"] == "\\x89504e4700ff"


def _bs(text: str) -> str:
    return text.replace("\\", "\\\\")


def test_blobs_read_as_hex_in_csv(sqlite_file: tuple[str, Path]) -> None:
    url, path = sqlite_file
    r = _get(url, "/files?order=id", Accept="text/csv")
    assert r.status_code == 200, r.text
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["id", "name", "data", "anything"]
    # record text (PostgREST's CSV) doubles a backslash inside the quotes it then needs
    expected = [[str(i), n or "", "" if d is None else _bs(str(_hex(d))), _bs(str(_hex(a)))]
                for i, n, d, a in _sqlite(path, "SELECT id, name, data, anything FROM files "
                                                "ORDER BY id")]
    assert rows[1:] == expected


def test_blob_filters_and_writes_take_hex(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    _build(path)
    with ServerProcess(f"sqlite:///{path}") as s:
        r = _get(s.url, "/files?select=id&data=eq." + quote("\\x89504e4700ff"))
        assert r.status_code == 200 and r.json() == [{"id": 1}], r.text
        w = httpx.post(s.url + "/files", json={"id": 9, "name": "new", "data": "\\x00ab10"},
                       headers={"Prefer": "return=representation"}, timeout=30)
        assert w.status_code == 201 and w.json()[0]["data"] == "\\x00ab10", w.text
        bad = httpx.post(s.url + "/files", json={"id": 10, "data": "\\xZZ"}, timeout=30)
        assert bad.status_code == 400, bad.text
    assert _sqlite(path, "SELECT data, typeof(data) FROM files WHERE id = 9") == [
        (b"\x00\xab\x10", "blob")]
    assert _sqlite(path, "SELECT count(*) FROM files") == [(6,)]


def test_postgres_bytea_reads_and_writes_hex(pg_admin: str) -> None:
    import asyncio
    import secrets

    from tests.conftest import _pg_execute, pg_url_for

    name = "hw_bytea_" + secrets.token_hex(4)
    asyncio.run(_pg_execute(pg_admin, f'CREATE DATABASE "{name}"'))
    db = pg_url_for(name)
    try:
        oracle.execute(db, "CREATE TABLE files (id int PRIMARY KEY, data bytea);"
                           "INSERT INTO files VALUES (1, '\\x89504e4700ff'::bytea)")
        with ServerProcess(db) as s:
            assert _get(s.url, "/files").json() == [{"id": 1, "data": "\\x89504e4700ff"}]
            csv_body = _get(s.url, "/files", Accept="text/csv").text
            assert csv_body.splitlines() == ["id,data", '1,"\\\\x89504e4700ff"']
            r = _get(s.url, "/files?select=id&data=eq." + quote("\\x89504e4700ff"))
            assert r.json() == [{"id": 1}], r.text
            w = httpx.post(s.url + "/files", json={"id": 2, "data": "\\x00ab10"}, timeout=30)
            assert w.status_code == 201, w.text
            bad = httpx.post(s.url + "/files", json={"id": 3, "data": "\\xZZ"}, timeout=30)
            assert bad.status_code == 400, bad.text
        assert oracle.rows(db, "SELECT id, data FROM files ORDER BY id") == [
            (1, b"\x89PNG\x00\xff"), (2, b"\x00\xab\x10")]
    finally:
        asyncio.run(_pg_execute(pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- 3. flexible typing ------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "where"), [
    ("code=eq.AMANU49", "code = 'AMANU49'"),
    ("code=eq.49", "code = 49"),
    ("code=eq.2.5", "code = 2.5"),
    ("code=gt.1", "code > 1"),
    ("code=in.(1,AMANU49)", "code IN (1, 'AMANU49')"),
    ("code=neq.AMANU49", "code <> 'AMANU49'"),
    ("anything=eq.10", "anything = 10"),
    ("anything=eq.abc", "anything = 'abc'"),
    ("anything=lt.3", "anything < 3"),
])
def test_text_in_integer_columns_filters_match_sqlite3(sqlite_file: tuple[str, Path],
                                                       query: str, where: str) -> None:
    url, path = sqlite_file
    table = "codes" if query.startswith("code") else "files"
    key = "label" if table == "codes" else "id"
    r = _get(url, f"/{table}?select={key}&{query}&order={key}")
    assert r.status_code == 200, r.text
    expected = [k for (k,) in _sqlite(path, f"SELECT {key} FROM {table} WHERE {where} "
                                            f"ORDER BY {key}")]
    assert expected
    assert [row[key] for row in r.json()] == expected


def test_rows_with_text_in_integer_columns_can_be_edited_and_deleted(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    _build(path)
    with ServerProcess(f"sqlite:///{path}") as s:
        r = httpx.patch(s.url + "/codes?code=eq.AMANU49", json={"code": "AMANU50"}, timeout=30)
        assert r.status_code == 204, r.text
        r = httpx.post(s.url + "/codes", json={"code": "X1", "label": "new", "with space": 2.5},
                       timeout=30)
        assert r.status_code == 201, r.text
        r = httpx.delete(s.url + "/codes?code=eq.49", timeout=30)
        assert r.status_code == 204, r.text
        # a STRICT table refuses what it cannot store, before any SQL runs
        r = httpx.post(s.url + "/strict_t", json={"id": 2, "n": "abc"}, timeout=30)
        assert r.status_code == 400 and r.json()["code"] == "22P02", r.text
    assert _sqlite(path, "SELECT code, typeof(code) FROM codes WHERE label = 'text code'") == [
        ("AMANU50", "text")]
    assert _sqlite(path, 'SELECT code, "with space" FROM codes WHERE label = \'new\'') == [
        ("X1", 2.5)]
    assert _sqlite(path, "SELECT count(*) FROM codes WHERE label = 'looks numeric'") == [(0,)]
    assert _sqlite(path, "SELECT count(*) FROM strict_t") == [(1,)]


def test_postgres_still_refuses_text_for_integers(served: Served) -> None:
    if served.dialect != "postgresql":
        pytest.skip("PostgreSQL's typing")
    r = httpx.get(f"{served.url}/orders?id=eq.AMANU49", timeout=30)
    assert r.status_code == 400 and r.json()["code"] == "22P02", r.text


# --- 4. names with spaces and mixed case, no primary key ---------------------------------------

# (The quoted forms, ``"with space"=…``, belong to the grammar's own tests.)
@pytest.mark.parametrize(("query", "where"), [
    ("Mixed Case=eq.c D", "\"Mixed Case\" = 'c D'"),
    ("with space=gte.30", '"with space" >= 30'),
    ("with space=lt.30&label=neq.one", "\"with space\" < 30 AND label <> 'one'"),
])
def test_quoted_names_match_sqlite3(sqlite_file: tuple[str, Path], query: str,
                                    where: str) -> None:
    url, path = sqlite_file
    r = _get(url, f"/codes?select=label&{quote(query, safe='=&.(),')}&order=label")
    assert r.status_code == 200, r.text
    expected = [k for (k,) in _sqlite(path, f"SELECT label FROM codes WHERE {where} "
                                            "ORDER BY label")]
    assert [row["label"] for row in r.json()] == expected


def test_table_without_primary_key_reads_in_full(sqlite_file: tuple[str, Path]) -> None:
    url, path = sqlite_file
    r = _get(url, "/codes?order=label")
    assert r.status_code == 200, r.text
    expected = [{"code": c, "label": lb, "Mixed Case": m, "with space": w}
                for c, lb, m, w in _sqlite(path, 'SELECT code, label, "Mixed Case", '
                                                 '"with space" FROM codes ORDER BY label')]
    assert r.json() == expected


# --- a failure after the status line -----------------------------------------------------------

def test_a_stream_that_fails_midway_is_aborted_and_logged_once(tmp_path: Path) -> None:
    """Invalid UTF-8 in the last row fails while the body is already being sent: the client
    must see a broken response, never a complete-looking truncated 200."""
    path = tmp_path / "bad.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "x" * 50) for i in range(3000)])
    conn.execute("INSERT INTO t VALUES (3000, CAST(X'FF00FE' AS TEXT))")
    conn.commit()
    conn.close()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "headwater", "serve", f"sqlite:///{path}", "--port",
             str(port := free_port())], stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "HEADWATER_LOG_LEVEL": "warning"}, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url)
            for accept in ("text/csv", "application/json"):
                with pytest.raises(httpx.RemoteProtocolError):
                    httpx.get(url + "/t?order=id", headers={"Accept": accept}, timeout=30)
            assert httpx.get(url + "/t?id=lt.5", timeout=30).status_code == 200
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
    text = log.read_text()
    assert "Traceback" not in text, text
    aborted = [line for line in text.splitlines() if "stream_aborted" in line]
    assert len(aborted) == 2, text  # once per failed response


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)
