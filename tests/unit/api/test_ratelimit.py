"""Rate limiting: the client address, and whom X-Forwarded-For is trusted from."""

from __future__ import annotations

import ipaddress

from headwater.api.ratelimit import client_address


def test_client_address_trusts_forwarded_for_only_from_proxies() -> None:
    proxies = (ipaddress.ip_network("10.0.0.0/8"),)
    assert client_address("203.0.113.9", ["1.2.3.4"], proxies) == "203.0.113.9"
    assert client_address("10.0.0.2", ["1.2.3.4"], proxies) == "1.2.3.4"
    # the rightmost untrusted hop: a client cannot prepend its way past the proxy
    assert client_address("10.0.0.2", ["6.6.6.6, 1.2.3.4, 10.0.0.7"], proxies) == "1.2.3.4"
    assert client_address("10.0.0.2", ["garbage"], proxies) == "10.0.0.2"
    assert client_address("10.0.0.2", [], proxies) == "10.0.0.2"
    assert client_address("10.0.0.2", ["1.2.3.4"], ()) == "10.0.0.2"


def test_ipv6_clients_count_by_their_network() -> None:
    from headwater.api.ratelimit import address_key

    # one host's /64 is one client; another /64 is another
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9") \
        == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("[2001:db8:1:2::1]") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:2::1", 48) == "2001:db8:1::/48"
    assert address_key("2001:db8:1:2::1", 128) == "2001:db8:1:2::1"
    # IPv4, and IPv4 mapped into IPv6, are each one address
    assert address_key("203.0.113.9") == "203.0.113.9"
    assert address_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert address_key("unknown") == "unknown"


def test_touches_embedded_tables_and_upsert_updates() -> None:
    from headwater.api.ratelimit import override_applies, touches
    from headwater.settings_file import Rate, RateOverride
    from tests.unit.catalogs import make_catalog

    catalog = make_catalog()

    def t(method: str, table: str, query: str, prefer: tuple[str, ...] = ()) -> set[object]:
        action = {"GET": "select", "POST": "insert", "PUT": "insert"}[method]
        return set(touches(table, action, method, query.encode(), prefer,  # type: ignore[arg-type]
                           lambda: catalog))

    assert t("GET", "orders", "select=id") == {("orders", "select")}
    # by table name, by foreign-key column, nested, and a percent-encoded key
    assert t("GET", "items", "select=id,orders(id,customers(name))") == {
        ("items", "select"), ("orders", "select"), ("customers", "select")}
    assert t("GET", "orders", "select=id,c:customer_id(name)") == {
        ("orders", "select"), ("customers", "select")}
    assert t("GET", "items", "%73elect=id,orders(id)") == {
        ("items", "select"), ("orders", "select")}
    # a select that does not parse counts as the request itself (it is refused later)
    assert t("GET", "orders", "select=id,customers(") == {("orders", "select")}
    assert t("POST", "orders", "", ("return=minimal, resolution=merge-duplicates",)) == {
        ("orders", "insert"), ("orders", "update")}
    assert t("POST", "orders", "", ("resolution=ignore-duplicates",)) == {("orders", "insert")}
    assert t("PUT", "orders", "id=eq.1") == {("orders", "insert"), ("orders", "update")}
    o = RateOverride(Rate(1, 1, "1/second"), "customers", "select")
    assert override_applies(o, [("orders", "select"), ("customers", "select")], "x")
    assert not override_applies(o, [("orders", "select")], "x")
    assert not override_applies(RateOverride(o.limit, role="y"), [("a", "select")], "x")
    assert override_applies(RateOverride(o.limit), [(None, None)], "x")
