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
