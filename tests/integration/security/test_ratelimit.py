"""Rate limits over real HTTP: per address (before authentication, counting failed logins),
per principal and role, per-table/action overrides, trusted proxies, two nodes sharing Redis,
and Redis failing open. Windows are a day long so no test straddles a window's end."""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx
import pytest

from headwater.testing import ServerProcess
from tests.integration.security.conftest import SECRET_ENV, Keys

CONFIG = """
[auth]
jwt_secret = "env:HW_TEST_JWT_SECRET"
audience = "headwater-test"
anonymous_role = "anon"

[[policy]]
role = "anon"
table = "products"
actions = ["select"]

[[policy]]
role = "customer"
table = "products"
actions = ["select"]

[[policy]]
role = "customer"
table = "orders"
actions = ["select", "insert"]
rows = "customer_id=eq.{claims.sub}"

[rate_limits]
address = "40/day"
failed_auth = "5/day"
anon = "10/day"
customer = "20/day"
trusted_proxies = ["127.0.0.1/32", "::1"]

[[rate_limits.override]]
table = "orders"
action = "insert"
limit = "3/day"

[http]
metrics_token = "env:HW_TEST_METRICS_TOKEN"
"""

METRICS_TOKEN = "metrics-" + secrets.token_hex(12)
ENV = {**SECRET_ENV, "HW_TEST_METRICS_TOKEN": METRICS_TOKEN}

SHARED = """
[rate_limits]
address = "200/day"
"""

_addresses = itertools.count(1)


def address() -> dict[str, str]:
    """A fresh client address, passed through the trusted proxy (the test client)."""
    n = next(_addresses)
    return {"X-Forwarded-For": f"198.51.100.7, 203.0.113.{n}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, demo_sqlite: str) -> Iterator[str]:
    config = tmp_path_factory.mktemp("rl") / "headwater.toml"
    config.write_text(CONFIG)
    with ServerProcess(demo_sqlite, env=ENV, args=("--config", str(config))) as s:
        yield s.url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=30) as c:
        yield c


def test_headers_and_429(client: httpx.Client) -> None:
    who = address()
    first = client.get("/products?limit=1", headers=who)
    assert first.status_code == 200
    # the tightest window is the anonymous principal's (10/day)
    assert first.headers["ratelimit-limit"] == "10"
    assert first.headers["ratelimit-remaining"] == "9"
    assert 0 < int(first.headers["ratelimit-reset"]) <= 86400
    for i in range(9):
        r = client.get("/products?limit=1", headers=who)
        assert r.status_code == 200
        assert r.headers["ratelimit-remaining"] == str(8 - i)
    r = client.get("/products?limit=1", headers=who)
    assert r.status_code == 429
    body = r.json()
    assert set(body) == {"code", "message", "details", "hint"}
    assert body["code"] == "HW429"
    assert 0 < int(r.headers["retry-after"]) <= 86400
    assert r.headers["ratelimit-remaining"] == "0"
    # another address is not affected
    assert client.get("/products?limit=1", headers=address()).status_code == 200


def test_per_principal_and_role(client: httpx.Client, jwt_keys: Keys) -> None:
    who = address()
    alice = jwt_keys.bearer("customer", 1)
    bob = jwt_keys.bearer("customer", 2)
    for _ in range(20):
        assert client.get("/products?limit=1", headers={**who, **alice}).status_code == 200
    r = client.get("/products?limit=1", headers={**who, **alice})
    assert r.status_code == 429
    assert "principal" in r.json()["details"]
    # Bob, from the same address, has his own budget (the address allows 40)
    r = client.get("/products?limit=1", headers={**who, **bob})
    assert r.status_code == 200
    assert r.headers["ratelimit-limit"] == "40"  # now the address (18 left) is the tightest


def test_override_per_table_and_action(client: httpx.Client, jwt_keys: Keys) -> None:
    who = {**address(), **jwt_keys.bearer("customer", 3)}
    # inserts are limited to 3; with return=minimal and tx=rollback nothing is kept
    order = {"customer_id": 3, "ordered_at": "2024-01-01T00:00:00"}
    prefer = {"Prefer": "tx=rollback"}
    for _ in range(3):
        assert client.post("/orders", json=order, headers={**who, **prefer}).status_code == 201
    r = client.post("/orders", json=order, headers={**who, **prefer})
    assert r.status_code == 429
    assert r.headers["ratelimit-limit"] == "3"
    # reads of the same table go on
    assert client.get("/orders?limit=1", headers=who).status_code == 200


