"""Field encryption (``orders.note``): AES-GCM at rest with a key id per value, plaintext in
responses, a clear 400 on filtering or ordering, and key rotation through the CLI."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import httpx
import pytest

from tests.integration import oracle
from tests.integration.security.conftest import Secure

_ids = itertools.count(800_000)
ADMIN_NOTE = "ship to: 12 Rue de l'Église, code 4711 🚀"


@pytest.fixture(scope="module")
def client(secure: Secure) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=secure.url, timeout=30) as c:
        yield c


def stored(secure: Secure, oid: int) -> str:
    return str(oracle.rows(secure.database_url, "SELECT note FROM orders WHERE id = $1",
                           oid)[0][0])


def test_stored_encrypted_read_decrypted(client: httpx.Client, secure: Secure) -> None:
    h = {**secure.keys.bearer("admin"), "Prefer": "return=representation"}
    oid = next(_ids)
    r = client.post("/orders", headers=h, json={"id": oid, "customer_id": 1, "note": ADMIN_NOTE,
                                                "ordered_at": "2024-01-01T00:00:00"})
    assert r.status_code == 201, r.text
    assert r.json()[0]["note"] == ADMIN_NOTE
    raw = stored(secure, oid)
    assert raw.startswith("hwenc:1:k1:") and "Église" not in raw
    got = client.get(f"/orders?id=eq.{oid}&select=id,note", headers=h).json()
    assert got == [{"id": oid, "note": ADMIN_NOTE}]
    # embedded, too
    emb = client.get(f"/customers?id=eq.1&select=id,orders(id,note)&orders.id=eq.{oid}",
                     headers=h).json()
    assert emb[0]["orders"] == [{"id": oid, "note": ADMIN_NOTE}]
    # updates are encrypted with a fresh nonce
    r = client.patch(f"/orders?id=eq.{oid}", headers=h, json={"note": "second"})
    assert r.json()[0]["note"] == "second"
    assert stored(secure, oid) != raw and stored(secure, oid).startswith("hwenc:1:k1:")
    # the same text twice is stored differently (random nonce)
    client.patch(f"/orders?id=eq.{oid}", headers=h, json={"note": "second"})
    again = client.get(f"/orders?id=eq.{oid}&select=note", headers=h)
    assert again.json() == [{"note": "second"}]
    assert "x-cache" not in again.headers  # decrypted reads never enter the cache


def test_filter_order_and_csv_on_encrypted_column_are_refused(client: httpx.Client,
                                                              secure: Secure) -> None:
    h = secure.keys.bearer("admin")
    for query in ("note=eq.x", "note=like.*a*", "order=note", "or=(note.is.null,id.eq.1)"):
        r = client.get(f"/orders?{query}", headers=h)
        assert r.status_code == 400, query
        assert r.json()["code"] == "HW400" and "encrypted" in r.json()["message"]
    r = client.patch("/orders?note=eq.x", headers=h, json={"status": "paid"})
    assert r.status_code == 400
    r = client.get("/orders?select=id,note&limit=1", headers={**h, "Accept": "text/csv"})
    assert r.status_code == 406
    # CSV without the encrypted column is still offered
    assert client.get("/orders?select=id&limit=1", headers={**h, "Accept": "text/csv"}
                      ).status_code == 200


def test_rotate_data_to_a_new_key(client: httpx.Client, secure: Secure,
                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    h = {**secure.keys.bearer("admin"), "Prefer": "return=representation"}
    oid = next(_ids)
    client.post("/orders", headers=h, json={"id": oid, "customer_id": 1, "note": "rotate me",
                                            "ordered_at": "2024-01-01T00:00:00"}
                ).raise_for_status()
    # a note written before the column was encrypted reads as it is, until rotation
    plain = next(_ids)
    oracle.execute(secure.database_url, "INSERT INTO orders (id, customer_id, status, "
                   f"ordered_at, note, total) VALUES ({plain}, 1, 'pending', "
                   "'2024-01-01 00:00:00', 'legacy plaintext', 0)")
    assert client.get(f"/orders?id=eq.{plain}&select=note", headers=h).json() == [
        {"note": "legacy plaintext"}]
    config = tmp_path_factory.mktemp("rot") / "rotate.toml"
    config.write_text(secure.config.read_text().replace('current_key = "k1"',
                                                        'current_key = "k2"'))
    done = secure.cli("keys", "rotate-data", config=config)
    assert done.returncode == 0, done.stderr
    assert "orders.note" in done.stderr
    assert stored(secure, oid).startswith("hwenc:1:k2:")
    assert stored(secure, plain).startswith("hwenc:1:k2:")
    left = oracle.rows(secure.database_url, "SELECT count(*) FROM orders WHERE note IS NOT NULL "
                                            "AND note NOT LIKE 'hwenc:1:k2:%'")[0][0]
    assert left == 0
    # the server (which knows k1 and k2) still reads both
    got = client.get(f"/orders?id=in.({oid},{plain})&select=id,note&order=id", headers=h)
    assert got.json() == [{"id": oid, "note": "rotate me"}, {"id": plain,
                                                            "note": "legacy plaintext"}]
    # running it again changes nothing
    again = secure.cli("keys", "rotate-data", config=config)
    assert again.returncode == 0 and "0 values" in again.stderr
