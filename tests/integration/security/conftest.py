"""A Headwater with authentication, policies, encryption and rate limits, once per database.

The settings file it runs with is ``SETTINGS`` below (secrets through ``env:``), with a JWKS
file of one RSA and one EC public key made for the session.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from headwater.demo import build_demo
from headwater.testing import ServerProcess
from tests.conftest import _pg_execute, pg_url_for

JWT_SECRET = "test-secret-" + "x" * 40
AUDIENCE = "headwater-test"
KEY1 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # 32 bytes, base64
KEY2 = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="

SETTINGS = """
[auth]
jwt_secret = "env:HW_TEST_JWT_SECRET"
jwks_file = "{jwks}"
audience = "headwater-test"
anonymous_role = "anon"
api_key_cache_seconds = 0.5
key_usage_flush_seconds = 0.5

[[policy]]
role = "anon"
table = "products"
actions = ["select"]
columns = ["id", "name", "price", "in_stock"]
rows = "in_stock=is.true"

[[policy]]
role = "customer"
table = "orders"
actions = ["select", "insert", "update", "delete"]
rows = "customer_id=eq.{{claims.sub}}"

[[policy]]
role = "customer"
table = "customers"
actions = ["select"]
columns = ["id", "name", "email"]
rows = "id=eq.{{claims.sub}}"

[[policy]]
role = "customer"
table = "products"
actions = ["select"]
columns = ["id", "name", "price"]

[[policy]]
role = "support"
table = "customers"
actions = ["select", "update"]
columns = ["id", "name", "country"]

[[policy]]
role = "support"
table = "orders"
actions = ["select"]
rows = "status=eq.paid"

[[policy]]
role = "admin"
table = "*"
actions = ["*"]
rpc = ["*"]

[encryption]
keys = {{ k1 = "env:HW_TEST_KEY1", k2 = "env:HW_TEST_KEY2" }}
current_key = "k1"
columns = ["orders.note"]

[rate_limits]
address = "100000/minute"

[http]
metrics_roles = ["admin"]
"""

SECRET_ENV = {"HW_TEST_JWT_SECRET": JWT_SECRET, "HW_TEST_KEY1": KEY1, "HW_TEST_KEY2": KEY2}


@dataclass
class Keys:
    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    jwks_path: Path

    def token(self, claims: dict[str, Any] | None = None, *, alg: str = "HS256",
              key: Any = None, headers: dict[str, Any] | None = None,
              ttl: float | None = 600) -> str:
        payload: dict[str, Any] = {"aud": AUDIENCE, **(claims or {})}
        if ttl is not None and "exp" not in payload:
            payload["exp"] = int(time.time() + ttl)
        if key is None:
            key = {"HS256": JWT_SECRET, "RS256": self.rsa, "ES256": self.ec}[alg]
        kid = {"RS256": "rsa1", "ES256": "ec1"}.get(alg)
        hdr = {"kid": kid} if kid else {}
        hdr.update(headers or {})
        return jwt.encode(payload, key, algorithm=alg, headers=hdr or None)

    def bearer(self, role: str, sub: Any = None, **kw: Any) -> dict[str, str]:
        claims = {"role": role, **({"sub": str(sub)} if sub is not None else {})}
        return {"Authorization": "Bearer " + self.token(claims, **kw)}


@pytest.fixture(scope="session")
def jwt_keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key()))
    rsa_jwk.update(kid="rsa1", alg="RS256", use="sig")
    ec_jwk.update(kid="ec1", alg="ES256", use="sig")
    path = Path(tmp_path_factory.mktemp("jwks")) / "jwks.json"
    path.write_text(json.dumps({"keys": [rsa_jwk, ec_jwk]}))
    return Keys(rsa_key, ec_key, path)


@dataclass
class Secure:
    url: str
    database_url: str
    dialect: str
    keys: Keys
    config: Path
    env: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        """``headwater <args> <database url>`` (``--config`` first when given)."""
        extra = ["--config", str(config)] if config is not None else []
        return subprocess.run(
            [sys.executable, "-m", "headwater", *args, self.database_url, *extra],
            env={**os.environ, **self.env}, capture_output=True, text=True, timeout=60,
            check=False)


def writable_database(request: pytest.FixtureRequest, dialect: str,
                      tmp_path_factory: pytest.TempPathFactory, scale: float = 0.05) -> str:
    if dialect == "sqlite":
        path = Path(tmp_path_factory.mktemp("sec")) / "sec.db"
        url = f"sqlite:///{path}"
    else:
        admin = request.getfixturevalue("pg_admin")
        name = "hw_sec_" + secrets.token_hex(4)
        asyncio.run(_pg_execute(admin, f'CREATE DATABASE "{name}"'))
        request.addfinalizer(lambda: asyncio.run(
            _pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))
        url = pg_url_for(name)
    asyncio.run(build_demo(url, scale=scale))
    return url


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def secure(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           jwt_keys: Keys) -> Iterator[Secure]:
    """A server with SETTINGS on its own writable demo data (PostgreSQL: with Redis as L2)."""
    dialect = request.param
    db_url = writable_database(request, dialect, tmp_path_factory)
    config = Path(tmp_path_factory.mktemp("cfg")) / "headwater.toml"
    config.write_text(SETTINGS.format(jwks=jwt_keys.jwks_path))
    env = dict(SECRET_ENV)
    if dialect == "postgresql":
        env["HEADWATER_REDIS_URL"] = request.getfixturevalue("redis_url")
        env["HEADWATER_CACHE_NAMESPACE"] = "sec" + secrets.token_hex(4)
    with ServerProcess(db_url, env=env, args=("--config", str(config))) as server:
        yield Secure(server.url, db_url, dialect, jwt_keys, config, env)