def test_failed_logins_count_against_the_address(client: httpx.Client,
                                                 jwt_keys: Keys) -> None:
    who = address()
    for _ in range(5):
        r = client.get("/products", headers={**who, "Authorization": "Bearer x.y.z"})
        assert r.status_code == 401
    # past the limit, failing credentials get 429 (not another 401)...
    for bad in ("Bearer x.y.z", "Bearer " + jwt_keys.token({"role": "customer"}, key="k" * 40)):
        r = client.get("/products", headers={**who, "Authorization": bad})
        assert r.status_code == 429
        assert "failed_auth" in r.json()["details"]
    # ...but valid ones from the same address are served: a brute force must not lock the
    # address's real users out
    r = client.get("/products?limit=1", headers={**who, **jwt_keys.bearer("customer", 9)})
    assert r.status_code == 200
    # the same token from another address works too
    r = client.get("/products", headers={**address(), **jwt_keys.bearer("customer", 9)})
    assert r.status_code == 200


def test_ipv6_clients_count_by_their_64(client: httpx.Client) -> None:
    """Through the trusted proxy: two addresses of one /64 share the anonymous budget (10),
    another /64 has its own."""
    n = next(_addresses)

    def v6(host: str) -> dict[str, str]:
        return {"X-Forwarded-For": f"2001:db8:{n:x}:{host}"}

    for _ in range(4):
        assert client.get("/products?limit=1", headers=v6("1::1")).status_code == 200
    r = client.get("/products?limit=1", headers=v6("1:ffff::9"))
    assert r.status_code == 200
    assert r.headers["ratelimit-remaining"] == "5"
    r = client.get("/products?limit=1", headers=v6("2::1"))  # another /64
    assert r.headers["ratelimit-remaining"] == "9"


def test_metrics_count_rejections(client: httpx.Client) -> None:
    scraper = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    metrics = client.get("/-/metrics", headers=scraper).text
    assert re.search(r'headwater_rate_limited_total\{scope="principal"\} [1-9]', metrics)
    assert client.get("/-/stats", headers=scraper).json()["rate_limit_rejections"] >= 1


