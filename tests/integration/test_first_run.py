"""A first run (issue 17 items 13 and 16): a browser at ``/`` is sent to the console while API
clients still get the OpenAPI document; the start banner gives the console's address; the
README's example app, shipped as ``headwater.examples.audit``, runs on the demo as written."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from headwater.testing import ServerProcess, free_port
from tests.integration.test_cli import _serve, _stop

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


@pytest.mark.parametrize("accept", [None, "*/*", "application/json",
                                    "application/openapi+json", "application/json, text/html"])
def test_api_clients_get_the_openapi_document(served_sqlite: str, accept: str | None) -> None:
    r = httpx.get(served_sqlite + "/", headers={"Accept": accept} if accept else {})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/openapi+json")
    assert "Accept" in r.headers["vary"]
    assert "/orders" in r.json()["paths"]


def test_a_browser_is_sent_to_the_console(served_sqlite: str) -> None:
    r = httpx.get(served_sqlite + "/", headers={"Accept": BROWSER})
    assert r.status_code == 302
    assert r.headers["location"] == "/-/console/"
    assert "Accept" in r.headers["vary"]
    page = httpx.get(served_sqlite + "/", headers={"Accept": BROWSER}, follow_redirects=True)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


@pytest.fixture(scope="module")
def served_sqlite(demo_sqlite: str) -> Iterator[str]:
    with ServerProcess(demo_sqlite) as s:
        yield s.url


def test_banner_gives_the_console_address(tmp_path: Path, demo_sqlite: str) -> None:
    shutil.copy(demo_sqlite.removeprefix("sqlite:///"), tmp_path / "shop.db")
    port = free_port()
    proc = _serve(["shop.db"], tmp_path, port)
    err = _stop(proc)
    assert f"Console: http://127.0.0.1:{port}/-/console/" in err, err


def test_the_example_app_runs_on_the_demo(tmp_path: Path, demo_sqlite: str) -> None:
    db = tmp_path / "shop.db"
    shutil.copy(demo_sqlite.removeprefix("sqlite:///"), db)
    with ServerProcess(str(db), args=("--app", "headwater.examples.audit")) as s, \
            httpx.Client(base_url=s.url) as h:
        r = h.post("/orders", json={"customer_id": 1, "ordered_at": "2024-05-01T10:00:00"},
                   headers={"Prefer": "return=representation"})
        assert r.status_code == 201, r.text
        order = r.json()[0]["id"]
        r = h.post("/order_items", json={"order_id": order, "product_id": 1, "quantity": 2,
                                         "unit_price": 2.5})
        assert r.status_code == 201, r.text
        r = h.post("/order_items", json={"order_id": order, "product_id": 1, "quantity": 101,
                                         "unit_price": 1})
        assert r.status_code == 422 and r.json()["message"] == "quantity too large"
        assert h.get("/rpc/order_total", params={"order_id": order}).json() == 5.0
        assert h.post("/rpc/order_total", json={"order_id": order}).json() == 5.0
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT event, ref FROM audit_log").fetchall() == [("created", order)]


def test_a_real_file_starts_without_warnings_and_answers_as_sqlite(tmp_path: Path) -> None:
    """pyproj's proj.db (foreign keys naming views, text codes in INTEGER columns): start-up
    says what it serves and nothing else; no SQLAlchemy reflection warnings."""
    pyproj = pytest.importorskip("pyproj")
    db = tmp_path / "proj.db"
    shutil.copy(Path(pyproj.datadir.get_data_dir()) / "proj.db", db)
    port = free_port()
    proc = _serve(["proj.db", "--read-only"], tmp_path, port)
    try:
        url = f"http://127.0.0.1:{port}"
        r = httpx.get(url + "/unit_of_measure", params={"code": "eq.9001", "select": "name"})
        assert r.json() == [{"name": "metre"}]
        r = httpx.get(url + "/geodetic_crs", params={"code": "eq.AMANU49", "select": "code,name"})
        with contextlib.closing(sqlite3.connect(db)) as conn:
            expected = conn.execute("SELECT code, name FROM geodetic_crs "
                                    "WHERE code = 'AMANU49'").fetchall()
        assert [(x["code"], x["name"]) for x in r.json()] == expected
    finally:
        err = _stop(proc)
    assert "Warning" not in err and "Traceback" not in err, err
