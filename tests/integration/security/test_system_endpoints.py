"""The ``/-/`` endpoints: ``/-/metrics`` and ``/-/stats`` name roles and API keys, so once
authentication is configured they answer only ``http.metrics_roles`` or the metrics token
(and are rate-limited like any request); without authentication they stay open. ``/-/live``
and ``/-/ready`` stay open and cheap: ``/-/ready`` answers from the last check of the
dependencies, never with a database round trip per call."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import httpx
import pytest

from headwater.testing import ServerProcess
from tests.conftest import Served
from tests.integration.security.conftest import SECRET_ENV, Keys

TOKEN = "scrape-" + secrets.token_hex(16)
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
role = "admin"
table = "*"
actions = ["*"]

[http]
metrics_roles = ["admin", "ops"]
metrics_token = "env:HW_TEST_METRICS_TOKEN"

[rate_limits]
address = "100000/day"
"""
OPERATOR = ("/-/metrics", "/-/stats")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def guarded(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    db_url = request.getfixturevalue(f"demo_{request.param}")
    config = tmp_path_factory.mktemp("sys") / "headwater.toml"
    config.write_text(CONFIG)
    env = {**SECRET_ENV, "HW_TEST_METRICS_TOKEN": TOKEN}
    with ServerProcess(db_url, env=env, args=("--config", str(config))) as s, \
            httpx.Client(base_url=s.url, timeout=30) as c:
        yield c


@pytest.mark.parametrize("path", OPERATOR)
def test_operator_endpoints_need_a_role_or_the_token(guarded: httpx.Client, jwt_keys: Keys,
                                                     path: str) -> None:
    # anonymous: 401; a role not listed: 403; a bad token: 401 — and nothing leaks
    for headers, status in (({}, 401), (jwt_keys.bearer("customer", 1), 403),
                            ({"Authorization": "Bearer " + TOKEN[:-1] + "x"}, 401),
                            ({"Authorization": "Basic " + TOKEN}, 401)):
        r = guarded.get(path, headers=headers)
        assert r.status_code == status, (headers, r.text)
        assert set(r.json()) == {"code", "message", "details", "hint"}
        assert "headwater_requests_by_role" not in r.text and "anon" not in r.text
    # a listed role, or the metrics token, may read it (rate limits counted all the same)
    for headers in (jwt_keys.bearer("admin", 1), jwt_keys.bearer("ops"),
                    {"Authorization": f"Bearer {TOKEN}"}):
        r = guarded.get(path, headers=headers)
        assert r.status_code == 200, r.text
        assert r.headers["ratelimit-limit"] == "100000"
    body = guarded.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert ("headwater_requests_by_role" in body) if path == "/-/metrics" else (
        "requests_total" in body)


def test_live_and_ready_stay_open(guarded: httpx.Client) -> None:
    assert guarded.get("/-/live").status_code == 200
    r = guarded.get("/-/ready")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_operator_endpoints_open_without_auth(served: Served) -> None:
    for path in OPERATOR:
        assert httpx.get(served.url + path, timeout=30).status_code == 200


def queries(client: httpx.Client) -> float:
    text = client.get("/-/metrics").text
    m = re.search(r"^headwater_db_queries_total (\S+)$", text, re.MULTILINE)
    assert m is not None
    return float(m[1])


def test_ready_makes_no_query_per_call(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as c:
        assert c.get("/-/ready").status_code == 200
        before = queries(c)
        for _ in range(50):
            r = c.get("/-/ready")
            assert r.status_code == 200 and r.json()["checks"]["database"]["status"] == "ok"
        after = queries(c)
    # at most one background check per second, not one per call
    assert after - before <= 4, (before, after)