OVERRIDES = """
[auth]
jwt_secret = "env:HW_TEST_JWT_SECRET"
audience = "headwater-test"

[[policy]]
role = "admin"
table = "*"
actions = ["*"]

[http]
tx_end = "commit-allow-override"

[[rate_limits.override]]
table = "customers"
limit = "3/day"

[[rate_limits.override]]
table = "products"
action = "update"
limit = "2/day"
"""


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def overrides(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    db_url = request.getfixturevalue(f"demo_{request.param}")
    config = tmp_path_factory.mktemp("rlo") / "headwater.toml"
    config.write_text(OVERRIDES)
    with ServerProcess(db_url, env=SECRET_ENV, args=("--config", str(config))) as s, \
            httpx.Client(base_url=s.url, timeout=30) as c:
        yield c


def test_embedded_reads_count_against_the_embedded_table(overrides: httpx.Client,
                                                         jwt_keys: Keys) -> None:
    admin = jwt_keys.bearer("admin", "embed-" + secrets.token_hex(4))
    # orders embedding customers, by the table's name and by the foreign key's column, and
    # nested below order_items: each is a read of customers (3/day)
    for select in ("id,customers(id)", "id,buyer:customer_id(name)",
                   "id,orders(id,customers(id))"):
        table = "order_items" if select.startswith("id,orders") else "orders"
        r = overrides.get(f"/{table}?select={select}&limit=1", headers=admin)
        assert r.status_code == 200, r.text
        assert r.headers["ratelimit-limit"] == "3"
    r = overrides.get("/orders?select=id,customers(id)&limit=1", headers=admin)
    assert r.status_code == 429
    assert "override" in r.json()["details"]
    r = overrides.get("/customers?limit=1", headers=admin)
    assert r.status_code == 429
    # reads that do not touch customers go on
    assert overrides.get("/orders?select=id&limit=1", headers=admin).status_code == 200


def test_upserts_count_against_the_update_limit(overrides: httpx.Client,
                                                jwt_keys: Keys) -> None:
    admin = jwt_keys.bearer("admin", "upsert-" + secrets.token_hex(4))
    row = overrides.get("/products?select=id,name,sku,price&id=eq.1",
                        headers=admin).json()[0]
    merge = {**admin, "Prefer": "resolution=merge-duplicates, tx=rollback"}
    ignore = {**admin, "Prefer": "resolution=ignore-duplicates, tx=rollback"}
    # an upsert that ignores duplicates never updates: not counted as an update
    for _ in range(3):
        assert overrides.post("/products", json=[row], headers=ignore).status_code < 300
    # one PUT and one merging upsert are the two updates the day allows
    r = overrides.put("/products?id=eq.1", json=row, headers={**admin, "Prefer": "tx=rollback"})
    assert r.status_code < 300, r.text
    assert r.headers["ratelimit-limit"] == "2"
    r = overrides.post("/products", json=[row], headers=merge)
    assert r.status_code < 300, r.text
    r = overrides.post("/products", json=[row], headers=merge)
    assert r.status_code == 429
    assert overrides.put("/products?id=eq.1", json=row, headers=admin).status_code == 429
    # plain inserts are not updates
    r = overrides.post("/products", json=[{**row, "id": 999999, "sku": "rl-x"}],
                       headers={**admin, "Prefer": "tx=rollback"})
    assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory, demo_sqlite: str,
              redis_url: str) -> Iterator[tuple[str, str]]:
    config = tmp_path_factory.mktemp("rl2") / "headwater.toml"
    config.write_text(SHARED)
    env = {"HEADWATER_REDIS_URL": redis_url,
           "HEADWATER_CACHE_NAMESPACE": "rl" + secrets.token_hex(4),
           "HEADWATER_INSECURE": "false"}
    with ExitStack() as stack:
        a = stack.enter_context(ServerProcess(demo_sqlite, env=env,
                                              args=("--config", str(config))))
        b = stack.enter_context(ServerProcess(demo_sqlite, env=env,
                                              args=("--config", str(config))))
        yield a.url, b.url


def test_two_nodes_share_one_limit(two_nodes: tuple[str, str]) -> None:
    a, b = two_nodes

    def get(i: int) -> int:
        url = (a if i % 2 else b) + "/products?select=id&limit=1"
        return httpx.get(url, timeout=30).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(get, range(400)))
    ok = statuses.count(200)
    assert statuses.count(429) == 400 - ok
    assert abs(ok - 200) <= 10, ok  # one limit of 200 for both nodes, within ±5%


def test_forwarded_for_is_ignored_from_untrusted_peers(two_nodes: tuple[str, str]) -> None:
    # No trusted proxies are configured here: a spoofed X-Forwarded-For changes nothing.
    a, _ = two_nodes
    r1 = httpx.get(a + "/products?limit=1", headers={"X-Forwarded-For": "192.0.2.1"})
    r2 = httpx.get(a + "/products?limit=1", headers={"X-Forwarded-For": "192.0.2.2"})
    assert r1.headers["ratelimit-limit"] == r2.headers["ratelimit-limit"] == "200"
    assert r1.headers["ratelimit-remaining"] == r2.headers["ratelimit-remaining"] == "0"


def test_redis_down_fails_open(tmp_path_factory: pytest.TempPathFactory,
                               demo_sqlite: str) -> None:
    config = tmp_path_factory.mktemp("rl3") / "headwater.toml"
    config.write_text('[rate_limits]\naddress = "5/day"\n')
    env = {"HEADWATER_REDIS_URL": "redis://127.0.0.1:9/0", "HEADWATER_REDIS_TIMEOUT": "0.1"}
    with ServerProcess(demo_sqlite, env=env, args=("--config", str(config))) as s, \
            httpx.Client(base_url=s.url, timeout=30) as c:
        statuses = [c.get("/products?select=id&limit=1").status_code for _ in range(7)]
    # Redis is unreachable: requests are answered, and counted in-process instead
    assert statuses == [200] * 5 + [429] * 2
