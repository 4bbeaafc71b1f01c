"""Authentication over real HTTP: JWTs (HS256, RS256, ES256 from a JWKS file), the attacks on
them, API keys through the CLI, and the anonymous role."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from tests.integration.security.conftest import JWT_SECRET, Secure


@pytest.fixture(scope="module")
def client(secure: Secure) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=secure.url, timeout=30) as c:
        yield c


def _refused(r: httpx.Response, code: str = "PGRST301") -> None:
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    body = r.json()
    assert body["code"] == code
    assert set(body) == {"code", "message", "details", "hint"}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES256"])
def test_valid_tokens_of_each_algorithm(client: httpx.Client, secure: Secure, alg: str) -> None:
    r = client.get("/orders?select=customer_id", headers=secure.keys.bearer("customer", 7,
                                                                            alg=alg))
    assert r.status_code == 200, r.text
    assert r.json() and {o["customer_id"] for o in r.json()} == {7}


def test_anonymous_role_without_credentials(client: httpx.Client) -> None:
    r = client.get("/products?select=id,name&limit=3")
    assert r.status_code == 200
    # anon may not read orders: 401 (anonymous), with PostgREST's code
    r = client.get("/orders")
    assert r.status_code == 401
    assert r.json()["code"] == "42501"
    assert r.headers["www-authenticate"] == "Bearer"


def test_alg_none_is_refused(client: httpx.Client) -> None:
    token = _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(
        {"role": "admin", "aud": "headwater-test", "exp": int(time.time()) + 600}) + "."
    _refused(client.get("/customers", headers={"Authorization": f"Bearer {token}"}))


def test_hs_rs_confusion_is_refused(client: httpx.Client, secure: Secure) -> None:
    """An HS256 token whose 'secret' is the server's public RSA key (PEM): the classic
    algorithm-confusion attack. HS* tokens are only checked with the shared secret."""
    from cryptography.hazmat.primitives import serialization

    pem = secure.keys.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": "rsa1"})
    payload = _b64({"role": "admin", "aud": "headwater-test", "exp": int(time.time()) + 600})
    import hashlib
    import hmac

    sig = base64.urlsafe_b64encode(hmac.new(pem, f"{header}.{payload}".encode(),
                                            hashlib.sha256).digest()).rstrip(b"=").decode()
    _refused(client.get("/customers", headers={"Authorization":
                                               f"Bearer {header}.{payload}.{sig}"}))
    # and an RS256 header on an EC key id, or an unknown key id
    _refused(client.get("/customers", headers=secure.keys.bearer(
        "admin", alg="ES256", headers={"kid": "rsa1"})))
    _refused(client.get("/customers", headers=secure.keys.bearer(
        "admin", alg="RS256", headers={"kid": "nope"})))


def test_wrong_key_wrong_audience_expired_not_yet_valid(client: httpx.Client,
                                                        secure: Secure) -> None:
    k = secure.keys
    _refused(client.get("/customers", headers=k.bearer("admin", key="w" * 40)))
    _refused(client.get("/customers", headers={"Authorization": "Bearer " + k.token(
        {"role": "admin", "aud": "someone-else"})}), code="PGRST303")
    _refused(client.get("/customers", headers={"Authorization": "Bearer " + k.token(
        {"role": "admin"}, ttl=-3600)}), code="PGRST303")
    # within the clock skew an expiry just past is still accepted
    assert client.get("/customers?limit=1", headers={"Authorization": "Bearer " + k.token(
        {"role": "admin"}, ttl=-5)}).status_code == 200
    _refused(client.get("/customers", headers={"Authorization": "Bearer " + k.token(
        {"role": "admin", "nbf": int(time.time()) + 3600})}), code="PGRST303")
    r = client.get("/customers", headers={"Authorization": "Bearer " + k.token(
        {"role": "admin"}, ttl=-3600)})
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert "expired" in r.json()["message"]


def test_tampered_role_is_refused(client: httpx.Client, secure: Secure) -> None:
    token = secure.keys.token({"role": "customer", "sub": "3"})
    header, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "admin"
    _refused(client.get("/customers", headers={"Authorization":
                                               f"Bearer {header}.{_b64(claims)}.{sig}"}))


def test_garbage_credentials(client: httpx.Client) -> None:
    for value in ("Bearer", "Basic dXNlcjpwYXNz", "Bearer a.b.c", "Bearer " + "A" * 20000,
                  "Bearer hw_00000000_" + "A" * 43, "Bearer ../../etc/passwd"):
        r = client.get("/products", headers={"Authorization": value})
        assert r.status_code == 401, value
    assert client.get("/products", headers={"apikey": "not-a-key"}).status_code == 401


def test_verified_tokens_are_cached_but_expire(client: httpx.Client, secure: Secure) -> None:
    headers = secure.keys.bearer("customer", 3, ttl=-27)  # valid only by the 30 s skew
    assert client.get("/orders?limit=1", headers=headers).status_code == 200
    time.sleep(3.5)
    r = client.get("/orders?limit=1", headers=headers)
    assert r.status_code == 401  # the cached verification honours exp (+ skew)


def test_api_keys_create_use_list_revoke(client: httpx.Client, secure: Secure) -> None:
    made = secure.cli("keys", "create", "--role", "admin", "--name", "ci-bot")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert re.fullmatch(r"hw_[0-9a-f]{8}_[A-Za-z0-9_\-]{43}", key)
    key_id = key.split("_")[1]
    # sent as apikey (as Supabase clients do) and as a bearer token
    assert client.get("/customers?limit=1", headers={"apikey": key}).status_code == 200
    assert client.get("/customers?limit=1",
                      headers={"Authorization": f"Bearer {key}"}).status_code == 200
    # only the hash is stored
    from tests.integration import oracle

    stored = oracle.rows(secure.database_url, "SELECT key_hash FROM _headwater_api_keys "
                                              "WHERE id = $1", key_id)
    assert stored and key not in str(stored) and len(stored[0][0]) == 64
    # a wrong secret for a real id is refused
    bad = key[:-3] + ("AAA" if not key.endswith("AAA") else "BBB")
    assert client.get("/customers", headers={"apikey": bad}).status_code == 401
    # usage: per key in /-/metrics, and in `keys list` with the last use
    metrics = client.get("/-/metrics", headers=secure.keys.bearer("admin")).text
    assert re.search(rf'headwater_requests_by_api_key_total{{key="{key_id}"}} 2\.0', metrics)
    assert re.search(r'headwater_requests_by_role_total{role="admin"} \d', metrics)
    deadline = time.monotonic() + 10
    while True:
        listed = secure.cli("keys", "list")
        assert listed.returncode == 0, listed.stderr
        line = next(ln for ln in listed.stdout.splitlines() if key_id in ln)
        if "never" not in line or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert "ci-bot" in line and "admin" in line and "never" not in line and " 2 " in line
    assert key not in listed.stdout
    # revoke: refused within api_key_cache_seconds
    assert secure.cli("keys", "revoke", key_id).returncode == 0
    time.sleep(0.7)
    r = client.get("/customers", headers={"apikey": key})
    assert r.status_code == 401
    assert "revoked" in secure.cli("keys", "list").stdout
    assert secure.cli("keys", "revoke", key_id).returncode == 1


def test_api_key_role_limits_what_it_may_do(client: httpx.Client, secure: Secure) -> None:
    made = secure.cli("keys", "create", "--role", "support")
    key = made.stdout.strip()
    assert client.get("/customers?select=id,name&limit=1", headers={"apikey": key}
                      ).status_code == 200
    r = client.get("/customers?select=email", headers={"apikey": key})
    assert r.status_code == 400  # a hidden column answers as an unknown one
    assert r.json()["code"] == "42703"
    r = client.get("/order_items", headers={"apikey": key})  # no policy for the table
    assert (r.status_code, r.json()["code"]) == (403, "42501")


def test_unverified_jwt_library_sanity() -> None:
    # The test's own tokens verify with PyJWT, so a refusal above is the server's doing.
    token = jwt.encode({"role": "x", "aud": "headwater-test"}, JWT_SECRET, algorithm="HS256")
    assert jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="headwater-test")
