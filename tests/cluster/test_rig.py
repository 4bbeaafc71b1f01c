"""The rig itself: every part answers, through the load balancer, with the settings it documents."""

from __future__ import annotations

import secrets

import httpx

from tests.cluster.conftest import Rig


def test_status_names_every_part_up(whole_rig: Rig) -> None:
    out = whole_rig.script("status")
    lines = out.strip().splitlines()
    assert len(lines) == 10, out
    rabbit = [line for line in lines if line.startswith("rabbit ")]
    if whole_rig.own_rabbit:
        assert len(rabbit) == 3 and all("running in a cluster of 3" in ln for ln in rabbit), out
    else:
        assert len(rabbit) == 3 and all("not started" in ln for ln in rabbit), out
        lines = [line for line in lines if line not in rabbit]
    assert all(" up" in line and "not answering" not in line for line in lines), out
    assert "replay paused" not in out


def test_reads_and_writes_through_the_load_balancer(whole_rig: Rig) -> None:
    seen = set()
    with httpx.Client(base_url=whole_rig.lb, timeout=10) as c:
        for _ in range(6):  # each a read never made before: a cache hit names no server
            r = c.get(f"/products?id=eq.2&select=id&limit={secrets.randbelow(10**9) + 1}")
            assert r.status_code == 200 and r.json() == [{"id": 2}]
            seen.add(r.headers["headwater-served-by"])
        w = c.post("/customers", json={"name": "rig", "email": f"rig-{secrets.token_hex(6)}@example.com",
                                       "created_at": "2024-01-01T00:00:00"},
                   headers={**whole_rig.bearer("rig-user"), "Prefer": "return=representation"})
        assert w.status_code == 201, w.text
        assert "headwater-lsn" in w.headers
    assert "replica" in seen
